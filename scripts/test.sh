#!/usr/bin/env bash
# Runs the whole test suite. Installs what it needs when missing:
#  - Deno, from npm (the pinned devDependency), with `npm ci` (exactly what package-lock.json
#    says; `npm install` when there is no lockfile);
#  - nats-server, from Debian's packages (needs root), used by the NATS tests;
#  - chromium, from Debian's packages (needs root), used by the chat example's browser test
#    (driven by playwright-core from npm; no browser download).
# Ends with a line "N passed, N failed".
set -uo pipefail
export NO_COLOR=1
cd "$(dirname "$0")/.."

if [ ! -x node_modules/.bin/deno ]; then
  install=install
  [ -f package-lock.json ] && install=ci
  echo "== installing npm dependencies with npm $install (Deno is one of them)"
  npm "$install" --no-audit --no-fund || { echo "npm $install failed" >&2; exit 1; }
fi
DENO=node_modules/.bin/deno

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing nats-server from Debian's packages"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >/dev/null ||
      { echo "apt-get install nats-server failed" >&2; exit 1; }
  else
    echo "nats-server is missing: install it with 'sudo apt-get install -y nats-server' (Debian/Ubuntu)" >&2
    echo "or put a nats-server 2.9+ binary on PATH, then run the tests again." >&2
    exit 1
  fi
fi

if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium from Debian's packages"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null ||
      { echo "apt-get install chromium failed" >&2; exit 1; }
  else
    echo "chromium is missing: install it with 'sudo apt-get install -y chromium' (Debian/Ubuntu)" >&2
    echo "or set CHROMIUM to a Chromium binary, then run the tests again." >&2
    exit 1
  fi
fi

log=$(mktemp)
"$DENO" test -A --parallel "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1)
passed=$(echo "$summary" | sed -E 's/.*\| ([0-9]+) passed.*/\1/')
failed=$(echo "$summary" | sed -E 's/.*\| ([0-9]+) failed.*/\1/')
rm -f "$log"
echo "${passed:-0} passed, ${failed:-0} failed"
if [ -z "$summary" ]; then exit 1; fi
exit "$status"
