// The admin dashboard in a real browser (Debian's headless Chromium, driven by playwright-core):
// log in, see a submission appear live, see the mode turn to `fallback` when this test's own
// Redis stops and back to `redis` when it returns, and save screenshots under target/.
//
// Run by scripts/browser-test (itself run by scripts/test), which builds target/debug/sqljudge.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const id = Math.random().toString(16).slice(2, 10);
const pg = process.env.SQLJUDGE_TEST_PG ?? "postgres://postgres:postgres@127.0.0.1:5432";
const adminToken = `browser-admin-${id}`;
const children = [];
const dir = mkdtempSync(join(tmpdir(), "sqljudge-browser-"));

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

function startRedis(port) {
  const redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], { stdio: "ignore" });
  children.push(redis);
  return redis;
}

async function stopped(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((r) => { child.once("exit", r); child.kill("SIGKILL"); });
}

function cleanup() {
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
}

async function main() {
  const [redisPort, httpPort] = [await freePort(), await freePort()];
  let redis = startRedis(redisPort);
  const base = `http://127.0.0.1:${httpPort}`;
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
      SQLJUDGE_ADMIN_TOKEN: adminToken,
      SQLJUDGE_BIND: `127.0.0.1:${httpPort}`,
      SQLJUDGE__EXECUTOR__WORKERS: "2",
      SQLJUDGE__HEALTH__INTERVAL_MS: "200",
      SQLJUDGE__WEBSOCKET__STATS_INTERVAL_MS: "500",
    },
  });
  children.push(server);
  await until("the service answers", async () => (await fetch(`${base}/problems`)).ok, 120000);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith(base.replace("http", "ws"))) external.push(r.url()); });
    const sockets = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    await page.goto(`${base}/admin`);
    await page.waitForSelector("#login:not([hidden])");
    // A wrong token is refused on the page.
    await page.fill("#token", "not-the-token");
    await page.click("#connect");
    await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("not an admin"));
    await page.fill("#token", adminToken);
    await page.click("#connect");
    await page.waitForSelector("#login", { state: "hidden" });
    await page.waitForFunction(() => document.getElementById("mode").textContent === "redis");
    await page.waitForFunction(() => document.getElementById("conn").textContent === "live");
    // The socket is opened with a single-use ticket, never with the token in its URL.
    if (!sockets.length || sockets.some((u) => u.includes(adminToken) || !u.includes("ticket=")))
      throw new Error(`WebSocket URLs: ${sockets.join(", ")}`);
    console.log("dashboard: logged in, mode redis, live");

    // A submission appears live, then its verdict.
    const creds = { username: `browser_${id}`, email: `browser_${id}@example.org`, password: "s3cret-pass" };
    const post = (path, body, token) => fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    await post("/auth/register", creds);
    const { access_token } = await (await post("/auth/login", creds)).json();
    const problems = await (await fetch(`${base}/problems`)).json();
    const uk = problems.find((p) => p.slug === "uk-customers").id;
    const job = await (await post("/problems/submit", { problem_id: uk, sql: "SELECT name FROM customers WHERE country = 'UK'" }, access_token)).json();
    await page.waitForSelector(`#feed tr[data-job="${job.job_id}"][data-status="accepted"]`, { timeout: 10000 });
    await until("stats show the grading", () => page.evaluate(() => Number(document.getElementById("jps").textContent) > 0));
    console.log(`dashboard: submission ${job.job_id} shown accepted`);
    await page.screenshot({ path: join(root, "target/dashboard.png"), fullPage: true });

    // Redis stops: the mode turns to fallback, and a submission still shows.
    await stopped(redis);
    await page.waitForFunction(() => document.getElementById("mode").textContent === "fallback", null, { timeout: 10000 });
    await page.waitForSelector('#flips tr[data-mode="fallback"]');
    const during = await (await post("/problems/submit", { problem_id: uk, sql: "SELECT name FROM customers WHERE country = 'UK' AND true" }, access_token)).json();
    if (during.queue !== "postgres") throw new Error(`expected the Postgres fallback, got ${JSON.stringify(during)}`);
    await page.waitForSelector(`#feed tr[data-job="${during.job_id}"][data-status="accepted"]`, { timeout: 10000 });
    console.log("dashboard: mode fallback, fallback submission shown");
    await page.screenshot({ path: join(root, "target/dashboard-fallback.png"), fullPage: true });

    // Redis returns: back to redis, with the recovery in the log.
    redis = startRedis(redisPort);
    await page.waitForFunction(() => document.getElementById("mode").textContent === "redis", null, { timeout: 15000 });
    await page.waitForFunction(() => document.querySelectorAll("#flips tr").length >= 3);
    console.log("dashboard: mode back to redis");
    await page.screenshot({ path: join(root, "target/dashboard-recovered.png"), fullPage: true });
    if (external.length) throw new Error(`the page fetched from elsewhere: ${external.join(", ")}`);
  } finally {
    await browser.close();
  }
}

main()
  .then(() => { cleanup(); console.log("browser test passed; screenshots in target/dashboard*.png"); process.exit(0); })
  .catch((e) => { console.error(e); cleanup(); process.exit(1); });
