// Runs a tfjs graph model in Node on pure-JS backends (cpu, wasm) for bridge's
// parity checks.
//
// Why it looks like this:
// - `loadGraphModel('file://...')` does not work without tfjs-node (and
//   tfjs-node cannot be installed here), so a small IOHandler reads model.json
//   and its weight shards from disk, in manifest order.
// - The model.json `signature` is dropped before loading. Its keys are the
//   converter's guesses (it falls back to, or swaps, names when shapes
//   coincide), and tfjs would remap our names through it. We feed and fetch by
//   graph node name only, using the map bridge wrote into userDefinedMetadata.
// - tfjs is loaded through `require` from the package directory given in the
//   request, so one copy of tfjs-core serves both backends.
// - One process serves a whole batch: tfjs and the wasm binary load once, and
//   each model loads once per backend and runs every input set given for it.
//   Results are appended line by line, so a crash keeps what was done.
//
// Usage: node run.mjs REQUEST.json
// REQUEST: {"js_dir", "work_dir", "backends": [..],
//           "models": [{"model_dir", "outputs": [{"name", "node"}],
//                       "runs": [{"id", "inputs": [{"node", "dtype", "shape", "file"}]}]}]}
// Input and output files are raw little-endian arrays (float32, int32, bool as
// uint8) relative to work_dir. int64 never crosses: tfjs loads an int64
// placeholder as int32, and bridge.export.tfjs range-checks and sends int32.
// The runner appends one JSON line per (run, backend) to work_dir/result.jsonl:
//   {"id", "backend", "ok": true, "outputs": [{"name", "dtype", "shape", "file"}], "ms": [per execution]}
// A run may ask for "repeat": N executions (latency benchmarks); outputs are from the first.
//   {"id", "backend", "ok": false, "error": "..."}
// Exit code 0 means every line was written (a backend may still have failed).

import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

let tf; // loaded in main() from the request's package directory
const TYPED = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };

function exactArrayBuffer(buf) {
  // A Node Buffer may be a view into a larger pool; copy out exactly its bytes.
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function diskHandler(modelDir) {
  return {
    load: async () => {
      const modelJSON = JSON.parse(await readFile(join(modelDir, 'model.json'), 'utf8'));
      delete modelJSON.signature; // see the header: names go by node only
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          for (const path of group.paths) {
            buffers.push(exactArrayBuffer(await readFile(join(modelDir, path))));
          }
          specs.push(...group.weights);
        }
        return [specs, buffers];
      });
    },
  };
}

async function readInputs(workDir, inputs) {
  const feeds = {};
  for (const inp of inputs) {
    const Typed = TYPED[inp.dtype];
    if (!Typed) throw new Error(`unsupported input dtype ${inp.dtype} for ${inp.node}`);
    const data = new Typed(exactArrayBuffer(await readFile(join(workDir, inp.file))));
    feeds[inp.node] = tf.tensor(data, inp.shape, inp.dtype);
  }
  return feeds;
}

async function execute(model, feeds, outputNodes) {
  // execute() is synchronous and quiet; graphs with control flow or dynamic
  // shapes refuse it and need executeAsync().
  try {
    return model.execute(feeds, outputNodes);
  } catch (e) {
    if (!String(e && e.message).includes('executeAsync')) throw e;
    return model.executeAsync(feeds, outputNodes);
  }
}

async function timedRuns(model, feeds, nodes, repeat, ms) {
  // The first run includes kernel set-up (wasm compiles, webgl shaders); later runs are warm.
  // Each time covers execute() and reading every output back (data()), as a page would.
  for (let k = 1; k < repeat; k++) {
    const t0 = performance.now();
    let extra = await execute(model, feeds, nodes);
    extra = Array.isArray(extra) ? extra : [extra];
    await Promise.all(extra.map((t) => t.data()));
    ms.push(performance.now() - t0);
    tf.dispose(extra);
  }
}

async function runOnce(model, req, spec, run, backend, ms) {
  const feeds = await readInputs(req.work_dir, run.inputs);
  let out = [];
  try {
    const nodes = spec.outputs.map((o) => o.node);
    const t0 = performance.now();
    out = await execute(model, feeds, nodes);
    if (!Array.isArray(out)) out = [out];
    await Promise.all(out.map((t) => t.data()));
    ms.push(performance.now() - t0);
    await timedRuns(model, feeds, nodes, run.repeat || 1, ms);
    const written = [];
    for (const [i, t] of out.entries()) {
      const name = spec.outputs[i].name;
      if (!TYPED[t.dtype]) throw new Error(`output ${name} has dtype ${t.dtype}, which cannot be exchanged`);
      // tfjs-cpu may hand back a cast output's old buffer (an Int32Array for a float32 tensor):
      // convert it to the tensor's own dtype before writing its bytes
      const raw = await t.data();
      const data = raw instanceof TYPED[t.dtype] ? raw : TYPED[t.dtype].from(raw);
      const file = `out_${run.id}_${backend}_${i}.bin`;
      await writeFile(join(req.work_dir, file), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      written.push({ name, dtype: t.dtype, shape: t.shape, file });
    }
    return written;
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
    for (const run of spec.runs) {
      try {
        const ms = [];
        const outputs = await runOnce(model, req, spec, run, backend, ms);
        await report(run, backend, { ok: true, outputs, ms });
      } catch (e) {
        await report(run, backend, failure(e));
      }
    }
  } finally {
    model.dispose();
  }
}

async function main() {
  // Typed arrays use the host's byte order; the exchange files are little-endian.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('big-endian host: not supported');
  const req = JSON.parse(await readFile(process.argv[2], 'utf8'));
  const require = createRequire(join(req.js_dir, 'package.json'));
  tf = require('@tensorflow/tfjs');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');

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
