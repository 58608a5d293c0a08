// openai_client.mjs — gemma4c serve through the official openai package: every endpoint and field the server
// documents, checked against what the answers must hold. Exits non-zero on the first failure.
import OpenAI from "openai";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const base = process.env.BASE;
const golden = process.env.GOLDEN;
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "unused", maxRetries: 0, timeout: 120000 });
const model = "gemma4c";
let checks = 0;
const check = (cond, what) => { assert.ok(cond, what); checks++; };

async function expectError(promise, status, param) {
  try {
    await promise;
  } catch (e) {
    check(e.status === status, `status ${e.status}, wanted ${status}: ${e.message}`);
    if (param) check(e.error && e.error.param === param, `param ${e.error && e.error.param}, wanted ${param}`);
    check(typeof e.message === "string" && e.message.length > 0, "an error message");
    return e;
  }
  assert.fail(`wanted a ${status} error`);
}

const hello = [{ role: "user", content: "Write a haiku about the sea." }];
const greedy = { model, messages: hello, temperature: 0, max_tokens: 24 };

// models
const models = await client.models.list();
check(models.data.length === 1 && typeof models.data[0].id === "string", "one model listed");

// non-streaming greedy: exactly `gemma4c run --greedy`
const one = await client.chat.completions.create(greedy);
const runText = readFileSync(process.env.RUN_TEXT_FILE, "utf8").replace(/\n$/, "");
check(one.object === "chat.completion" && one.choices.length === 1, "a chat.completion with one choice");
check(one.choices[0].message.role === "assistant", "assistant role");
check(one.choices[0].message.content === runText,
      `greedy content equals gemma4c run: ${JSON.stringify(one.choices[0].message.content)} vs ${JSON.stringify(runText)}`);
check(String(one.usage.completion_tokens) === process.env.RUN_TOKENS,
      `as many tokens as gemma4c run (${one.usage.completion_tokens} vs ${process.env.RUN_TOKENS})`);
check(one.usage.prompt_tokens > 5 && one.usage.total_tokens === one.usage.prompt_tokens + one.usage.completion_tokens,
      "usage adds up");
check(["stop", "length"].includes(one.choices[0].finish_reason), "finish_reason");

// streaming, with usage: the same text, in pieces; the prompt comes from the session's cache this time
const stream = await client.chat.completions.create({ ...greedy, stream: true, stream_options: { include_usage: true } });
let streamed = "", usage = null, finish = null, chunks = 0, roleSeen = false;
for await (const c of stream) {
  chunks++;
  check(c.object === "chat.completion.chunk", "chunk object");
  if (c.usage) usage = c.usage;
  if (!c.choices.length) continue;
  const d = c.choices[0].delta;
  if (d.role) roleSeen = true;
  if (d.content) streamed += d.content;
  if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
}
check(roleSeen && chunks > 2, "a role chunk and several more");
check(streamed === one.choices[0].message.content, "streamed text equals the non-streamed one");
check(finish === one.choices[0].finish_reason, "same finish reason");
check(usage && usage.completion_tokens === one.usage.completion_tokens, "usage in the last chunk");
check(usage.prompt_tokens_details.cached_tokens > 0, `prompt reused (${usage.prompt_tokens_details.cached_tokens} cached)`);

// greedy among 16 concurrent requests (other prompts, sampled): identical to alone
const others = [];
for (let i = 0; i < 16; i++)
  others.push(client.chat.completions.create({ model, messages: [{ role: "user", content: `Count to ${i + 3}, please.` }],
                                               temperature: 0.8, seed: i, max_tokens: 8 + i }));
const together = await Promise.all([...others, client.chat.completions.create(greedy),
                                    client.chat.completions.create(greedy)]);
for (const r of together.slice(16))
  check(r.choices[0].message.content === one.choices[0].message.content, "greedy among 16 others equals alone");
for (const r of together.slice(0, 16)) check(r.usage.completion_tokens >= 1, "every concurrent request answered");

