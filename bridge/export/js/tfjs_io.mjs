// The one copy of how bridge loads, feeds and times a tfjs graph model. run.mjs (Node) imports it;
// browser.mjs serves it to its page, which imports it as an ES module. It uses only the `tf` it is
// given and the byte readers it is handed, so the same code runs in both places.
//
// - The model.json `signature` is dropped before loading: its keys are the converter's guesses (it
//   falls back to, or swaps, names when shapes coincide), and tfjs would remap our names through it.
//   We feed and fetch by graph node name only, through the maps bridge wrote into
//   userDefinedMetadata.
// - execute() is synchronous and quiet; graphs with control flow or dynamic shapes refuse it and
//   need executeAsync().
// - Each timed execution covers execute() and reading every output back (data()), as a page would;
//   the first of a model on a backend includes kernel set-up (wasm compiles, webgl shaders).

export const TYPED = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };
const GC_EVERY_BYTES = 64 * 2 ** 20;
const READ_AHEAD = 4; // weight shards in flight at once (4 MB each)

// An IOHandler: readJSON() gives model.json, readBytes(path) one shard's ArrayBuffer. The shards are
// handed to tfjs as a stream (getWeightStream), so the model loads one shard at a time and no
// whole-model buffer exists beside the weights themselves (a 1.4 GB model would otherwise hold ~3x).
export function graphModelHandler(tf, readJSON, readBytes) {
  return {
    load: async () => {
      const modelJSON = await readJSON();
      delete modelJSON.signature;
      const specs = [];
      const paths = [];
      for (const group of modelJSON.weightsManifest) {
        paths.push(...group.paths);
        specs.push(...group.weights);
      }
      const artifacts = await tf.io.getModelArtifactsForJSON(modelJSON, async () => [specs, new ArrayBuffer(0)]);
      delete artifacts.weightData;
      artifacts.getWeightStream = () => {
        // shards are read READ_AHEAD at a time (in order), not one after the other: in chromium each is an
        // HTTP request, and 25 of them in a row took seconds of a ResNet-50's load
        let i = 0;
        let sinceGc = 0;
        const pending = [];
        const fill = () => {
          while (pending.length < READ_AHEAD && i < paths.length) {
            const read = readBytes(paths[i++]);
            read.catch(() => {}); // a failure surfaces when its turn is awaited, not as an unhandled rejection
            pending.push(read);
          }
        };
        return new ReadableStream({
          async pull(controller) {
            fill();
            if (!pending.length) {
              controller.close();
              return;
            }
            const bytes = new Uint8Array(await pending.shift());
            fill();
            // tfjs copies each weight out of these chunks (into the wasm heap, say); the chunks are garbage
            // at once, but V8 collects them lazily. Where gc is exposed (run.mjs runs node --expose-gc),
            // collect every GC_EVERY_BYTES so they do not pile up to a second copy of the model.
            sinceGc += bytes.byteLength;
            if (sinceGc >= GC_EVERY_BYTES && typeof globalThis.gc === 'function') {
              globalThis.gc();
              sinceGc = 0;
            }
            controller.enqueue(bytes);
          },
        });
      };
      return artifacts;
    },
  };
}

// {node: tf.Tensor} from [{node, dtype, shape, ...}] and readBytes(spec) -> ArrayBuffer.
export async function makeFeeds(tf, inputs, readBytes) {
  const feeds = {};
  for (const inp of inputs) {
    const Typed = TYPED[inp.dtype];
    if (!Typed) throw new Error(`unsupported input dtype ${inp.dtype} for ${inp.node}`);
    feeds[inp.node] = tf.tensor(new Typed(await readBytes(inp)), inp.shape, inp.dtype);
  }
  return feeds;
}

export async function execute(model, feeds, nodes) {
  let got;
  try {
    got = model.execute(feeds, nodes);
  } catch (e) {
    if (!String(e && e.message).includes('executeAsync')) throw e;
    got = await model.executeAsync(feeds, nodes);
  }
  return Array.isArray(got) ? got : [got];
}

// Runs the model `repeat` (>= 1) times on feeds, the warm runs only while they have taken less than
// `budgetMs` together (a big model on a software GPU would spend minutes on latency alone);
// returns {out: the first run's tensors, ms: [per run]}.
export async function timedRuns(tf, model, feeds, nodes, repeat, budgetMs = Infinity) {
  let t0 = performance.now();
  const out = await execute(model, feeds, nodes);
  await Promise.all(out.map((t) => t.data()));
  const ms = [performance.now() - t0];
  for (let k = 1; k < (repeat || 1) && ms.slice(1).reduce((a, b) => a + b, 0) < budgetMs; k++) {
    t0 = performance.now();
    const extra = await execute(model, feeds, nodes);
    await Promise.all(extra.map((t) => t.data()));
    ms.push(performance.now() - t0);
    tf.dispose(extra);
  }
  return { out, ms };
}

// The bytes of one output tensor in its own dtype (tfjs-cpu may hand back a cast output's old
// buffer, an Int32Array for a float32 tensor), as a Uint8Array view to write or POST.
export async function outputBytes(t, name) {
  const Typed = TYPED[t.dtype];
  if (!Typed) throw new Error(`output ${name} has dtype ${t.dtype}, which cannot be exchanged`);
  const raw = await t.data();
  const data = raw instanceof Typed ? raw : Typed.from(raw);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
