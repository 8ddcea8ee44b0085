// bridge serve's demo page: runs the exported tfjs model in this browser on every backend, checks it
// against torch's stored outputs, times it, and (for image models with declared pre/post-processing)
// classifies a drawing or a picture.
//
// Why it looks like this:
// - Everything comes from the bridge serve server: config.json (backends, warm runs, the ONNX seam),
//   model/ (model.json + shards), samples/ (parity inputs and torch outputs as raw little-endian
//   arrays, described by samples.json) and tfjs/ (the tfjs bundles from node_modules).
// - As in run.mjs and browser.mjs, the model.json `signature` is dropped before loading and the model
//   is fed and fetched by graph node name, through the maps bridge wrote into userDefinedMetadata.
// - The model is downloaded once (its bytes are the "download" column) and loaded from memory on each
//   backend in turn; a backend that fails is reported and the next one still runs.
// - Results go into the table (stable ids and data-field attributes) and into window.bridgeResults,
//   which a test reads once bridgeResults.done is true.
// - Query parameters: ?runs=N (warm runs per backend), ?backends=webgl,wasm (a subset).
'use strict';

const TYPED = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };
const ORDER = ['webgl', 'wasm', 'cpu', 'webgpu'];
const results = { done: false, error: null, name: null, backends: {}, order: [], bytes: null, prediction: null,
  predictions: 0 };
window.bridgeResults = results;
const $ = (id) => document.getElementById(id);

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return r;
}

function message(e) {
  return String((e && e.message) || e).split('\n')[0];
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined) return '–';
  if (typeof x !== 'number') return String(x);
  if (x === 0) return '0';
  return Math.abs(x) >= 1e-2 && Math.abs(x) < 1e5 ? String(Number(x.toPrecision(digits))) : x.toExponential(digits - 1);
}

// ---------------------------------------------------------------- loading

async function loadModelFiles() {
  const jsonBuf = await (await fetchOk('model/model.json')).arrayBuffer();
  const modelJSON = JSON.parse(new TextDecoder().decode(jsonBuf));
  const meta = (modelJSON.userDefinedMetadata || {}).bridge;
  if (!meta) throw new Error('model.json has no userDefinedMetadata.bridge');
  let shardBytes = 0;
  const buffers = [];
  for (const group of modelJSON.weightsManifest) {
    for (const path of group.paths) {
      const buf = await (await fetchOk(`model/${path.split('/').pop()}`)).arrayBuffer();
      shardBytes += buf.byteLength;
      buffers.push(buf);
    }
  }
  delete modelJSON.signature; // names go by node only (see the header)
  const graphNodes = new Set((modelJSON.modelTopology.node || []).map((n) => n.name));
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
    const specs = [];
    for (const group of manifest) specs.push(...group.weights);
    return [specs, buffers];
  });
  const bytes = { model_json: jsonBuf.byteLength, shards: shardBytes, total: jsonBuf.byteLength + shardBytes };
  return { meta, artifacts, graphNodes, bytes };
}

async function loadSamples() {
  const info = await (await fetchOk('samples/samples.json')).json();
  const read = async (spec) => {
    const buf = await (await fetchOk(`samples/${spec.file}`)).arrayBuffer();
    return { ...spec, data: new TYPED[spec.dtype](buf) };
  };
  const sets = [];
  for (const s of info.sets) {
    sets.push({ inputs: await Promise.all(s.inputs.map(read)), outputs: await Promise.all(s.outputs.map(read)) });
  }
  return { rtol: info.rtol, sets };
}

// ---------------------------------------------------------------- comparing

