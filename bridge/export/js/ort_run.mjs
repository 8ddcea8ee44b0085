// Runs an ONNX model in Node on onnxruntime-web's wasm backend, the build a web
// page loads, for bridge's parity checks of `bridge convert --onnx`
// (bridge/export/onnx.py).
//
// Why it looks like this:
// - In Node, `require('onnxruntime-web')` resolves to its node build
//   (dist/ort.node.min.js), which runs the wasm backend and reads
//   ort-wasm-simd-threaded.wasm from node_modules: nothing is fetched.
// - One thread (env.wasm.numThreads, from the request): the figures compare
//   with tfjs's wasm backend in Node, which is single-threaded, and the
//   machine's cores are shared with other work.
// - One process serves a whole batch, as run.mjs does: the wasm binary loads
//   once, each model once, and every input set given for it runs on the same
//   session. Results are appended line by line, so a crash keeps what was done.
//
// Usage: node ort_run.mjs REQUEST.json
// REQUEST: {"js_dir", "work_dir", "threads",
//           "models": [{"model_path", "outputs": [name, ...],
//                       "runs": [{"id", "repeat", "inputs": [{"name", "dtype", "shape", "file"}]}]}]}
// Input and output files are raw little-endian arrays relative to work_dir:
// float32, float64, int64, int32, int16, int8, uint8, and bool as uint8.
// int64 crosses as int64 (BigInt64Array): ONNX keeps torch's int64.
// The runner writes a first line {"versions": {...}}, then one line per run:
//   {"id", "backend": "wasm", "ok": true, "outputs": [{"name", "dtype", "shape", "file"}], "ms": [per run]}
//   {"id", "backend": "wasm", "ok": false, "error": "..."}
// A run may ask for "repeat": N runs (latency); outputs are from the first.
// Exit code 0 means every line was written (a run may still have failed).

import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const TYPED = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array,
  int16: Int16Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};
// onnxruntime-web's tensor type names -> the exchange dtype names
const ORT_TO_EXCHANGE = { float32: 'float32', float64: 'float64', int64: 'int64', int32: 'int32',
  int16: 'int16', int8: 'int8', uint8: 'uint8', bool: 'bool' };

function exactArrayBuffer(buf) {
  // A Node Buffer may be a view into a larger pool; copy out exactly its bytes.
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

async function readFeeds(ort, workDir, inputs) {
  const feeds = {};
  for (const inp of inputs) {
    const Typed = TYPED[inp.dtype];
    if (!Typed) throw new Error(`unsupported input dtype ${inp.dtype} for ${inp.name}`);
    const data = new Typed(exactArrayBuffer(await readFile(join(workDir, inp.file))));
    feeds[inp.name] = new ort.Tensor(inp.dtype, data, inp.shape);
  }
  return feeds;
}

async function runOnce(ort, session, req, spec, run) {
  const feeds = await readFeeds(ort, req.work_dir, run.inputs);
  const ms = [];
  let first;
  for (let k = 0; k < (run.repeat || 1); k++) {
    const t0 = performance.now();
    const out = await session.run(feeds, spec.outputs);
    for (const name of spec.outputs) {
      if (!out[name]) throw new Error(`the session returned no output ${name}`);
      void out[name].data; // on the CPU already for wasm: read it as a page would
    }
    ms.push(performance.now() - t0);
    if (k === 0) first = out;
    else for (const t of Object.values(out)) t.dispose();
  }
  const written = [];
  for (const [i, name] of spec.outputs.entries()) {
    const t = first[name];
    const dtype = ORT_TO_EXCHANGE[t.type];
    if (!dtype) throw new Error(`output ${name} has type ${t.type}, which cannot be exchanged`);
    const data = t.data;
    const file = `out_${run.id}_wasm_${i}.bin`;
    await writeFile(join(req.work_dir, file), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    written.push({ name, dtype, shape: Array.from(t.dims), file });
  }
  for (const t of Object.values(first)) t.dispose();
  return { outputs: written, ms };
}

function failure(e) {
  return { ok: false, error: String((e && e.stack) || e) };
}

async function runModel(ort, spec, req, report) {
  // A model that fails to load fails each of its runs.
  let session;
  try {
    session = await ort.InferenceSession.create(await readFile(spec.model_path), { executionProviders: ['wasm'] });
  } catch (e) {
    for (const run of spec.runs) await report(run, failure(e));
    return;
  }
  try {
    for (const run of spec.runs) {
      try {
        await report(run, { ok: true, ...(await runOnce(ort, session, req, spec, run)) });
      } catch (e) {
        await report(run, failure(e));
      }
    }
  } finally {
    await session.release();
  }
}

async function main() {
  // Typed arrays use the host's byte order; the exchange files are little-endian.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('big-endian host: not supported');
  const req = JSON.parse(await readFile(process.argv[2], 'utf8'));
  const require = createRequire(join(req.js_dir, 'package.json'));
  const ort = require('onnxruntime-web');
  ort.env.wasm.numThreads = req.threads || 1;
  ort.env.logLevel = 'error';
  const resultPath = join(req.work_dir, 'result.jsonl');
  await writeFile(resultPath, JSON.stringify({ versions: { ...ort.env.versions, node: process.version } }) + '\n');
  const report = (run, result) =>
    appendFile(resultPath, JSON.stringify({ id: run.id, backend: 'wasm', ...result }) + '\n');
  for (const spec of req.models) await runModel(ort, spec, req, report);
}

main().catch((e) => {
  process.stderr.write(`bridge onnxruntime-web runner failed: ${(e && e.stack) || e}\n`);
  process.exit(2);
});
