// hostile.mjs — requests meant to hurt gemma4c serve: each must get a JSON error with the right status in bounded
// time, and the server must keep serving everyone else. Raw sockets where a client library would refuse to send.
import net from "node:net";
import zlib from "node:zlib";
import assert from "node:assert/strict";

const base = process.env.BASE;
const { hostname, port } = new URL(base);
let checks = 0;
const check = (cond, what) => { assert.ok(cond, what); checks++; };

async function post(path, body, headers = {}) {
  const res = await fetch(base + path, { method: "POST", body, headers: { "Content-Type": "application/json", ...headers } });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* checked below */ }
  return { status: res.status, json, text };
}
function expectError(r, status, what) {
  check(r.status === status, `${what}: status ${r.status}, wanted ${status} (${r.text.slice(0, 200)})`);
  check(r.json && r.json.error && typeof r.json.error.message === "string" && "type" in r.json.error && "code" in r.json.error,
        `${what}: a JSON error object`);
}
// What the server answers to raw bytes, until it closes the connection.
function raw(request) {
  return new Promise((resolve) => {
    const s = net.connect(Number(port), hostname);
    let got = "";
    s.on("data", d => { got += d; });
    s.on("error", () => resolve(got));
    s.on("close", () => resolve(got));
    s.write(request);
  });
}
async function healthy(what) {
  const r = await fetch(base + "/health");
  check(r.status === 200, `still serving after ${what}`);
}

// A PNG that claims 100000 x 100000 pixels: refused from its header, nothing allocated for it.
function bombPng() {
  const crcTable = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => { const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]); const c = Buffer.alloc(4); c.writeUInt32BE(crc(td)); return Buffer.concat([len, td, c]); };
  const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(100000, 0); ihdr.writeUInt32BE(100000, 4); ihdr[8] = 8; ihdr[9] = 2;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr),
                        chunk("IDAT", zlib.deflateSync(Buffer.alloc(1000))), chunk("IEND", Buffer.alloc(0))]);
}
// A WAV header that claims an hour of audio, with a second of data.
function hourWav() {
  const h = Buffer.alloc(44); const rate = 16000, data = 2 * rate * 3600;
  h.write("RIFF", 0); h.writeUInt32LE(36 + data, 4); h.write("WAVEfmt ", 8); h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22); h.writeUInt32LE(rate, 24); h.writeUInt32LE(2 * rate, 28); h.writeUInt16LE(2, 32); h.writeUInt16LE(16, 34);
  h.write("data", 36); h.writeUInt32LE(data, 40);
  return Buffer.concat([h, Buffer.alloc(2 * rate)]);
}
const userWith = (part) => JSON.stringify({ messages: [{ role: "user", content: [part] }], max_tokens: 2 });

expectError(await post("/v1/chat/completions", "{\"messages\": [ {\"role\": "), 400, "truncated JSON");
expectError(await post("/v1/chat/completions", "[1,2,3]"), 400, "a JSON array body");
expectError(await post("/v1/chat/completions", "\u0000\u0001garbage"), 400, "binary garbage");
expectError(await post("/v1/chat/completions", "[".repeat(100000)), 400, "deep nesting");
expectError(await post("/v1/chat/completions", JSON.stringify({ messages: "hi" })), 400, "messages of the wrong type");
{
  const r = await post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "hi" }], max_tokens: -5 }));
  expectError(r, 400, "negative max_tokens");
  check(r.json && r.json.error.param === "max_tokens" && /between 1 and 1073741824$/.test(r.json.error.message),
        `negative max_tokens: the message names the field and its bounds in full: ${r.text.slice(0, 200)}`);
}
expectError(await post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "hi" }], stream: "yes" })), 400, "stream of the wrong type");
expectError(await post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "wizard", content: "hi" }] })), 400, "an unknown role");
// Bodies over --max-body: declared (answered before the body is read) and streamed without a length.
const declared = await raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                           "Content-Length: 900000000\r\n\r\n{\"messages\":");
check(declared.startsWith("HTTP/1.1 413") && declared.includes("\"error\""), `a declared body over --max-body: ${declared.slice(0, 80)}`);
const big = new ReadableStream({ start(c) { for (let i = 0; i < 90; i++) c.enqueue(new TextEncoder().encode("x".repeat(100000))); c.close(); } });
const streamed = await fetch(base + "/v1/chat/completions", { method: "POST", body: big, duplex: "half" });
expectError({ status: streamed.status, text: "", json: await streamed.json() }, 413, "a streamed body over --max-body");
expectError(await post("/v1/chat/completions", userWith({ type: "image_url", image_url: { url: "data:image/png;base64," + bombPng().toString("base64") } })),
            400, "a 100000x100000 PNG");
expectError(await post("/v1/chat/completions", userWith({ type: "image_url", image_url: { url: "data:image/png;base64," + Buffer.alloc(5000, 7).toString("base64") } })),
            400, "corrupt image bytes");
const hour = await post("/v1/chat/completions", userWith({ type: "input_audio", input_audio: { data: hourWav().toString("base64"), format: "wav" } }));
check([200, 400].includes(hour.status) && hour.json, `a WAV claiming an hour: ${hour.status}`);
expectError(await post("/v1/chat/completions", userWith({ type: "video_url", video_url: { url: "data:video/mp4;base64," + Buffer.alloc(3000, 1).toString("base64") } })),
            400, "a corrupt video");
const many = Array.from({ length: 5000 }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: "hi" }));
expectError(await post("/v1/chat/completions", JSON.stringify({ messages: many })), 400, "thousands of messages past the context");
expectError(await post("/v1/completions", JSON.stringify({ prompt: 42 })), 400, "a prompt of the wrong type");
expectError(await post("/detokenize", JSON.stringify({ tokens: [1, 2, 99999999] })), 400, "an id outside the vocabulary");
expectError(await post("/tokenize", JSON.stringify({ content: 7 })), 400, "tokenize without text");
const missing = await fetch(base + "/v1/nothing");
check(missing.status === 404 && (await missing.json()).error, "404 as JSON");
const wrongMethod = await fetch(base + "/v1/chat/completions");
check(wrongMethod.status === 405 && (await wrongMethod.json()).error, "405 as JSON");
await healthy("malformed requests");

// Slow clients: connections that send half a request and then nothing must not stop the others.
const slow = [];
for (let i = 0; i < 40; i++) {
  const s = net.connect(Number(port), hostname);
  s.on("error", () => {});
  s.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"messages\":");
  slow.push(s);
}
await new Promise(r => setTimeout(r, 300));
const t0 = Date.now();
const during = await post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "hi" }], max_tokens: 2 }));
check(during.status === 200, "a request is answered while 40 slow clients hang");
check(Date.now() - t0 < 20000, "promptly");
for (const s of slow) s.destroy();

// A flood of connections: beyond the limit they are refused, and the server recovers.
const flood = [];
for (let i = 0; i < 600; i++) { const s = net.connect(Number(port), hostname); s.on("error", () => {}); flood.push(s); }
await new Promise(r => setTimeout(r, 500));
for (const s of flood) s.destroy();
await new Promise(r => setTimeout(r, 300));
await healthy("a flood of 600 connections");

// Headers far larger than any request needs.
const bigHeader = await raw("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + "a".repeat(200000) + "\r\n\r\n");
check(!bigHeader.startsWith("HTTP/1.1 200"), "huge headers are refused");
await healthy("huge headers");

console.log(`hostile: ${checks} checks passed`);