function compare(got, gotShape, ref, rtol) {
  // max |got - torch| over finite values; NaN/Inf positions must agree, as in bridge/parity.py
  let maxAbs = 0;
  let refMax = 0;
  let problem = null;
  if (gotShape.join('x') !== ref.shape.join('x')) problem = `shape [${gotShape}], torch [${ref.shape}]`;
  else {
    for (let i = 0; i < ref.data.length; i++) {
      const r = Number(ref.data[i]);
      const g = Number(got[i]);
      if (!Number.isFinite(r) || !Number.isFinite(g)) {
        if (!(Object.is(r, g) || (Number.isNaN(r) && Number.isNaN(g)))) problem = `non-finite value differs at ${i}`;
        continue;
      }
      maxAbs = Math.max(maxAbs, Math.abs(g - r));
      refMax = Math.max(refMax, Math.abs(r));
    }
  }
  const bound = rtol * Math.max(1, refMax);
  return { name: ref.name, max_abs_error: problem ? Infinity : maxAbs, max_rel_error: problem ? Infinity
    : (refMax > 0 ? maxAbs / refMax : maxAbs), max_abs_torch: refMax, bound, ok: !problem && maxAbs <= bound, problem };
}

// ---------------------------------------------------------------- one tfjs backend

async function execute(model, feeds, nodes) {
  let out;
  try {
    out = model.execute(feeds, nodes); // synchronous; control flow needs executeAsync
  } catch (e) {
    if (!String(e && e.message).includes('executeAsync')) throw e;
    out = await model.executeAsync(feeds, nodes);
  }
  return Array.isArray(out) ? out : [out];
}

async function timed(model, feeds, nodes) {
  const t0 = performance.now();
  const out = await execute(model, feeds, nodes);
  const data = await Promise.all(out.map((t) => t.data()));
  return { ms: performance.now() - t0, out, data };
}

async function backendInfo(backend) {
  const info = { tfjs_version: tf.version.tfjs };
  if (backend === 'webgl') {
    info.float32_textures = tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED');
    info.webgl_version = tf.env().getNumber('WEBGL_VERSION');
    const gl = tf.backend().gpgpu.gl;
    const ext = gl.getExtension('WEBGL_debug_renderer_info');
    info.renderer = ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  } else if (backend === 'wasm') {
    info.simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    info.threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
    info.thread_count = tf.wasm.getThreadsCount();
  } else if (backend === 'webgpu') {
    const adapter = tf.backend().adapterInfo || {};
    info.adapter = { vendor: adapter.vendor, architecture: adapter.architecture };
  }
  return info;
}

async function loadScript(src) {
  await new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.appendChild(s);
  });
}

async function prepareBackend(backend) {
  if (backend === 'webgpu') {
    if (!navigator.gpu) throw Object.assign(new Error('navigator.gpu is not available in this browser'), { skip: true });
    if (!tf.findBackendFactory('webgpu')) await loadScript('tfjs/tf-backend-webgpu.min.js');
  }
  if (!(await tf.setBackend(backend))) throw new Error(`backend '${backend}' failed to initialise`);
  await tf.ready();
  if (tf.getBackend() !== backend) throw new Error(`asked for '${backend}', tfjs runs '${tf.getBackend()}'`);
}

async function runBackend(backend, files, samples, warmRuns) {
  const row = { runtime: 'tfjs', backend, status: 'running', bytes: files.bytes.total, warm_runs: warmRuns };
  results.backends[backend] = row;
  results.order.push(backend);
  render(row);
  let model;
  try {
    await prepareBackend(backend);
    row.info = await backendInfo(backend);
    let t0 = performance.now();
    model = await tf.loadGraphModel({ load: async () => files.artifacts });
    row.load_ms = performance.now() - t0;
    const outputs = [];
    const warm = [];
    for (const [k, set] of samples.sets.entries()) {
      const feeds = {};
      for (const inp of set.inputs) {
        const node = files.meta.input_nodes[inp.name];
        if (!files.graphNodes.has(node)) continue; // unused by every output: the converter pruned it
        feeds[node] = tf.tensor(inp.data, inp.shape, inp.dtype);
      }
      const nodes = set.outputs.map((o) => files.meta.output_nodes[o.name]);
      try {
        const first = await timed(model, feeds, nodes);
        set.outputs.forEach((ref, i) => outputs.push({ set: k, ...compare(first.data[i], first.out[i].shape, ref, samples.rtol) }));
        tf.dispose(first.out);
        if (k === 0) {
          row.first_ms = first.ms;
          for (let r = 0; r < warmRuns; r++) {
            const again = await timed(model, feeds, nodes);
            warm.push(again.ms);
            tf.dispose(again.out);
          }
        }
      } finally {
        tf.dispose(Object.values(feeds));
      }
    }
    summarize(row, outputs, warm);
  } catch (e) {
    row.status = e.skip ? 'skipped' : 'error';
    row.error = message(e);
  } finally {
    if (model) model.dispose();
  }
  render(row);
  return row;
}

