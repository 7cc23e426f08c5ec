// What the browser tests share: a service of their own (own databases, roles, Redis), started
// from target/debug/sqljudge with the demo pack, Debian's headless Chromium, and cleaning up.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const pg = process.env.SQLJUDGE_TEST_PG ?? "postgres://postgres:postgres@127.0.0.1:5432";

export const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(what, check, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

export async function stopped(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((r) => { child.once("exit", r); child.kill("SIGKILL"); });
}

/// A service with its own Redis; `stack.close()` stops both and drops what it created.
export async function startStack(name) {
  const id = Math.random().toString(16).slice(2, 10);
  const dir = mkdtempSync(join(tmpdir(), `sqljudge-${name}-`));
  const children = [];
  const [redisPort, httpPort] = [await freePort(), await freePort()];
  const startRedis = () => {
    const redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], { stdio: "ignore" });
    children.push(redis);
    return redis;
  };
  const stack = {
    id,
    base: `http://127.0.0.1:${httpPort}`,
    adminToken: `browser-admin-${id}`,
    redis: startRedis(),
    startRedis() { this.redis = startRedis(); return this.redis; },
    close() {
      for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
      try {
        // One statement per -c: DROP DATABASE cannot run inside the transaction that several
        // statements of one -c share. The roles go once their databases (and grants) are gone.
        // The sandbox's hidden tests each have a database beside it (sqljudge_bs_<id>_g1, ...).
        const tests = execFileSync("psql", [`${pg}/postgres`, "-Atc",
          `SELECT datname FROM pg_database WHERE datname LIKE 'sqljudge\\_bs\\_${id}\\_%'`]).toString().split("\n").filter(Boolean);
        execFileSync("psql", [`${pg}/postgres`, "-q",
          "-c", `DROP DATABASE IF EXISTS sqljudge_b_${id} WITH (FORCE)`,
          "-c", `DROP DATABASE IF EXISTS sqljudge_bs_${id} WITH (FORCE)`,
          ...tests.flatMap((db) => ["-c", `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`]),
          "-c", `DO $$ DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'sjb\\_${id}\\_%' ` +
          `LOOP EXECUTE format('DROP ROLE %I', r); END LOOP; END $$`], { stdio: "ignore" });
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const server = spawn(join(root, "target/debug/sqljudge"), ["serve", "--demo"], {
    cwd: root,
    stdio: ["ignore", "ignore", "inherit"],
    env: {
      ...process.env,
      RUST_LOG: "warn",
      DATABASE_URL: `${pg}/sqljudge_b_${id}`,
      SQLJUDGE_SANDBOX_URL: `${pg}/sqljudge_bs_${id}`,
      SQLJUDGE__SANDBOX__ROLE_PREFIX: `sjb_${id}`,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      SQLJUDGE_ADMIN_TOKEN: stack.adminToken,
      SQLJUDGE_BIND: `127.0.0.1:${httpPort}`,
      SQLJUDGE__EXECUTOR__WORKERS: "2",
      SQLJUDGE__HEALTH__INTERVAL_MS: "200",
      SQLJUDGE__WEBSOCKET__STATS_INTERVAL_MS: "500",
    },
  });
  children.push(server);
  try {
    await until("the service answers", async () => (await fetch(`${stack.base}/problems`)).ok, 120000);
  } catch (e) {
    stack.close();
    throw e;
  }
  return stack;
}

export const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
  });

/// Records every request a page makes outside `base` (HTTP or WebSocket).
export function watchRequests(page, base) {
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  const sockets = [];
  page.on("websocket", (ws) => { sockets.push(ws.url()); if (!ws.url().startsWith(base.replace("http", "ws"))) external.push(ws.url()); });
  return { external, sockets };
}

/// A test's main: runs `body(stack)` on a stack of its own, cleans up, exits 0 or 1.
export function main(name, body) {
  startStack(name)
    .then(async (stack) => {
      try {
        await body(stack);
      } finally {
        stack.close();
      }
    })
    .then(() => { console.log(`${name} browser test passed`); process.exit(0); })
    .catch((e) => { console.error(e); process.exit(1); });
}
