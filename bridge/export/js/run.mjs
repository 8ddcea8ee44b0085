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
//
// Usage: node run.mjs REQUEST.json
// REQUEST: {"js_dir", "model_dir", "work_dir", "backends": [..],
//           "inputs":  [{"node", "dtype", "shape", "file"}],
//           "outputs": [{"name", "node"}]}
// Input and output files are raw little-endian arrays (float32, int32, bool as
// uint8) relative to work_dir. The runner writes work_dir/result.json:
//   {"backends": {"cpu": {"ok": true, "outputs": [{"name", "dtype", "shape", "file"}]},
//                 "wasm": {"ok": false, "error": "..."}}}
// Exit code 0 means result.json was written (a backend may still have failed).

import { readFile, writeFile } from 'node:fs/promises';
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

async function readInputs(req) {
  const feeds = {};
  for (const inp of req.inputs) {
    const Typed = TYPED[inp.dtype];
    if (!Typed) throw new Error(`unsupported input dtype ${inp.dtype} for ${inp.node}`);
    const data = new Typed(exactArrayBuffer(await readFile(join(req.work_dir, inp.file))));
    feeds[inp.node] = { data, shape: inp.shape, dtype: inp.dtype };
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

async function runOn(backend, req, feedData) {
  if (!(await tf.setBackend(backend))) throw new Error(`backend '${backend}' failed to initialise`);
  await tf.ready();
  const model = await tf.loadGraphModel(diskHandler(req.model_dir));
  const feeds = {};
  for (const [node, f] of Object.entries(feedData)) feeds[node] = tf.tensor(f.data, f.shape, f.dtype);
  try {
    let out = await execute(model, feeds, req.outputs.map((o) => o.node));
    if (!Array.isArray(out)) out = [out];
    const written = [];
    for (const [i, t] of out.entries()) {
      const spec = req.outputs[i];
      const file = `out_${backend}_${i}.bin`;
      const data = await t.data();
      if (!TYPED[t.dtype]) throw new Error(`output ${spec.name} has dtype ${t.dtype}, which cannot be exchanged`);
      await writeFile(join(req.work_dir, file), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      written.push({ name: spec.name, dtype: t.dtype, shape: t.shape, file });
    }
    tf.dispose(out);
    return written;
  } finally {
    tf.dispose(Object.values(feeds));
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

  const feedData = await readInputs(req);
  const backends = {};
  for (const backend of req.backends) {
    try {
      backends[backend] = { ok: true, outputs: await runOn(backend, req, feedData) };
    } catch (e) {
      backends[backend] = { ok: false, error: String((e && e.stack) || e) };
    }
  }
  await writeFile(join(req.work_dir, 'result.json'), JSON.stringify({ backends }, null, 1));
}

main().catch((e) => {
  process.stderr.write(`bridge tfjs runner failed: ${(e && e.stack) || e}\n`);
  process.exit(2);
});