function summarize(row, outputs, warm) {
  row.outputs = outputs;
  row.max_abs_error = Math.max(...outputs.map((o) => o.max_abs_error));
  row.max_rel_error = Math.max(...outputs.map((o) => o.max_rel_error));
  row.max_abs_torch = Math.max(...outputs.map((o) => o.max_abs_torch));
  row.bound = Math.min(...outputs.map((o) => o.bound));
  row.warm_ms = median(warm);
  row.warm_ms_all = warm;
  row.ok = outputs.every((o) => o.ok);
  row.status = row.ok ? 'ok' : 'failing';
  const bad = outputs.find((o) => o.problem);
  if (bad) row.error = `${bad.name}: ${bad.problem}`;
}

// ---------------------------------------------------------------- onnxruntime-web (bridge convert --onnx)

async function runOnnx(onnx, samples, warmRuns) {
  // The seam for the ONNX route: config.onnx is set by bridge serve when the export has model.onnx and
  // onnxruntime-web is installed. Same samples, same comparison; fed by input name, else by position.
  const row = { runtime: 'onnxruntime-web', backend: 'wasm', status: 'running', warm_runs: warmRuns };
  results.backends['ort-wasm'] = row;
  results.order.push('ort-wasm');
  render(row);
  try {
    if (!window.ort) await loadScript(onnx.script);
    ort.env.wasm.wasmPaths = new URL(onnx.wasm_prefix, location.href).href;
    const buf = await (await fetchOk(onnx.model)).arrayBuffer();
    row.bytes = buf.byteLength;
    let t0 = performance.now();
    const session = await ort.InferenceSession.create(buf, { executionProviders: ['wasm'] });
    row.load_ms = performance.now() - t0;
    row.info = { ort_version: ort.env.versions && ort.env.versions.web, inputs: session.inputNames, outputs: session.outputNames };
    const outputs = [];
    const warm = [];
    for (const [k, set] of samples.sets.entries()) {
      const feeds = {};
      set.inputs.forEach((inp, i) => {
        const name = session.inputNames.includes(inp.name) ? inp.name : session.inputNames[i];
        // model.onnx keeps torch's dtypes (int64 ids); the samples hold tfjs's (int32)
        const declared = (session.inputMetadata || []).find((m) => m.name === name);
        const type = (declared && declared.type) || inp.dtype;
        const data = type === 'int64' ? BigInt64Array.from(inp.data, (v) => BigInt(v))
          : type === 'float64' ? Float64Array.from(inp.data) : inp.dtype === 'bool' ? Uint8Array.from(inp.data) : inp.data;
        feeds[name] = new ort.Tensor(type, data, inp.shape);
      });
      const run = async () => {
        const t = performance.now();
        const out = await session.run(feeds);
        return { ms: performance.now() - t, out };
      };
      const first = await run();
      set.outputs.forEach((ref, i) => {
        const name = session.outputNames.includes(ref.name) ? ref.name : session.outputNames[i];
        const got = first.out[name];
        outputs.push({ set: k, ...compare(got.data, got.dims.map(Number), ref, samples.rtol) });
      });
      if (k === 0) {
        row.first_ms = first.ms;
        for (let r = 0; r < warmRuns; r++) warm.push((await run()).ms);
      }
    }
    summarize(row, outputs, warm);
  } catch (e) {
    row.status = 'error';
    row.error = message(e);
  }
  render(row);
}

// ---------------------------------------------------------------- the table

