// load.mjs — a bounded load test: 64 concurrent streaming clients, 500 requests with hostile ones mixed in. Every
// request must be answered (200, or a deliberate 4xx / 503), and the server's peak RSS must stay bounded.
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const base = process.env.BASE;
const N = 500, CONCURRENCY = 64;
const counts = {};
let next = 0, bad = 0;

async function streamOne(i) {
  const body = JSON.stringify({ messages: [{ role: "user", content: `Request ${i % 7}: tell me about the number ${i}.` }],
                                max_tokens: 4 + (i % 5), temperature: i % 3 ? 0.7 : 0, seed: i, stream: i % 2 === 0 });
  const res = await fetch(base + "/v1/chat/completions", { method: "POST", body, headers: { "Content-Type": "application/json" } });
  const text = await res.text();
  if (res.status === 200 && i % 2 === 0) {
    if (!text.trimEnd().endsWith("data: [DONE]") || text.includes("\"error\"")) throw new Error(`stream ${i} did not end well`);
  } else if (res.status === 200) {
    JSON.parse(text).choices[0].message;
  } else if (!(res.status === 503 && res.headers.get("retry-after")) && !JSON.parse(text).error) {
    throw new Error(`request ${i}: ${res.status} ${text.slice(0, 200)}`);
  }
  return res.status;
}
async function hostileOne(i) {
  const bodies = ["{", JSON.stringify({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }] }] }),
                  JSON.stringify({ messages: [] }), JSON.stringify({ messages: [{ role: "user", content: "x" }], temperature: 9 })];
  const res = await fetch(base + "/v1/chat/completions", { method: "POST", body: bodies[i % bodies.length] });
  const j = await res.json();
  if (res.status !== 400 || !j.error) throw new Error(`hostile ${i}: ${res.status}`);
  return res.status;
}
async function worker() {
  while (next < N) {
    const i = next++;
    try {
      const status = i % 10 === 9 ? await hostileOne(i) : await streamOne(i);
      counts[status] = (counts[status] || 0) + 1;
    } catch (e) {
      bad++;
      console.error(e.message);
    }
  }
}
const t0 = Date.now();
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
const answered = Object.values(counts).reduce((a, b) => a + b, 0);
assert.equal(bad, 0, `${bad} requests went wrong`);
assert.equal(answered, N, "every request answered");
assert.ok((counts[200] || 0) >= N / 2, `most requests succeed: ${JSON.stringify(counts)}`);
const status = readFileSync(`/proc/${process.env.SERVER_PID}/status`, "utf8");
const hwm = Number(status.match(/VmHWM:\s+(\d+) kB/)[1]) * 1024;
const bound = Number(process.env.RSS_BOUND || 3e9);
assert.ok(hwm < bound, `server peak RSS ${hwm} bytes under ${bound}`);
console.log(`load: ${N} requests by ${CONCURRENCY} clients in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${JSON.stringify(counts)}; ` +
            `server peak RSS ${(hwm / 1e6).toFixed(0)} MB`);
