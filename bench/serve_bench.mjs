// serve_bench.mjs — speed through HTTP: one streaming client, then N at once, against a running `gemma4c serve`.
// Prints time to first token and decode tokens/s as a client sees them (from the SSE chunks; logprobs are asked
// for so that every token arrives in a chunk, text or not), per client and in aggregate, and beside them the
// engine's own figures for the same request (the stream's "timings"): the difference is what the server and HTTP
// cost, measured in one process on one request. bench/RESULTS.md records its output beside `gemma4c bench`.
//   node bench/serve_bench.mjs http://127.0.0.1:8080 [prompt_tokens=512] [max_tokens=128] [clients=1,8]
const [base = "http://127.0.0.1:8080", promptTokens = "512", maxTokens = "128", clientsArg = "1,8"] = process.argv.slice(2);

// A prompt of about promptTokens tokens (the server's own tokenizer counts), different per client so that no
// request reuses another's cache.
async function promptFor(i) {
  let words = [];
  for (let k = 0; words.length < Number(promptTokens) * 2; k++) words.push(`w${(k * 7919 + i * 104729) % 100003}`);
  let text = words.join(" ");
  for (;;) {
    const r = await fetch(base + "/tokenize", { method: "POST", body: JSON.stringify({ content: text }) });
    const n = (await r.json()).tokens.length;
    if (n <= Number(promptTokens)) return text;
    text = text.split(" ").slice(0, Math.floor(text.split(" ").length * Number(promptTokens) / n) - 1).join(" ");
  }
}

async function one(prompt) {
  const t0 = performance.now();
  const res = await fetch(base + "/v1/completions", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: Number(maxTokens), temperature: 0, stream: true, logprobs: 0,
                           stream_options: { include_usage: true } }) });
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  const reader = res.body.getReader(), dec = new TextDecoder();
  let buf = "", first = 0, last = 0, usage = null, timings = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(6, cut);
      buf = buf.slice(cut + 2);
      if (ev === "[DONE]") continue;
      const j = JSON.parse(ev);
      if (j.usage) usage = j.usage;
      if (j.timings) timings = j.timings;
      if (j.choices && j.choices.length) { const t = performance.now(); if (!first) first = t; last = t; }
    }
  }
  const n = usage.completion_tokens;
  return { ttft: (first - t0) / 1000, decode: n > 1 ? (n - 1) / ((last - first) / 1000) : 0, tokens: n, t0, first, last,
           // llama.cpp's server sends prompt_ms and predicted_per_second but neither first_token_ms nor before_submit_ms
           engine_ttft: timings ? (timings.first_token_ms ?? timings.prompt_ms) / 1000 : NaN,
           engine_decode: timings ? timings.predicted_per_second : NaN,
           before_submit: timings && timings.before_submit_ms !== undefined ? timings.before_submit_ms / 1000 : NaN };
}

const results = [];
for (const clients of clientsArg.split(",").map(Number)) {
  const prompts = await Promise.all(Array.from({ length: clients }, (_, i) => promptFor(i + clients * 100)));
  const runs = await Promise.all(prompts.map(one));
  const start = Math.max(...runs.map(r => r.first)), end = Math.min(...runs.map(r => r.last));
  const perClient = runs.map(r => r.decode);
  const aggregate = perClient.reduce((a, b) => a + b, 0);
  const overhead = runs.map(r => r.ttft - r.engine_ttft), ratio = runs.map(r => r.decode / r.engine_decode);
  results.push({ clients, ttft_s: runs.map(r => r.ttft), decode_tok_s: perClient, aggregate_decode_tok_s: aggregate,
                 overlap_s: Math.max(0, (end - start) / 1000), engine_ttft_s: runs.map(r => r.engine_ttft),
                 engine_decode_tok_s: runs.map(r => r.engine_decode), ttft_overhead_s: overhead,
                 before_submit_s: runs.map(r => r.before_submit), decode_vs_engine: ratio });
  console.log(`${clients} client(s): time to first token ${runs.map(r => r.ttft.toFixed(3)).join(" ")} s; ` +
              `decode ${perClient.map(x => x.toFixed(2)).join(" ")} tok/s; aggregate ${aggregate.toFixed(2)} tok/s`);
  console.log(`  the engine: time to first token ${runs.map(r => r.engine_ttft.toFixed(3)).join(" ")} s; decode ` +
              `${runs.map(r => r.engine_decode.toFixed(2)).join(" ")} tok/s; server+HTTP on the first token ` +
              `${overhead.map(x => (x * 1000).toFixed(1)).join(" ")} ms (of which before submission ` +
              `${runs.map(r => (r.before_submit * 1000).toFixed(1)).join(" ")} ms); client decode / engine decode ` +
              `${ratio.map(x => (100 * x).toFixed(1) + " %").join(" ")}`);
}
console.log(JSON.stringify(results));