function render(row) {
  const id = `row-${row.runtime === 'tfjs' ? row.backend : 'ort-' + row.backend}`;
  let tr = $(id);
  if (!tr) {
    tr = document.createElement('tr');
    tr.id = id;
    $('results-body').appendChild(tr);
  }
  tr.dataset.runtime = row.runtime;
  tr.dataset.backend = row.backend;
  tr.dataset.status = row.status;
  const cells = [
    ['runtime', row.runtime], ['backend', row.backend], ['max_abs_error', fmt(row.max_abs_error)],
    ['max_rel_error', fmt(row.max_rel_error)], ['bound', fmt(row.bound)], ['first_ms', fmt(row.first_ms)],
    ['warm_ms', fmt(row.warm_ms)], ['load_ms', fmt(row.load_ms)],
    ['bytes', row.bytes === undefined ? '–' : row.bytes.toLocaleString('en-US')],
    ['status', row.error ? `${row.status}: ${row.error}` : row.status],
  ];
  tr.replaceChildren(...cells.map(([field, text]) => {
    const td = document.createElement('td');
    td.dataset.field = field;
    td.textContent = text;
    const raw = row[field];
    if (typeof raw === 'number') td.dataset.value = String(raw);
    return td;
  }));
  $('details').textContent = JSON.stringify(Object.fromEntries(Object.entries(results.backends).map(
    ([k, r]) => [k, { info: r.info, error: r.error, outputs: r.outputs }])), null, 1);
}

// ---------------------------------------------------------------- the image demo

function imageGeometry(meta, pre) {
  // image_size: the exported size, or the traced one where a dim is free (bridge/preprocess.py)
  const [h, w] = pre.image_size;
  return { h, w, channels: pre.channels, layout: pre.image_layout };
}

