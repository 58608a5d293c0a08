// api_key.mjs — a server started with --api-key: no key or a wrong one is 401 (JSON), the right one works.
import OpenAI from "openai";
import assert from "node:assert/strict";

const base = process.env.BASE;
const messages = [{ role: "user", content: "hi" }];
let checks = 0;
for (const key of ["wrong-key", "sekrit-ke", "sekrit-keyy", ""]) {
  const r = await fetch(base + "/v1/chat/completions", { method: "POST", body: JSON.stringify({ messages, max_tokens: 1 }),
    headers: key ? { Authorization: `Bearer ${key}` } : {} });
  assert.equal(r.status, 401, `key '${key}'`);
  const j = await r.json();
  assert.ok(j.error && j.error.code === "invalid_api_key", "a JSON error");
  checks += 2;
}
const models = await fetch(base + "/v1/models");
assert.equal(models.status, 401, "models need the key too"); checks++;
const health = await fetch(base + "/health");
assert.equal(health.status, 200, "health does not"); checks++;
const client = new OpenAI({ baseURL: base + "/v1", apiKey: process.env.API_KEY, maxRetries: 0 });
const r = await client.chat.completions.create({ model: "gemma4c", messages, max_tokens: 2, temperature: 0 });
assert.ok(r.choices[0].message.content !== undefined, "the right key works"); checks++;
// one running, one queued: of six at once, some are turned away with 503 and Retry-After, none is lost
const six = await Promise.all(Array.from({ length: 6 }, (_, i) => fetch(base + "/v1/chat/completions", { method: "POST",
  headers: { Authorization: `Bearer ${process.env.API_KEY}` },
  body: JSON.stringify({ messages: [{ role: "user", content: `busy ${i}` }], max_tokens: 200, temperature: 0 }) })));
const busy = six.filter(r => r.status === 503);
assert.ok(busy.length >= 1 && six.filter(r => r.status === 200).length >= 2, `statuses ${six.map(r => r.status)}`); checks++;
for (const r of busy) {
  assert.ok(r.headers.get("retry-after") && (await r.json()).error.code === "queue_full", "503 with Retry-After"); checks++;
}
console.log(`api_key: ${checks} checks passed`);