// media: an image, audio and a video, from data: URLs and base64; one image from the media directory
const png = readFileSync(`${golden}/media/small.png`).toString("base64");
const wav = readFileSync(`${golden}/media/speech_16k.wav`).toString("base64");
const mp4 = readFileSync(`${golden}/media/clip.mp4`).toString("base64");
const withMedia = await client.chat.completions.create({
  model, temperature: 0, max_tokens: 4,
  messages: [{ role: "user", content: [
    { type: "text", text: "Describe these." },
    { type: "image_url", image_url: { url: `data:image/png;base64,${png}` } },
    { type: "input_audio", input_audio: { data: wav, format: "wav" } },
    { type: "video_url", video_url: { url: `data:video/mp4;base64,${mp4}` } },
  ] }],
});
check(withMedia.usage.prompt_tokens > one.usage.prompt_tokens + 100, `media soft tokens in the prompt (${withMedia.usage.prompt_tokens})`);
const fromDir = await client.chat.completions.create({
  model, temperature: 0, max_tokens: 2,
  messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: `file://${process.env.MEDIA_DIR}/small.png` } },
                                       { type: "text", text: "What is this?" }] }],
});
check(fromDir.usage.prompt_tokens > 50, "an image from --media-dir");

// tools: accepted with each tool_choice; an assistant turn with tool_calls and the tool's result render back
const tools = [{ type: "function", function: { name: "get_weather", description: "Weather of a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
for (const tool_choice of ["auto", "none", "required", { type: "function", function: { name: "get_weather" } }]) {
  const r = await client.chat.completions.create({ model, messages: hello, tools, tool_choice, temperature: 0, max_tokens: 12 });
  const m = r.choices[0].message;
  check(typeof m.content === "string" || (m.tool_calls && m.tool_calls.length), `an answer with tool_choice ${JSON.stringify(tool_choice)}`);
  if (r.choices[0].finish_reason === "tool_calls") {
    check(m.tool_calls.every(c => c.type === "function" && typeof c.id === "string" && JSON.parse(c.function.arguments)),
          "tool calls are well formed");
  } else if (typeof tool_choice === "object") {
    check(m.content.startsWith("<|tool_call>call:get_weather{"), "a forced call that did not close is returned as text");
  }
}
const noTools = await client.chat.completions.create({ model, messages: hello, tools, tool_choice: "none", temperature: 0, max_tokens: 1 });
const withTools = await client.chat.completions.create({ model, messages: hello, tools, temperature: 0, max_tokens: 1 });
check(withTools.usage.prompt_tokens > noTools.usage.prompt_tokens + 10, "tool declarations are in the prompt (not with none)");
const roundTrip = await client.chat.completions.create({
  model, tools, temperature: 0, max_tokens: 6,
  messages: [...hello,
    { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function",
      function: { name: "get_weather", arguments: JSON.stringify({ city: "Paris" }) } }] },
    { role: "tool", tool_call_id: "call_1", content: JSON.stringify({ temperature: 21 }) }],
});
check(roundTrip.usage.prompt_tokens > withTools.usage.prompt_tokens, "a tool round trip renders");
await expectError(client.chat.completions.create({ model, messages: hello, tools, tool_choice: { type: "function", function: { name: "nope" } } }),
                  400, "tool_choice");

// thinking: on puts the thinking flag in the system turn; off does not
const off = await client.chat.completions.create({ model, messages: hello, reasoning_effort: "none", temperature: 0, max_tokens: 2 });
const on = await client.chat.completions.create({ model, messages: hello, reasoning_effort: "high", temperature: 0, max_tokens: 2 });
const kw = await client.chat.completions.create({ model, messages: hello, temperature: 0, max_tokens: 2,
                                                 chat_template_kwargs: { enable_thinking: true } });
check(on.usage.prompt_tokens > off.usage.prompt_tokens, "thinking on changes the prompt");
check(kw.usage.prompt_tokens === on.usage.prompt_tokens, "chat_template_kwargs.enable_thinking is the same switch");
check(!("reasoning_content" in off.choices[0].message) || typeof off.choices[0].message.reasoning_content === "string",
      "reasoning_content is text when present");

// logprobs: one entry per token; greedy picks the most likely, which leads the alternatives
const lp = await client.chat.completions.create({ ...greedy, max_tokens: 6, logprobs: true, top_logprobs: 3 });
const entries = lp.choices[0].logprobs.content;
check(entries.length === lp.usage.completion_tokens, `${entries.length} logprob entries for ${lp.usage.completion_tokens} tokens`);
for (const e of entries) {
  check(e.top_logprobs.length === 3 && e.logprob <= 0, "three alternatives, a log-probability");
  check(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-4, "greedy took the most likely token");
  check(Array.isArray(e.bytes), "bytes");
}

// logit_bias: +100 forces a token at every step, -100 bans the greedy choice; completions take it too
const post = async (path, body) => (await fetch(base + path, { method: "POST", body: JSON.stringify(body) })).json();
const forced = (await post("/tokenize", { content: "Hello" })).tokens[0];
const forcedText = (await post("/detokenize", { tokens: [forced] })).content;
const pushed = await client.chat.completions.create({ ...greedy, max_tokens: 3, logit_bias: { [forced]: 100 } });
check(pushed.choices[0].message.content === forcedText.repeat(3),
      `logit_bias +100 on ${forced} gives it three times: ${JSON.stringify(pushed.choices[0].message.content)}`);
const pushedCmpl = await client.completions.create({ model, prompt: "The sea is", temperature: 0, max_tokens: 2,
                                                     logit_bias: { [forced]: 100 } });
check(pushedCmpl.choices[0].text === forcedText.repeat(2), "completions take logit_bias");
const first = lp.choices[0].logprobs.content[0];
const firstIds = (await post("/tokenize", { content: first.token })).tokens;
check(firstIds.length === 1, `the greedy first token ${JSON.stringify(first.token)} is one token`);
const banned = await client.chat.completions.create({ ...greedy, max_tokens: 1, logprobs: true, top_logprobs: 2,
                                                      logit_bias: { [firstIds[0]]: -100 } });
const after = banned.choices[0].logprobs.content[0];
check(after.token !== first.token && after.token === first.top_logprobs[1].token,
      `a banned greedy token gives way to the runner-up (${JSON.stringify(after.token)} vs ${JSON.stringify(first.top_logprobs[1].token)})`);

// response_format json_object: every answer is a JSON object, or a prefix of one when max_tokens cut it; streamed
// and whole answers agree; thinking first is allowed
const jsonAnswer = (text, finish, what) => {
  if (finish === "stop") {
    let parsed = null;
    try { parsed = JSON.parse(text); } catch (e) { /* checked below */ }
    check(parsed !== null && typeof parsed === "object" && !Array.isArray(parsed), `${what}: a JSON object: ${JSON.stringify(text)}`);
    return 1;
  }
  check(finish === "length" && text.startsWith("{"), `${what}: cut by max_tokens inside an object: ${JSON.stringify(text)}`);
  return 0;
};
let objects = 0;
for (let seed = 1; seed <= 6; seed++) {
  const req = { model, messages: hello, max_tokens: 40, temperature: 1, seed, response_format: { type: "json_object" } };
  const whole = await client.chat.completions.create(req);
  objects += jsonAnswer(whole.choices[0].message.content, whole.choices[0].finish_reason, `json seed ${seed}`);
  let text = "";
  for await (const c of await client.chat.completions.create({ ...req, stream: true })) text += c.choices[0]?.delta?.content ?? "";
  check(text === whole.choices[0].message.content, `json seed ${seed}: streamed equals whole`);
}
check(objects >= 1, `${objects} of 6 sampled JSON answers closed their object`);
const thoughtful = await client.chat.completions.create({ model, messages: hello, max_tokens: 40, temperature: 1, seed: 3,
                                                          reasoning_effort: "high", response_format: { type: "json_object" } });
const tc = thoughtful.choices[0];
check(tc.message.content === "" || tc.message.content === null || tc.message.content.startsWith("{") ||
      tc.message.content.startsWith("\n{"), `json after thinking: ${JSON.stringify(tc.message.content)}`);
const jsonCmpl = await client.completions.create({ model, prompt: "The sea is", max_tokens: 40, temperature: 0,
                                                   response_format: { type: "json_object" } });
jsonAnswer(jsonCmpl.choices[0].text, jsonCmpl.choices[0].finish_reason, "json completion");

// response_format json_schema (structured outputs): every answer is an instance of the schema, its properties in
// the schema's order; streamed and whole answers agree; completions take it too; what cannot be enforced is a 400
const shape = {
  type: "object",
  properties: { answer: { enum: ["yes", "no"] }, count: { type: "integer", minimum: -5, exclusiveMaximum: 40 },
                step: { type: "integer", multipleOf: 5 },
                score: { type: "number", minimum: 0, maximum: 1 }, sure: { type: ["boolean", "null"] },
                picks: { type: "array", items: { $ref: "#/$defs/pick" }, minItems: 1, maxItems: 2 },
                note: { type: "string", minLength: 1, maxLength: 4 }, day: { type: "string", pattern: "^\\d{4}-\\d{2}-\\d{2}$" },
                tag: { type: "string", pattern: "x", minLength: 2, maxLength: 5 } },
  required: ["answer", "count", "step", "score", "sure", "picks", "note", "day", "tag"], additionalProperties: false,
  $defs: { pick: { enum: [1, 2, "three"] } },
};
const structured = { type: "json_schema", json_schema: { name: "verdict", strict: true, schema: shape } };
const instance = (text, finish, what) => {
  let v = null;
  try { v = JSON.parse(text); } catch (e) { /* checked below */ }
  check(finish === "stop" && v !== null && JSON.stringify(Object.keys(v)) === JSON.stringify(["answer", "count", "step", "score", "sure", "picks", "note", "day", "tag"]) &&
        ["yes", "no"].includes(v.answer) && Number.isInteger(v.count) && v.count >= -5 && v.count < 40 &&
        Number.isInteger(v.step) && v.step % 5 === 0 &&
        typeof v.score === "number" && v.score >= 0 && v.score <= 1 && (v.sure === null || typeof v.sure === "boolean") &&
        Array.isArray(v.picks) && v.picks.length >= 1 && v.picks.length <= 2 && v.picks.every(p => [1, 2, "three"].includes(p)) &&
        typeof v.note === "string" && [...v.note].length >= 1 && [...v.note].length <= 4 &&
        typeof v.day === "string" && /^\d{4}-\d{2}-\d{2}$/.test(v.day) &&
        typeof v.tag === "string" && /x/.test(v.tag) && [...v.tag].length >= 2 && [...v.tag].length <= 5,
        `${what}: an instance of the schema (${finish}): ${JSON.stringify(text)}`);
};
for (let seed = 0; seed <= 4; seed++) {
  const req = { model, messages: hello, max_tokens: 1200, temperature: seed ? 1 : 0, seed, response_format: structured };
  const whole = await client.chat.completions.create(req);
  instance(whole.choices[0].message.content, whole.choices[0].finish_reason, `json_schema seed ${seed}`);
  let text = "";
  for await (const c of await client.chat.completions.create({ ...req, stream: true })) text += c.choices[0]?.delta?.content ?? "";
  check(text === whole.choices[0].message.content, `json_schema seed ${seed}: streamed equals whole`);
}
const schemaCmpl = await client.completions.create({ model, prompt: "The sea is", max_tokens: 1200, temperature: 0,
                                                     response_format: structured });
instance(schemaCmpl.choices[0].text, schemaCmpl.choices[0].finish_reason, "json_schema completion");
// a union of models (pydantic's Union[Cat, Dog]): alternatives of one type, told apart as the answer is written
const pets = {
  type: "object", required: ["pets"], additionalProperties: false,
  properties: { pets: { type: "array", minItems: 1, maxItems: 2, items: { anyOf: [{ $ref: "#/$defs/cat" }, { $ref: "#/$defs/dog" }] } } },
  $defs: {
    cat: { type: "object", properties: { kind: { const: "cat" }, lives: { type: "integer", minimum: 1, maximum: 9 } },
           required: ["kind", "lives"], additionalProperties: false },
    dog: { type: "object", properties: { kind: { const: "dog" }, name: { type: "string", maxLength: 6 } },
           required: ["kind", "name"], additionalProperties: false },
  },
};
const pet = v => v !== null && typeof v === "object" && (
  (JSON.stringify(Object.keys(v)) === '["kind","lives"]' && v.kind === "cat" && Number.isInteger(v.lives) && v.lives >= 1 && v.lives <= 9) ||
  (JSON.stringify(Object.keys(v)) === '["kind","name"]' && v.kind === "dog" && typeof v.name === "string" && [...v.name].length <= 6));
for (let seed = 0; seed <= 3; seed++) {
  const r = await client.chat.completions.create({ model, messages: hello, max_tokens: 2000, temperature: seed ? 1 : 0, seed,
    response_format: { type: "json_schema", json_schema: { name: "pets", strict: true, schema: pets } } });
  let v = null;
  try { v = JSON.parse(r.choices[0].message.content); } catch (e) { /* checked below */ }
  check(r.choices[0].finish_reason === "stop" && v !== null && JSON.stringify(Object.keys(v)) === '["pets"]' &&
        Array.isArray(v.pets) && v.pets.length >= 1 && v.pets.length <= 2 && v.pets.every(pet),
        `a union of objects, seed ${seed}: ${JSON.stringify(r.choices[0].message.content)}`);
}
const anyObject = await client.chat.completions.create({ model, messages: hello, max_tokens: 40, temperature: 0,
                                                         response_format: { type: "json_schema", json_schema: { name: "any" } } });
jsonAnswer(anyObject.choices[0].message.content, anyObject.choices[0].finish_reason, "json_schema without a schema");
for (const [schema, why] of [[{ type: "object", properties: { a: { type: "array", contains: { const: 1 } } } }, "keyword contains"],
                             [{ type: "object", properties: { a: { type: "array", uniqueItems: true } } }, "uniqueItems is enforced only where"],
                             [{ type: "object", properties: { a: { type: "number", multipleOf: 0.5 } } }, "multipleOf must be a whole number"],
                             [{ type: "object", properties: { a: { type: "string", pattern: "(a)\\1" } } }, "backreferences"],
                             [{ type: "object", properties: { a: { type: "integer", minimum: 1, maximum: 0 } } }, "no number lies within"],
                             [{ type: "object", properties: { a: { type: "string", pattern: "^abc$", maxLength: 2 } } }, "no string of minLength to maxLength"],
                             [{ type: "string" }, "describe an object"],
                             [{ type: "object", properties: { a: { oneOf: [{ type: "integer" }, { type: "number" }] } } }, "oneOf alternatives that one value"],
                             [{ type: "object", properties: { a: { $ref: "#/$defs/none" } } }, "$ref"]]) {
  const e = await expectError(client.chat.completions.create({ model, messages: hello, response_format:
    { type: "json_schema", json_schema: { name: "x", schema } } }), 400, "response_format.json_schema.schema");
  check(e.message.includes(why), `the refusal says why: ${e.message}`);
}
await expectError(client.chat.completions.create({ model, messages: hello, response_format: { type: "json_schema" } }), 400,
                  "response_format.json_schema");
await expectError(client.chat.completions.create({ model, messages: hello, response_format:
  { type: "json_schema", json_schema: { name: "x", schema: [1] } } }), 400, "response_format.json_schema.schema");
await expectError(client.chat.completions.create({ model, messages: hello, response_format:
  { type: "json_schema", json_schema: { name: 5 } } }), 400, "response_format.json_schema.name");

// completions (raw prompt), streaming and not
const cmpl = await client.completions.create({ model, prompt: "The sea is", temperature: 0, max_tokens: 8 });
check(cmpl.object === "text_completion" && typeof cmpl.choices[0].text === "string", "a text_completion");
let ctext = "";
for await (const c of await client.completions.create({ model, prompt: "The sea is", temperature: 0, max_tokens: 8, stream: true }))
  ctext += c.choices[0] ? c.choices[0].text : "";
check(ctext === cmpl.choices[0].text, "streamed completion equals the non-streamed one");

// completions' log-probabilities in the legacy format, streamed and not; the engine's timings ride along
const clp = await client.completions.create({ model, prompt: "The sea is", temperature: 0, max_tokens: 8, logprobs: 2 });
const L = clp.choices[0].logprobs;
check(L.tokens.length === clp.usage.completion_tokens && L.token_logprobs.length === L.tokens.length &&
      L.top_logprobs.length === L.tokens.length && L.text_offset.length === L.tokens.length,
      `legacy logprobs: one entry per token (${L.tokens.length} for ${clp.usage.completion_tokens})`);
check(L.text_offset[0] === 0, "text_offset starts at 0");
for (let i = 0; i < L.tokens.length; i++) {
  const alts = Object.entries(L.top_logprobs[i]);
  check(alts.length >= 1 && alts.length <= 2 && L.token_logprobs[i] <= 0, `token ${i}: at most 2 alternatives, a log-probability`);
  check(Math.abs(Math.max(...alts.map(a => a[1])) - L.token_logprobs[i]) < 1e-4, `token ${i}: greedy took the most likely`);
  if (i) check(L.text_offset[i] - L.text_offset[i - 1] === [...L.tokens[i - 1]].length, `text_offset ${i} counts the characters before it`);
}
const slp = { tokens: [], token_logprobs: [], text_offset: [] };
let timed = null;
for await (const c of await client.completions.create({ model, prompt: "The sea is", temperature: 0, max_tokens: 8, logprobs: 2,
                                                        stream: true })) {
  if (c.timings) timed = c.timings;
  const l = c.choices[0] && c.choices[0].logprobs;
  if (l) for (const k of Object.keys(slp)) slp[k].push(...l[k]);
}
check(JSON.stringify(slp.tokens) === JSON.stringify(L.tokens) && JSON.stringify(slp.text_offset) === JSON.stringify(L.text_offset) &&
      JSON.stringify(slp.token_logprobs) === JSON.stringify(L.token_logprobs), "streamed legacy logprobs equal the non-streamed ones");
for (const t of [clp.timings, timed])
  check(t && t.predicted_n === clp.usage.completion_tokens && t.prompt_n === clp.usage.prompt_tokens && t.first_token_ms > 0 &&
        t.prompt_ms > 0 && t.before_submit_ms >= 0 && t.first_token_ms >= t.prompt_ms, "timings: the engine's counts and durations");

// errors: each a 4xx with a JSON error naming the field
await expectError(client.chat.completions.create({ model, messages: [] }), 400, "messages");
await expectError(client.chat.completions.create({ model, messages: hello, temperature: "hot" }), 400, "temperature");
await expectError(client.chat.completions.create({ model, messages: hello, n: 2 }), 400, "n");
await expectError(client.chat.completions.create({ model, messages: hello, top_logprobs: 3 }), 400, "top_logprobs");
await expectError(client.chat.completions.create({ model, messages: hello, response_format: "json" }), 400, "response_format");
for (const response_format of [{ type: "xml" }, {}])
  await expectError(client.chat.completions.create({ model, messages: hello, response_format }), 400, "response_format.type");
await expectError(client.chat.completions.create({ model, messages: hello, response_format: { type: "json_object" },
  tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }], tool_choice: "required" }),
  400, "response_format");