function setupDemo(files) {
  const pre = files.meta.preprocess;
  const post = files.meta.postprocess;
  if (!pre || !pre.image_layout || !post) return; // nothing declared: no guessing about pixels
  const geo = imageGeometry(files.meta, pre);
  const canvas = $('draw');
  const k = Math.max(1, Math.ceil(256 / Math.max(geo.h, geo.w)));
  canvas.width = geo.w * k; // a multiple of the input size: downsampling is an exact block mean
  canvas.height = geo.h * k;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const clear = () => { ctx.fillStyle = '#000'; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  $('demo').hidden = false;
  const grey = geo.channels === 1 ? 'grey' : 'RGB';
  $('demo-help').textContent = `Draw (white on black) or load a picture. It is reduced to the model's ${geo.h}x${geo.w} ` +
    `${grey} input by block averaging, then x = (pixel × ${scaleText(pre.scale)} − mean) / std with mean ` +
    `[${pre.mean.map((m) => fmt(m))}] and std [${pre.std.map((v) => fmt(v))}], in ${geo.layout}; ` +
    `output '${post.output}' through ${post.activation}.`;
  const select = $('predict-backend');
  for (const b of results.order) {
    const r = results.backends[b];
    if (r.runtime !== 'tfjs' || r.status !== 'ok') continue;
    const opt = document.createElement('option');
    opt.value = opt.textContent = b;
    select.appendChild(opt);
  }
  const pick = ['wasm', 'webgl', 'cpu', 'webgpu'].find((b) => [...select.options].some((o) => o.value === b));
  if (!pick) {
    $('prediction').textContent = 'no backend passed';
    return;
  }
  select.value = pick;
  let drawing = false;
  let last = null;
  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener('pointerdown', (ev) => { drawing = true; last = at(ev); canvas.setPointerCapture(ev.pointerId); });
  canvas.addEventListener('pointermove', (ev) => {
    if (!drawing) return;
    const p = at(ev);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = canvas.width / 9;
    ctx.lineCap = ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
  });
  const end = () => { if (drawing) { drawing = false; predict(); } };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  $('clear').addEventListener('click', () => { clear(); predict(); });
  $('invert').addEventListener('change', () => predict());
  select.addEventListener('change', () => predict());
  $('picture').addEventListener('change', async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    const bitmap = await createImageBitmap(file);
    clear();
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const dw = bitmap.width * scale;
    const dh = bitmap.height * scale;
    ctx.drawImage(bitmap, (canvas.width - dw) / 2, (canvas.height - dh) / 2, dw, dh);
    predict();
  });
  let models = {};
  async function modelOn(backend) {
    if (tf.getBackend() !== backend) await prepareBackend(backend);
    if (!models[backend]) models[backend] = await tf.loadGraphModel({ load: async () => files.artifacts });
    return models[backend];
  }
  let queue = Promise.resolve(); // one prediction at a time: each may switch the tfjs backend
  const predict = () => (queue = queue.then(predictNow).catch((e) => {
    results.demo_error = message(e);
    $('prediction').textContent = `error: ${results.demo_error}`;
  }));
  async function predictNow() {
    const backend = select.value;
    const model = await modelOn(backend);
    const x = tf.tidy(() => toInput(tf.browser.fromPixels(canvas, 3), geo, pre, $('invert').checked, k));
    const node = files.meta.input_nodes[pre.input];
    const outNode = files.meta.output_nodes[post.output];
    const extra = {};
    for (const inp of files.meta.inputs) { // other inputs (rare for image models): zeros of their shape
      const n = files.meta.input_nodes[inp.name];
      if (inp.name !== pre.input && files.graphNodes.has(n)) extra[n] = tf.zeros(inp.shape.map((d) => d || 1), inp.dtype);
    }
    try {
      const [out] = await execute(model, { [node]: x, ...extra }, [outNode]);
      const logits = Array.from(await out.data());
      tf.dispose(out);
      await showSeen(x, geo);
      show(logits, post, backend, Array.from(await x.data()));
    } finally {
      tf.dispose([x, ...Object.values(extra)]);
    }
  }
  window.bridgeDemo = {
    // Put an image given as grey levels 0..255 (h x w, row-major) on the canvas, block-upscaled, then predict.
    async drawGrey(pixels, h, w) {
      const img = ctx.createImageData(canvas.width, canvas.height);
      for (let y = 0; y < canvas.height; y++) {
        for (let x = 0; x < canvas.width; x++) {
          const v = pixels[Math.floor(y * h / canvas.height) * w + Math.floor(x * w / canvas.width)];
          img.data.set([v, v, v, 255], (y * canvas.width + x) * 4);
        }
      }
      ctx.putImageData(img, 0, 0);
      await predict();
      return results.prediction;
    },
    predict: async () => { await predict(); return results.prediction; },
    clear,
  };
}

function scaleText(scale) {
  const inv = 1 / scale;
  return Math.abs(inv - Math.round(inv)) < 1e-6 * inv && inv > 1 ? `1/${Math.round(inv)}` : fmt(scale, 4);
}

function toInput(pixels, geo, pre, invert, k) {
  // pixels: [H*k, W*k, 3] uint8 from the canvas -> the model's input, in its layout (inside tf.tidy)
  let img = pixels.toFloat();
  if (geo.channels === 1) img = img.mean(2, true);
  if (invert) img = tf.sub(255, img);
  let x = tf.avgPool(img.expandDims(0), k, k, 'valid'); // [1, H, W, C]: the mean of each k x k block
  const c = geo.channels;
  const vec = (v) => tf.tensor1d(v.length === 1 ? Array(c).fill(v[0]) : v);
  x = x.mul(pre.scale).sub(vec(pre.mean)).div(vec(pre.std));
  if (geo.layout === 'NCHW') x = x.transpose([0, 3, 1, 2]);
  else if (geo.layout === 'NHW') x = x.squeeze([3]);
  return x;
}

async function showSeen(x, geo) {
  // The model's input, back in 0..1 per image for display
  const hwc = tf.tidy(() => {
    let t = x.squeeze([0]);
    if (geo.layout === 'NCHW') t = t.transpose([1, 2, 0]);
    else if (geo.layout === 'NHW') t = t.expandDims(2);
    const lo = t.min();
    const hi = t.max();
    return t.sub(lo).div(tf.maximum(hi.sub(lo), 1e-6));
  });
  await tf.browser.toPixels(hwc.shape[2] === 1 ? tf.tidy(() => hwc.tile([1, 1, 3])) : hwc, $('seen'));
  hwc.dispose();
}

