// The admin dashboard in a real browser (Debian's headless Chromium, driven by playwright-core):
// log in, see a submission appear live, see the mode turn to `fallback` when this test's own
// Redis stops and back to `redis` when it returns, and save screenshots under target/.
//
// Run by scripts/browser-test (itself run by scripts/test), which builds target/debug/sqljudge.
import { join } from "node:path";
import { root, until, stopped, launch, watchRequests, main } from "./common.mjs";

main("dashboard", async (stack) => {
  const { base, adminToken, id } = stack;
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const { external, sockets } = watchRequests(page, base);
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
    // The process itself is listed among the deployment's instances, with its executors.
    await page.waitForSelector('#instances tr[data-role="all"]', { timeout: 10000 });
    await until("the deployment's executors", () => page.evaluate(() => /idle/.test(document.getElementById("ex-deployment").textContent)));
    await page.screenshot({ path: join(root, "target/dashboard.png"), fullPage: true });

    // Redis stops: the mode turns to fallback, and a submission still shows.
    await stopped(stack.redis);
    await page.waitForFunction(() => document.getElementById("mode").textContent === "fallback", null, { timeout: 10000 });
    await page.waitForSelector('#flips tr[data-mode="fallback"]');
    const during = await (await post("/problems/submit", { problem_id: uk, sql: "SELECT name FROM customers WHERE country = 'UK' AND true" }, access_token)).json();
    if (during.queue !== "postgres") throw new Error(`expected the Postgres fallback, got ${JSON.stringify(during)}`);
    await page.waitForSelector(`#feed tr[data-job="${during.job_id}"][data-status="accepted"]`, { timeout: 10000 });
    console.log("dashboard: mode fallback, fallback submission shown");
    await page.screenshot({ path: join(root, "target/dashboard-fallback.png"), fullPage: true });

    // Redis returns: back to redis, with the recovery in the log.
    stack.startRedis();
    await page.waitForFunction(() => document.getElementById("mode").textContent === "redis", null, { timeout: 15000 });
    await page.waitForFunction(() => document.querySelectorAll("#flips tr").length >= 3);
    console.log("dashboard: mode back to redis");
    await page.screenshot({ path: join(root, "target/dashboard-recovered.png"), fullPage: true });
    if (external.length) throw new Error(`the page fetched from elsewhere: ${external.join(", ")}`);
  } finally {
    await browser.close();
  }
});
