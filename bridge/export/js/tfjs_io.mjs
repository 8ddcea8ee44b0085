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

// An IOHandler: readJSON() gives model.json, readBytes(path) one shard's ArrayBuffer. The weights are
// handed to tfjs as a stream (getWeightStream, below), so the model loads a few shards at a time and
// no whole-model buffer exists beside the weights themselves (a 1.4 GB model would otherwise hold ~3x).
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
      artifacts.getWeightStream = () => weightStream(specs, paths, readBytes);
      return artifacts;
    },
  };
}

// Bytes per stored value, by dtype (a quantized weight is stored in its quantization dtype).
const STORED_BYTES = { float32: 4, int32: 4, bool: 1, complex64: 8, float16: 2, uint16: 2, uint8: 1 };

function weightBytes(spec) {
  const per = STORED_BYTES[spec.quantization ? spec.quantization.dtype : spec.dtype];
  if (per === undefined) return undefined; // string weights carry their own lengths
  return spec.shape.reduce((a, b) => a * b, 1) * per;
}

// The weight stream handed to tfjs: one chunk per weight, exactly that weight's bytes. tfjs 4.22's
// decodeWeightsStream re-slices whatever it has buffered after every weight, so handing it whole
// 4 MB shards costs a copy of the rest of the shard per weight (quadratic: ResNet-50's 25 shards took
// 4-8 s to load in chromium, 0.1 s as one chunk per weight). A weight inside one shard is a view of
// it; one that spans shards is copied once. Shards are read READ_AHEAD at a time, in order (in
// chromium each is an HTTP request, and 25 of them one after the other took seconds).
export function weightStream(specs, paths, readBytes) {
  const sizes = specs.map(weightBytes);
  const perWeight = sizes.every((n) => n !== undefined);
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
  const nextShard = async () => {
    fill();
    if (!pending.length) return null;
    const bytes = new Uint8Array(await pending.shift());
    fill();
    // tfjs copies each weight out of its chunk (into the wasm heap, say); the shards are garbage
    // then, but V8 collects them lazily. Where gc is exposed (run.mjs runs node --expose-gc),
    // collect every GC_EVERY_BYTES so they do not pile up to a second copy of the model.
    sinceGc += bytes.byteLength;
    if (sinceGc >= GC_EVERY_BYTES && typeof globalThis.gc === 'function') {
      globalThis.gc();
      sinceGc = 0;
    }
    return bytes;
  };
  let shard = new Uint8Array(0);
  let at = 0; // read position in shard
  let w = 0; // next weight
  return new ReadableStream({
    async pull(controller) {
      if (!perWeight) {
        const bytes = await nextShard();
        if (bytes) controller.enqueue(bytes);
        else controller.close();
        return;
      }
      while (w < sizes.length && sizes[w] === 0) w++; // nothing to read for an empty weight
      if (w === sizes.length) {
        controller.close();
        return;
      }
      const need = sizes[w];
      if (at === shard.byteLength) {
        const bytes = await nextShard();
        if (!bytes) throw new Error(`weight shards end before weight ${specs[w].name} (${need} bytes)`);
        shard = bytes;
        at = 0;
      }
      let chunk;
      if (shard.byteLength - at >= need) {
        chunk = shard.subarray(at, at + need);
        at += need;
      } else {
        chunk = new Uint8Array(need); // spans shards
        let got = 0;
        while (got < need) {
          if (at === shard.byteLength) {
            const bytes = await nextShard();
            if (!bytes) throw new Error(`weight shards end inside weight ${specs[w].name} (${got} of ${need} bytes)`);
            shard = bytes;
            at = 0;
          }
          const n = Math.min(need - got, shard.byteLength - at);
          chunk.set(shard.subarray(at, at + n), got);
          got += n;
          at += n;
        }
      }
      w++;
      controller.enqueue(chunk);
    },
  });
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