function activate(logits, activation) {
  if (activation === 'softmax') {
    const m = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  }
  if (activation === 'sigmoid') return logits.map((v) => 1 / (1 + Math.exp(-v)));
  return logits;
}

function show(logits, post, backend, input) {
  const scores = activate(logits, post.activation);
  const ranked = scores.map((s, i) => ({ index: i, label: post.labels ? post.labels[i] : String(i), score: s }))
    .sort((a, b) => b.score - a.score);
  const top = ranked.slice(0, 5);
  results.prediction = { backend, index: top[0].index, label: top[0].label, scores, logits, input, top };
  results.predictions += 1; // a counter, so scripts can wait for the next prediction
  $('prediction').textContent = top[0].label;
  $('prediction').dataset.label = top[0].label;
  const max = Math.max(...top.map((t) => Math.abs(t.score)), 1e-12);
  $('scores').replaceChildren(...top.map((t) => {
    const li = document.createElement('li');
    li.textContent = `${t.label}: ${fmt(t.score)}`;
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${Math.round(80 * Math.abs(t.score) / max)}px`;
    li.appendChild(bar);
    return li;
  }));
}

// ---------------------------------------------------------------- main

async function main() {
  const params = new URLSearchParams(location.search);
  const config = await (await fetchOk('config.json')).json();
  const warmRuns = Math.max(0, parseInt(params.get('runs') || config.warm_runs, 10));
  const wanted = params.get('backends') ? params.get('backends').split(',') : null;
  results.name = config.name;
  $('model-name').textContent = config.name;
  $('warm-runs').textContent = warmRuns;
  tf.wasm.setWasmPaths(new URL('tfjs/', location.href).href); // before the wasm backend starts
  const files = await loadModelFiles();
  const samples = await loadSamples();
  results.bytes = files.bytes;
  results.rtol = samples.rtol;
  results.sets = samples.sets.length;
  results.meta = { inputs: files.meta.inputs, outputs: files.meta.outputs, preprocess: files.meta.preprocess || null,
    postprocess: files.meta.postprocess || null, source: files.meta.source };
  $('bound-text').textContent = `${samples.rtol} × max(1, max|torch|)`;
  $('model-summary').textContent = `${files.meta.source}: inputs ${files.meta.inputs.map((i) => `${i.name} [${i.shape.map((d) => d ?? 'N')}] ${i.layout}`).join(', ')}; ` +
    `outputs ${files.meta.outputs.map((o) => `${o.name} [${o.shape.map((d) => d ?? 'N')}]`).join(', ')}; ` +
    `${samples.sets.length} parity input set(s); download ${files.bytes.total.toLocaleString('en-US')} bytes ` +
    `(model.json ${files.bytes.model_json.toLocaleString('en-US')} + shards ${files.bytes.shards.toLocaleString('en-US')})`;
  const backends = ORDER.filter((b) => config.backends.includes(b) && (!wanted || wanted.includes(b)));
  for (const b of backends) await runBackend(b, files, samples, warmRuns);
  if (config.onnx && (!wanted || wanted.includes('onnx'))) await runOnnx(config.onnx, samples, warmRuns);
  try {
    setupDemo(files); // predicts once something is drawn or loaded
  } catch (e) {
    results.demo_error = message(e);
  }
  const rows = Object.values(results.backends);
  const failing = rows.filter((r) => r.status === 'failing' || r.status === 'error');
  $('status').textContent = failing.length ? `done: ${failing.length} runtime(s) failed` : `done: ${rows.filter((r) => r.status === 'ok').length} runtime(s) within the bound`;
  $('status').dataset.state = failing.length ? 'error' : 'done';
  results.done = true;
}

main().catch((e) => {
  results.error = message(e);
  results.done = true;
  $('status').textContent = `error: ${results.error}`;
  $('status').dataset.state = 'error';
});
