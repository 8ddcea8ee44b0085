// Runs a tfjs graph model in Node on pure-JS backends (cpu, wasm) for bridge's
// parity checks.
//
// Why it looks like this:
// - `loadGraphModel('file://...')` does not work without tfjs-node (and
//   tfjs-node cannot be installed here), so a small IOHandler reads model.json
//   and its weight shards from disk, in manifest order.
// - Loading, feeding, executing and timing are tfjs_io.mjs's, shared with the
//   browser runner's page (the model.json `signature` is dropped there).
// - tfjs is loaded through `require` from the package directory given in the
//   request, so one copy of tfjs-core serves both backends.
// - One process serves a whole batch: tfjs and the wasm binary load once, and
//   each model loads once per backend and runs every input set given for it.
//   Results are appended line by line, so a crash keeps what was done.
//
// Usage: node run.mjs REQUEST.json
//    or: node run.mjs --wait JS_DIR BACKEND   (loads tfjs and BACKEND, then reads REQUEST.json's path on stdin)
// REQUEST: {"js_dir", "work_dir", "backends": [..],
//           "models": [{"model_dir", "outputs": [{"name", "node"}],
//                       "budget_ms": null or ms (see runModel),
//                       "runs": [{"id", "inputs": [{"node", "dtype", "shape", "file"}]}]}]}
// Input and output files are raw little-endian arrays (float32, int32, bool as
// uint8) relative to work_dir. int64 never crosses: tfjs loads an int64
// placeholder as int32, and bridge.export.tfjs range-checks and sends int32.
// The runner appends one JSON line per (run, backend) to work_dir/result.jsonl:
//   {"id", "backend", "ok": true, "outputs": [{"name", "dtype", "shape", "file"}], "ms": [per execution]}
// A run may ask for "repeat": N executions (latency benchmarks); outputs are from the first.
//   {"id", "backend", "ok": false, "error": "..."}
//   {"id", "backend", "ok": false, "over_budget": true, "error": "..."}  (not run: see budget_ms)
// Exit code 0 means every line was written (a backend may still have failed).

import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { graphModelHandler, makeFeeds, outputBytes, timedRuns } from './tfjs_io.mjs';

let tf; // loaded in main() from the request's package directory

function exactArrayBuffer(buf) {
  // A Node Buffer may be a view into a larger pool; copy out exactly its bytes.
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function diskHandler(modelDir) {
  return graphModelHandler(tf, async () => JSON.parse(await readFile(join(modelDir, 'model.json'), 'utf8')),
    async (path) => exactArrayBuffer(await readFile(join(modelDir, path))));
}

async function runOnce(model, req, spec, run, backend) {
  const feeds = await makeFeeds(tf, run.inputs, async (inp) => exactArrayBuffer(await readFile(join(req.work_dir, inp.file))));
  let out = [];
  try {
    const nodes = spec.outputs.map((o) => o.node);
    const timed = await timedRuns(tf, model, feeds, nodes, run.repeat || 1);
    out = timed.out;
    const written = [];
    for (const [i, t] of out.entries()) {
      const name = spec.outputs[i].name;
      const file = `out_${run.id}_${backend}_${i}.bin`;
      await writeFile(join(req.work_dir, file), await outputBytes(t, name));
      written.push({ name, dtype: t.dtype, shape: t.shape, file });
    }
    return { outputs: written, ms: timed.ms };
  } finally {
    tf.dispose(out);
    tf.dispose(Object.values(feeds));
  }
}

function failure(e) {
  return { ok: false, error: String((e && e.stack) || e) };
}

async function runModel(spec, req, backend, report) {
  // A model that fails to load (or a backend that fails to start) fails each of its runs.
  let model;
  try {
    if (!(await tf.setBackend(backend))) throw new Error(`backend '${backend}' failed to initialise`);
    await tf.ready();
    model = await tf.loadGraphModel(diskHandler(spec.model_dir));
  } catch (e) {
    for (const run of spec.runs) await report(run, backend, failure(e));
    return;
  }
  try {
    // With a budget, runs come cheapest first: the first always runs, twice (its second, warm execution
    // gives the rate; the first includes the backend's kernel set-up) unless its first execution alone
    // took half the budget: a later set costs at least that warm run again, so it could fit only where
    // the warm run is under half the cold one, and on tfjs-cpu (where warm is about cold: 2.5 s of 2.8
    // on a 56x56 ResNet-18) the warm run would only cost time. A later set runs only if the time spent
    // so far plus its predicted time (the last warm execution's time per input element) fits.
    // Time here is this process's CPU time: the backends run on one thread, and CPU time does not grow
    // when other processes (the other backend, the browser, the SavedModel check) share the cores.
    const budget = spec.budget_ms ?? null;
    const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    let spent = 0;
    let msPerElement = 0;
    for (const [k, run] of spec.runs.entries()) {
      const elements = run.inputs.reduce((n, inp) => n + inp.shape.reduce((a, b) => a * b, 1), 0);
      if (budget !== null && k > 0 && spent + msPerElement * elements > budget) {
        await report(run, backend, { ok: false, over_budget: true, error: `over the ${budget} ms budget` });
        continue;
      }
      const c0 = cpuMs();
      let warm = null;
      try {
        const result = await runOnce(model, req, spec, run, backend);
        if (budget !== null && k === 0 && cpuMs() - c0 < budget / 2) {  // once more, warm, for the rate (and latency)
          const c1 = cpuMs();
          result.ms.push(...(await runOnce(model, req, spec, { ...run, repeat: 1 }, backend)).ms);
          warm = cpuMs() - c1;
        }
        await report(run, backend, { ok: true, ...result });
      } catch (e) {
        await report(run, backend, failure(e));
      }
      const used = cpuMs() - c0;
      spent += used;
      msPerElement = (warm ?? used) / Math.max(elements, 1);
    }
  } finally {
    model.dispose();
  }
}

function loadTfjs(jsDir) {
  const require = createRequire(join(jsDir, 'package.json'));
  tf = require('@tensorflow/tfjs');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
}

async function firstLine(stream) {
  // The request path, or null when stdin closes without one (the export stopped first).
  let text = '';
  for await (const chunk of stream) {
    text += chunk;
    if (text.includes('\n')) break;
  }
  const line = text.split('\n')[0].trim();
  return line || null;
}

async function main() {
  // Typed arrays use the host's byte order; the exchange files are little-endian.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('big-endian host: not supported');
  let requestPath = process.argv[2];
  if (requestPath === '--wait') {
    // Started ahead (bridge.export.tfjs.NodeSession): load tfjs and start the backend now, while the
    // model is still being written; the request path follows on stdin.
    const [jsDir, backend] = process.argv.slice(3);
    loadTfjs(jsDir);
    try {
      if (await tf.setBackend(backend)) await tf.ready();
    } catch (e) {
      // runModel sets the backend again and reports the failure with the runs
    }
    process.stdin.setEncoding('utf8');
    requestPath = await firstLine(process.stdin);
    if (requestPath === null) return;
  }
  const req = JSON.parse(await readFile(requestPath, 'utf8'));
  if (!tf) loadTfjs(req.js_dir);

  const resultPath = join(req.work_dir, 'result.jsonl');
  const report = (run, backend, result) =>
    appendFile(resultPath, JSON.stringify({ id: run.id, backend, ...result }) + '\n');
  for (const spec of req.models) {
    for (const backend of req.backends) await runModel(spec, req, backend, report);
  }
}

main().catch((e) => {
  process.stderr.write(`bridge tfjs runner failed: ${(e && e.stack) || e}\n`);
  process.exit(2);
});
