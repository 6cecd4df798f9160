/**
 * The dashboard's page: one HTML document, its style sheet and its script, served by the app
 * itself (no build step, no CDN). The script reads `api/events` (Server-Sent Events, read with
 * `fetch` so that it can send `Authorization`), renders with `textContent` only (every name
 * and message comes from the cluster), and asks `api/actors/{type}/{id}` for the inspector.
 *
 * @module
 */

/** The HTML document; `base` (the app's path, ending with `/`) must be attribute-escaped. */
export function dashboardHtml(base: string, title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="stylesheet" href="${base}dashboard.css">
<script src="${base}dashboard.js" defer></script>
</head>
<body data-base="${base}">
<header>
  <h1>${title}</h1>
  <span id="status" class="status connecting">connecting…</span>
  <span id="summary"></span>
</header>
<section id="auth" hidden>
  <h2>Sign in</h2>
  <p id="auth-reason"></p>
  <form id="auth-form">
    <input id="token" type="password" autocomplete="off" placeholder="Bearer token (JWT)" size="60">
    <button type="submit">Use token</button>
  </form>
</section>
<main id="main">
  <section>
    <h2>Nodes</h2>
    <table id="nodes"><thead><tr>
      <th>Node</th><th>Status</th><th>Types</th><th>Up</th><th class="n">Activations</th>
      <th class="n">Msgs/s</th><th class="n">Errors</th><th class="n">Leases</th>
    </tr></thead><tbody></tbody></table>
    <p id="unreachable" class="warn" hidden></p>
  </section>
  <section>
    <h2>Actor types</h2>
    <table id="types"><thead><tr>
      <th>Type</th><th>Kind</th><th>Nodes</th><th class="n">Activations</th><th class="n">Queued</th>
      <th class="n">Msgs/s</th><th class="n">Handled</th><th class="n">Errors</th><th>Last error</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Recent errors</h2>
    <table id="errors"><thead><tr>
      <th>Time</th><th>Node</th><th>Side</th><th>Code</th><th>Target</th><th>Message</th>
    </tr></thead><tbody></tbody></table>
    <p id="no-errors" class="muted">None.</p>
  </section>
  <section>
    <h2>Inspect an actor</h2>
    <form id="inspect">
      <select id="inspect-type" aria-label="Actor type"></select>
      <input id="inspect-id" placeholder="actor id" aria-label="Actor id">
      <button type="submit">Inspect</button>
    </form>
    <div id="actor"></div>
  </section>
  <section>
    <h2>Projections</h2>
    <table id="projections"><thead><tr><th>Projection</th><th>Node</th><th class="n">Lag (ms)</th><th>Position</th></tr></thead>
    <tbody></tbody></table>
    <p id="no-projections" class="muted">No projection runs.</p>
  </section>
  <section>
    <h2>Leases</h2>
    <table id="leases"><thead><tr><th>Node</th><th>Lease</th><th class="n">Token</th></tr></thead>
    <tbody></tbody></table>
  </section>
</main>
</body>
</html>
`;
}

/** The style sheet. */
export const DASHBOARD_CSS = `
:root { color-scheme: light dark; --fg: #1d2330; --muted: #6b7385; --line: #d9dde5;
  --bg: #f6f7f9; --card: #fff; --ok: #1a7f37; --bad: #c62828; --warn: #b26a00; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e4e7ee; --muted: #98a0b3; --line: #343a48; --bg: #161a22; --card: #1e2330; }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 1rem; align-items: baseline; padding: .8rem 1.2rem;
  border-bottom: 1px solid var(--line); background: var(--card); }
h1 { font-size: 1.2rem; margin: 0; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
main { display: grid; gap: 1rem; padding: 1rem 1.2rem; grid-template-columns: 1fr; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
  padding: .8rem 1rem; overflow-x: auto; }
#auth { margin: 1rem 1.2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line);
  white-space: nowrap; }
td.msg { white-space: normal; max-width: 40rem; word-break: break-word; }
th { color: var(--muted); font-weight: 600; }
.n { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); }
.warn { color: var(--warn); }
.status { padding: .1rem .5rem; border-radius: 999px; font-size: .8rem; border: 1px solid; }
.status.live { color: var(--ok); }
.status.offline, .status.denied { color: var(--bad); }
.status.connecting { color: var(--muted); }
.code { font-family: ui-monospace, monospace; color: var(--bad); }
.running { color: var(--ok); }
.fenced, .closing, .closed { color: var(--bad); }
.changed { animation: flash 1s; }
@keyframes flash { from { background: rgba(255, 200, 0, .35); } to { background: transparent; } }
pre { margin: 0; font: 12px/1.3 ui-monospace, monospace; white-space: pre-wrap; }
form { display: flex; gap: .5rem; flex-wrap: wrap; margin-bottom: .6rem; }
input, select, button { font: inherit; padding: .25rem .5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0 0 .6rem; }
dt { color: var(--muted); }
dd { margin: 0; }
`;

/** The script. Plain ES2020, no template literals (this file is one). */
export const DASHBOARD_JS = `"use strict";
(function () {
  var base = document.body.dataset.base;
  var KEY = "troupe.dashboard.token";
  var token = sessionStorage.getItem(KEY) || "";
  var last = {};
  var knownTypes = [];
  var $ = function (id) { return document.getElementById(id); };

  function auth() { return token ? { authorization: "Bearer " + token } : {}; }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function cell(tr, text, col, cls) {
    var td = el("td", text, cls);
    if (col) {
      td.dataset.col = col;
      var key = (tr.dataset.key || "") + "/" + col;
      if (last[key] !== undefined && last[key] !== String(text)) td.classList.add("changed");
      last[key] = String(text);
    }
    tr.appendChild(td);
    return td;
  }
  function body(id) {
    var tb = $(id).tBodies[0];
    while (tb.firstChild) tb.removeChild(tb.firstChild);
    return tb;
  }
  function ago(ms) {
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }
  function rate(r) { return (Math.round(r * 10) / 10).toFixed(1); }
  function setStatus(text, cls) { var s = $("status"); s.textContent = text; s.className = "status " + cls; }
  function time(ms) { return new Date(ms).toLocaleTimeString(); }

  function render(stats) {
    var nodes = stats.nodes || [];
    var types = {};
    var errors = [];
    var leases = [];
    var projections = [];
    var nb = body("nodes");
    nodes.forEach(function (n) {
      var acts = 0, rates = 0, errs = 0;
      (n.actors || []).forEach(function (t) {
        acts += t.activations; rates += t.rate; errs += t.errors;
        var agg = types[t.type] || (types[t.type] = { type: t.type, stateless: t.stateless,
          nodes: [], activations: 0, queued: 0, rate: 0, messages: 0, errors: 0, lastError: "" });
        agg.nodes.push(n.id);
        agg.activations += t.activations; agg.queued += t.queued; agg.rate += t.rate;
        agg.messages += t.messages; agg.errors += t.errors;
        if (t.lastError) agg.lastError = t.lastError;
      });
      (n.errors || []).forEach(function (e) { errors.push([n.id, e]); });
      (n.leases || []).forEach(function (l) { leases.push([n.id, l]); });
      (n.projections || []).forEach(function (p) { if (p.running) projections.push([n.id, p]); });
      var tr = el("tr");
      tr.dataset.node = n.id;
      tr.dataset.key = "node:" + n.id;
      cell(tr, n.id, "id");
      cell(tr, n.status, "status", n.status);
      cell(tr, n.types.length ? n.types.join(", ") : "(client)", "types", n.types.length ? "" : "muted");
      cell(tr, ago(n.since), "");
      cell(tr, acts, "activations", "n");
      cell(tr, rate(rates), "rate", "n");
      cell(tr, errs, "errors", "n");
      cell(tr, (n.leases || []).length, "leases", "n");
      nb.appendChild(tr);
    });
    var un = $("unreachable");
    un.hidden = !(stats.unreachable && stats.unreachable.length);
    un.textContent = un.hidden ? "" : "Not answering: " + stats.unreachable.join(", ");
    $("summary").textContent = nodes.length + (nodes.length === 1 ? " node" : " nodes") +
      " · updated " + time(stats.at);

    var tb = body("types");
    var names = Object.keys(types).sort();
    names.forEach(function (name) {
      var t = types[name];
      var tr = el("tr");
      tr.dataset.type = name;
      tr.dataset.key = "type:" + name;
      cell(tr, name, "type");
      cell(tr, t.stateless ? "worker" : "actor", "kind");
      cell(tr, t.nodes.join(", "), "nodes");
      cell(tr, t.activations, "activations", "n");
      cell(tr, t.queued, "queued", "n");
      cell(tr, rate(t.rate), "rate", "n");
      cell(tr, t.messages, "messages", "n");
      cell(tr, t.errors, "errors", "n");
      cell(tr, t.lastError, "lastError", "msg");
      tb.appendChild(tr);
    });
    if (names.join() !== knownTypes.join()) {
      knownTypes = names;
      var sel = $("inspect-type");
      var current = sel.value;
      while (sel.firstChild) sel.removeChild(sel.firstChild);
      names.forEach(function (name) {
        if (types[name].stateless) return;
        var o = el("option", name);
        o.value = name;
        sel.appendChild(o);
      });
      if (current) sel.value = current;
    }

    errors.sort(function (a, b) { return b[1].at - a[1].at; });
    var eb = body("errors");
    errors.slice(0, 30).forEach(function (pair) {
      var e = pair[1];
      var tr = el("tr");
      cell(tr, time(e.at));
      cell(tr, pair[0]);
      cell(tr, e.where);
      cell(tr, e.code, "", "code");
      cell(tr, e.type + (e.id ? "/" + e.id : "") + "." + e.handler);
      cell(tr, e.message, "", "msg");
      eb.appendChild(tr);
    });
    $("no-errors").hidden = errors.length > 0;

    var pb = body("projections");
    projections.forEach(function (pair) {
      var tr = el("tr");
      tr.dataset.key = "projection:" + pair[1].name;
      cell(tr, pair[1].name, "name");
      cell(tr, pair[0], "node");
      cell(tr, pair[1].lag, "lag", "n");
      cell(tr, pair[1].position || "", "position", "muted");
      pb.appendChild(tr);
    });
    $("no-projections").hidden = projections.length > 0;

    var lb = body("leases");
    leases.forEach(function (pair) {
      var tr = el("tr");
      cell(tr, pair[0]);
      cell(tr, pair[1].name);
      cell(tr, pair[1].token, "", "n");
      lb.appendChild(tr);
    });
  }

  function plain(v) {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      var keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === "$date") return v.$date;
    }
    return v;
  }

  function showActor(a) {
    var box = $("actor");
    while (box.firstChild) box.removeChild(box.firstChild);
    var dl = el("dl");
    [["Actor", a.type + "/" + a.id], ["Active on", a.node || "(not active)"], ["Seq", a.seq],
     ["Queued", a.queued], ["Answered by", a.answeredBy]].forEach(function (kv) {
      dl.appendChild(el("dt", kv[0]));
      var dd = el("dd", kv[1]);
      dd.dataset.field = kv[0].toLowerCase().replace(/ /g, "-");
      dl.appendChild(dd);
    });
    box.appendChild(dl);
    if (!a.events.length) { box.appendChild(el("p", "No events.", "muted")); return; }
    var table = el("table");
    table.id = "events";
    var head = el("tr");
    ["Seq", "Event", "At", "Payload"].forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(el("thead")).appendChild(head);
    var tb = table.appendChild(el("tbody"));
    a.events.slice().reverse().forEach(function (e) {
      var tr = el("tr");
      cell(tr, e.seq, "", "n");
      cell(tr, e.type);
      cell(tr, plain(e.at));
      var td = el("td", null, "msg");
      td.appendChild(el("pre", JSON.stringify(e.payload)));
      tr.appendChild(td);
      tb.appendChild(tr);
    });
    box.appendChild(table);
  }

  async function inspect(ev) {
    ev.preventDefault();
    var type = $("inspect-type").value, id = $("inspect-id").value;
    if (!type || !id) return;
    var box = $("actor");
    box.textContent = "…";
    try {
      var res = await fetch(base + "api/actors/" + encodeURIComponent(type) + "/" +
        encodeURIComponent(id), { headers: auth() });
      var data = await res.json();
      if (!res.ok) { box.textContent = data.error.code + ": " + data.error.message; return; }
      showActor(data);
    } catch (err) {
      box.textContent = String(err);
    }
  }

  function denied(error) {
    setStatus(error.code === "unauthorized" ? "sign in" : "denied", "denied");
    $("auth").hidden = false;
    $("main").hidden = true;
    $("auth-reason").textContent = error.code + ": " + error.message;
  }

  var retry = 500;
  async function connect() {
    setStatus("connecting…", "connecting");
    try {
      var headers = auth();
      headers.accept = "text/event-stream";
      var res = await fetch(base + "api/events", { headers: headers, cache: "no-store" });
      if (res.status === 401 || res.status === 403) { denied((await res.json()).error); return; }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      $("auth").hidden = true;
      $("main").hidden = false;
      setStatus("live", "live");
      retry = 500;
      var reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      var buf = "";
      for (;;) {
        var r = await reader.read();
        if (r.done) break;
        buf += r.value;
        var i;
        while ((i = buf.indexOf("\\n\\n")) >= 0) {
          var chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          var event = "message", data = "";
          chunk.split("\\n").forEach(function (line) {
            if (line.indexOf("event:") === 0) event = line.slice(6).trim();
            else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
          });
          if (event === "message" && data) render(JSON.parse(data));
          else if (event === "error" && data) {
            var err = JSON.parse(data);
            if (err.code === "unauthorized" || err.code === "forbidden") { denied(err); return; }
          }
        }
      }
    } catch (_err) {
      // the connection dropped: try again below
    }
    setStatus("offline", "offline");
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  }

  $("auth-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(KEY, token);
    connect();
  });
  $("inspect").addEventListener("submit", inspect);
  connect();
})();
`;
