/**
 * The directory of a `file:` database, created when missing, so that
 * `"file:./data/troupe.db"` works in a fresh folder. Internal.
 *
 * @module
 */

/**
 * The directory part of a `file:` libSQL URL (`file:./data/x.db` → `./data`,
 * `file:///srv/x.db` → `/srv`), or undefined for other URLs and files in the working directory.
 */
export function databaseDir(url: string): string | undefined {
  if (!url.startsWith("file:")) return undefined;
  let path = url.slice("file:".length).split("?")[0]!;
  if (path.startsWith("//")) {
    try {
      path = decodeURIComponent(new URL(url).pathname);
    } catch {
      return undefined;
    }
  }
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? undefined : path.slice(0, slash);
}

/**
 * Creates the directories of the `file:` databases in `options` (`url`, and `shards` when the
 * journal has them), where the runtime has a file system. Failures are left to the database's
 * own open, which reports them with the URL.
 */
export function createDatabaseDirs(options: { readonly url?: string }): void {
  const mkdir = (globalThis as { Deno?: { mkdirSync?: typeof Deno.mkdirSync } }).Deno?.mkdirSync;
  if (!mkdir) return;
  const shards = (options as { readonly shards?: readonly string[] }).shards ?? [];
  for (const url of [options.url, ...shards]) {
    const dir = typeof url === "string" ? databaseDir(url) : undefined;
    if (dir === undefined) continue;
    try {
      mkdir(dir, { recursive: true });
    } catch { /* the open says why */ }
  }
}
