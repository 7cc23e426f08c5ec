// The practice page (GET /) in a real browser, as a learner uses it, keyboard first: register,
// filter the problems, open one, read its sample data, run a statement, submit a wrong answer
// (right on the sample, wrong on a hidden test) and see the verdict and its counterexample
// arrive over /ws, then a right one, the solved mark and the rank change; on a narrow screen
// and in the dark scheme too. Nothing may be fetched from elsewhere. Screenshots:
// target/practice*.png.
import { join } from "node:path";
import { root, until, launch, watchRequests, main } from "./common.mjs";

const WRONG = "SELECT name\nFROM customers\nWHERE city IN ('London', 'Manchester')";
const RIGHT = "SELECT name FROM customers WHERE country = 'UK'";

main("practice", async ({ base, id }) => {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const { external, sockets } = watchRequests(page, base);
    const events = [];
    page.on("websocket", (ws) => ws.on("framereceived", (f) => { try { events.push(JSON.parse(f.payload)); } catch {} }));
    const text = (sel) => page.locator(sel).first().innerText();

    await page.goto(`${base}/`);
    await page.waitForSelector("#topics [data-problem]");
    const listed = await page.locator("#topics [data-problem]").count();
    const problems = await (await fetch(`${base}/problems`)).json();
    if (listed !== problems.length) throw new Error(`${listed} problems listed of ${problems.length}`);
    console.log(`practice: ${listed} problems listed`);

    // Register and log in with the keyboard only. The list it returns to loads slowly: what the
    // learner does meanwhile (a filter, a focused link) must survive its arrival.
    const slowList = async (route) => { await new Promise((r) => setTimeout(r, 1500)); await route.continue(); };
    await page.route(`${base}/problems`, slowList);
    await page.focus("#login-link");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#view-auth:not([hidden])");
    const username = `learner_${id}`;
    await page.focus("#register-username");
    await page.keyboard.type(username);
    await page.keyboard.press("Tab");
    await page.keyboard.type(`${username}@example.org`);
    await page.keyboard.press("Tab");
    await page.keyboard.type("correct horse");
    await page.keyboard.press("Enter");
    await page.waitForFunction((u) => document.getElementById("whoami")?.textContent.startsWith(u), username);
    await page.waitForSelector("#view-list:not([hidden])");
    console.log("practice: registered and logged in with the keyboard");

    // Filters: easy problems only, then back to all.
    await page.selectOption("#filter-difficulty", "easy");
    const badges = await page.locator("#topics .badge").allInnerTexts();
    if (!badges.length || badges.some((b) => b !== "easy")) throw new Error(`easy filter shows ${badges}`);
    await page.selectOption("#filter-difficulty", "");

    // Open the problem from the list with the keyboard.
    const uk = problems.find((p) => p.slug === "uk-customers").id;
    await page.focus(`[data-problem="${uk}"] a`);
    await page.waitForTimeout(1500); // the slow list arrives while the link has the focus
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.getElementById("p-title").textContent === "Customers in the UK");
    await page.unroute(`${base}/problems`, slowList);
    await page.waitForSelector('[data-table="customers"] tbody tr');
    const sample = await text('[data-table="customers"]');
    if (!sample.includes("Ada") || !sample.includes("8 rows")) throw new Error(`sample data: ${sample}`);
    console.log("practice: problem open, sample tables shown");

    // Run on the sample: the rows as a table.
    await page.focus("#sql");
    await page.keyboard.type(WRONG);
    if (!(await page.locator("#sql-shown .tk-kw").count())) throw new Error("no syntax highlighting");
    await page.keyboard.press("Control+Enter");
    await page.waitForFunction(() => /2 rows/.test(document.getElementById("run-summary")?.textContent));
    console.log(`practice: run shows ${await text("#run-summary")}`);

    // The leaderboard before any solve.
    await page.goto(`${base}/#/leaderboard`);
    await page.waitForFunction(() => document.getElementById("my-rank").textContent.includes("no solve"));
    await page.goBack();
    await page.waitForFunction(() => document.getElementById("p-title").textContent === "Customers in the UK");

    // Submit the wrong answer: a wrong answer on a hidden test, with a counterexample, live.
    const submitted = page.waitForResponse((r) => r.url().endsWith("/problems/submit"));
    await page.focus("#sql");
    await page.keyboard.press("Control+Shift+Enter");
    const wrongJob = (await (await submitted).json()).job_id;
    await page.waitForSelector('#verdict[data-status="wrong_answer"] #counterexample', { timeout: 20000 });
    const verdict = await text("#verdict");
    if (!/hidden test/.test(verdict) || !/Leeds|Ada/.test(verdict)) throw new Error(`verdict: ${verdict}`);
    await until("the verdict came over /ws", () => events.some((e) => e.job_id === wrongJob && e.status === "wrong_answer"));
    if (!events.some((e) => e.job_id === wrongJob && e.status === "queued" || e.status === "running"))
      console.log("practice: (queued/running passed before the socket saw them)");
    await page.screenshot({ path: join(root, "target/practice-counterexample.png"), fullPage: true });
    console.log("practice: wrong answer with its counterexample, live");

    // The right answer: accepted, marked solved, one more submission listed, the rank appears.
    await page.fill("#sql", RIGHT);
    await page.click("#submit");
    await page.waitForSelector('#verdict[data-status="accepted"]', { timeout: 20000 });
    await page.waitForFunction(() => document.querySelectorAll("#history-table tbody tr").length === 2);
    await page.waitForFunction((u) => document.getElementById("whoami").textContent === `${u} · 1 solved`, username);
    await page.screenshot({ path: join(root, "target/practice.png"), fullPage: true });
    await page.click('a[href="#/"]');
    await page.waitForSelector(`[data-problem="${uk}"][data-solved="true"]`);
    await page.click('nav a[href="#/leaderboard"]');
    await page.waitForFunction(() => document.getElementById("my-rank").dataset.rank === "1");
    const board = await text("#board-table");
    if (!board.includes(username)) throw new Error(`leaderboard: ${board}`);
    await page.selectOption("#board-topic", "basics");
    await page.waitForFunction(() => document.getElementById("my-rank").dataset.rank === "1");
    console.log("practice: accepted, solved mark, rank 1 globally and in basics");

    // WebSockets opened with a ticket, never a token.
    const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem("sqljudge")).access_token);
    if (!sockets.length || sockets.some((u) => u.includes(token) || !u.includes("ticket="))) throw new Error(`WebSocket URLs: ${sockets}`);

    // A narrow screen: nothing wider than it; the dark scheme: a dark page.
    await page.setViewportSize({ width: 360, height: 800 });
    await page.goto(`${base}/#/problem/${uk}`);
    await page.waitForSelector('[data-table="customers"] tbody tr');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) throw new Error(`the page is ${overflow}px wider than a narrow screen`);
    await page.screenshot({ path: join(root, "target/practice-narrow.png"), fullPage: true });
    await page.emulateMedia({ colorScheme: "dark" });
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = background.match(/\d+/g).map(Number);
    if (r + g + b > 150) throw new Error(`dark scheme background ${background}`);
    await page.screenshot({ path: join(root, "target/practice-dark.png"), fullPage: true });
    console.log("practice: narrow screen and dark scheme");

    // Logging out ends the session on the server too.
    await page.click("#logout");
    await page.waitForSelector("#login-link");
    const res = await fetch(`${base}/users/me`, { headers: { authorization: `Bearer ${token}` } });
    if (res.status !== 401) throw new Error(`after logout /users/me gave ${res.status}`);
    if (external.length) throw new Error(`the page fetched from elsewhere: ${external.join(", ")}`);
  } finally {
    await browser.close();
  }
});