for (const logit_bias of [[1], "x", { abc: 1 }, { "-1": 1 }, { "5": 101 }, { "5": "up" }, { "99999999": 1 },
                          Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [String(i), 1]))])
  await expectError(client.chat.completions.create({ model, messages: hello, logit_bias }), 400, "logit_bias");
await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: [
  { type: "image_url", image_url: { url: "https://example.com/cat.png" } }] }] }), 400, "messages[0].content[0].image_url");
await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: [
  { type: "image_url", image_url: { url: `file://${process.env.SECRET}` } }] }] }), 400, "messages[0].content[0].image_url");
await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: [
  { type: "image_url", image_url: { url: `file://${process.env.MEDIA_DIR}/../secret.txt` } }] }] }), 400);
await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: [
  { type: "image_url", image_url: { url: "data:image/png;base64,!!!notbase64" } }] }] }), 400);
await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: [
  { type: "image_url", image_url: { url: "data:image/png;base64,aGVsbG8gd29ybGQ=" } }] }] }), 400);
await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: "word ".repeat(2000) }] }),
                  400, "messages");

// a cancelled stream: the server frees the session and keeps serving
const controller = new AbortController();
const cancelled = await client.chat.completions.create({ ...greedy, max_tokens: 400, stream: true }, { signal: controller.signal });
try {
  for await (const c of cancelled) { if (c.choices.length) controller.abort(); }
} catch (e) { check(e.name === "APIUserAbortError" || e.name === "AbortError", `aborted (${e.name})`); }
let active = -1;
for (let i = 0; i < 50 && active !== 0; i++) {
  await new Promise(r => setTimeout(r, 100));
  const metrics = await (await fetch(base + "/metrics")).text();
  active = Number(metrics.match(/^gemma4c_active_sessions (\d+)$/m)[1]);
}
check(active === 0, "the cancelled request's session is free again");

// tokenize / detokenize, health, metrics
const tok = await (await fetch(base + "/tokenize", { method: "POST", body: JSON.stringify({ content: "Hello sea" }) })).json();
check(Array.isArray(tok.tokens) && tok.tokens.length > 0, "tokenize");
const detok = await (await fetch(base + "/detokenize", { method: "POST", body: JSON.stringify({ tokens: tok.tokens }) })).json();
check(detok.content === "Hello sea", `detokenize round trip: ${JSON.stringify(detok.content)}`);
const health = await fetch(base + "/health");
check(health.status === 200 && (await health.json()).status === "ok", "health");
const metrics = await (await fetch(base + "/metrics")).text();
for (const name of ["gemma4c_requests_total{code=\"200\"}", "gemma4c_requests_total{code=\"400\"}", "gemma4c_prompt_tokens_total",
                    "gemma4c_prompt_tokens_cached_total", "gemma4c_completion_tokens_total", "gemma4c_queue_length",
                    "gemma4c_active_sessions", "gemma4c_time_to_first_token_seconds_bucket", "gemma4c_inter_token_seconds_count"])
  check(metrics.includes(name), `metrics has ${name}`);

console.log(`openai_client: ${checks} checks passed`);
