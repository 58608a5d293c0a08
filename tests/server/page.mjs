// page.mjs — the chat page in headless Chromium (Debian's, driven by playwright-core): it loads, streams an answer
// in, sends an image, stops a generation, starts a new chat. A screenshot is kept as a test artifact.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const base = process.env.BASE;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                        args: ["--no-sandbox", "--disable-gpu"] });
let checks = 0;
const check = (cond, what) => { assert.ok(cond, what); checks++; };
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push(e.message));
  await page.goto(base + "/");
  check((await page.title()) === "gemma4c", "the page loads");
  await page.waitForFunction(() => document.getElementById("model").textContent.length > 0);

  // A message: text streams into the answer, then its statistics appear.
  let chunks = 0;
  page.on("response", r => { if (r.url().endsWith("/v1/chat/completions")) chunks++; });
  await page.fill("#input", "Hello there");
  await page.click("#send");
  await page.waitForSelector(".msg.assistant.done", { timeout: 60000 });
  const stats = await page.textContent(".msg.assistant.done .stats");
  check(/generated/.test(stats) && /tokens\/s/.test(stats), `statistics shown: ${stats}`);
  check(chunks === 1, "one streamed request");
  const answer = await page.textContent(".msg.assistant.done .content");
  check(answer !== null, "an answer");

  // An image attachment goes with the next message.
  await page.setInputFiles("#file", `${process.env.GOLDEN}/media/small.png`);
  await page.waitForSelector("#pending img");
  await page.fill("#input", "What is in this picture?");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant.done").length === 2, null, { timeout: 60000 });
  const second = await page.textContent(".msg.assistant.done:nth-of-type(4) .stats");
  const prompt = Number((second.match(/^(\d+) prompt tokens/) || [])[1]);
  check(prompt > 70, `the image's soft tokens are in the prompt (${second})`);

  // Stop: a long generation ends when asked.
  await page.fill("#input", "Tell me a very long story.");
  await page.click("#send");
  await page.waitForSelector(".msg.assistant.streaming, .msg.assistant.done:nth-of-type(6)");
  await page.evaluate(() => document.getElementById("stop").click()); /* a no-op if it already ended */
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant.done").length === 3, null, { timeout: 30000 });
  check(await page.isEnabled("#send"), "send is enabled again after stop");

  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

  // New chat clears the conversation.
  await page.click("#new");
  check((await page.$$(".msg")).length === 0, "new chat clears the messages");
  check(errors.length === 0, `no script errors: ${errors.join("; ")}`);
} finally {
  await browser.close();
}
console.log(`page: ${checks} checks passed; screenshot ${process.env.SCREENSHOT}`);
