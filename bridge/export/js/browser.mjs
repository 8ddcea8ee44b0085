// Runs a tfjs graph model in headless Chromium (webgl, wasm, cpu backends) for
// bridge's parity checks, so the exported model is verified where it ships.
//
// Why it looks like this:
// - The browser is Debian's chromium, driven by playwright-core; playwright
//   never downloads a browser here. playwright gives it a fresh temporary
//   profile and deletes it on close.
// - Pages are served over http://127.0.0.1 by a small server started here (on a
//   free loopback port): file:// cannot fetch the model or the .wasm files.
//   Every path sits under a random token, so another local process cannot guess
//   the URLs, and the page may only reach this server (other requests are
//   aborted).
// - The server sends COOP/COEP headers: with them the page is cross-origin
//   isolated and the wasm backend can use threads.
// - WebGL2 runs on SwiftShader (--use-angle=swiftshader), the same software GPU
//   on every machine. Whether it renders to float32 textures is read from
//   WEBGL_RENDER_FLOAT32_ENABLED (floatPrecision() is unreliable) and reported.
// - One page per backend, so a backend that breaks its page (a lost WebGL
//   context, a wasm abort) cannot affect the next one.
// - As in run.mjs, the model.json `signature` is dropped before loading and the
//   model is fed and fetched by graph node name only.
// - The page code lives in this file (runInPage is sent with page.evaluate and
//   the HTML is a string), so this one file is all the package has to ship.
//
// Usage: node browser.mjs REQUEST.json
// REQUEST: run.mjs's request plus {"chromium": path, "repeat": N (executions per backend, default 1),
//          "timeouts_s": {"launch", "backend", "total"}}
// Input and output files are raw little-endian arrays (float32, int32, bool as
// uint8) relative to work_dir. The runner writes work_dir/result.json:
//   {"browser": "156.0...", "backends": {"webgl": {"ok": true, "info": {..},
//     "outputs": [{"name", "dtype", "shape", "file"}], "ms": [per execution], "console": [..]},
//    "wasm": {"ok": false, "error": "...", "console": [..]}}}
// Exit code 0 means result.json was written (a backend may still have failed).

import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';

const LOOPBACK = '127.0.0.1';
const OUTPUT_FILE_RE = /^out_[a-z]+_\d+\.bin$/;
const MAX_CONSOLE_LINES = 200;
const CHROMIUM_ARGS = [
  '--no-sandbox', // runs as root in containers
  '--enable-unsafe-swiftshader', // WebGL on the software GPU (also a playwright default)
  '--use-angle=swiftshader', // always SwiftShader, so results do not depend on the host GPU
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.bin': 'application/octet-stream',
};

// ---------------------------------------------------------------- server

function pageHtml(base) {
  // setWasmPaths must run before the wasm backend initialises.
  return `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>bridge tfjs check</title>
<script src="${base}tfjs/tf.min.js"></script>
<script src="${base}tfjs/tf-backend-wasm.min.js"></script>
<script>tf.wasm.setWasmPaths(${JSON.stringify(base + 'tfjs/')});</script>
</head><body>bridge tfjs check</body></html>`;
}

// URL path (below the token) -> file on disk, for everything the page may GET.
function staticFiles(req, modelJSON) {
  const require = createRequire(join(req.js_dir, 'package.json'));
  const tfjsDist = dirname(require.resolve('@tensorflow/tfjs/dist/tf.min.js'));
  const wasmDist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js'));
  const files = new Map([['tfjs/tf.min.js', join(tfjsDist, 'tf.min.js')],
    ['tfjs/tf-backend-wasm.min.js', join(wasmDist, 'tf-backend-wasm.min.js')]]);
  for (const flavour of ['', '-simd', '-threaded-simd']) {
    const name = `tfjs-backend-wasm${flavour}.wasm`;
    files.set(`tfjs/${name}`, join(wasmDist, name));
  }
  files.set('model/model.json', join(req.model_dir, 'model.json'));
  for (const group of modelJSON.weightsManifest) {
    for (const path of group.paths) files.set(`model/${path}`, join(req.model_dir, basename(path)));
  }
  for (const inp of req.inputs) files.set(`exchange/${inp.file}`, join(req.work_dir, inp.file));
  return files;
}

function readBody(request, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    request.on('data', (c) => {
      size += c.length;
      if (size > limit) reject(new Error(`upload larger than ${limit} bytes`));
      else chunks.push(c);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

async function startServer(req, modelJSON) {
  const token = randomBytes(16).toString('hex');
  const base = `/${token}/`;
  const files = staticFiles(req, modelJSON);
  const html = pageHtml(base);
  const headers = (type) => ({
    'Content-Type': type,
    'Cache-Control': 'no-store',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
  });
  const server = createServer(async (request, response) => {
    try {
      const path = new URL(request.url, 'http://x').pathname;
      if (!path.startsWith(base)) throw Object.assign(new Error('not found'), { status: 404 });
      const rel = path.slice(base.length);
      if (request.method === 'GET' && rel === 'index.html') {
        response.writeHead(200, headers(TYPES['.html'])).end(html);
      } else if (request.method === 'GET' && files.has(rel)) {
        const file = files.get(rel);
        const ext = file.slice(file.lastIndexOf('.'));
        response.writeHead(200, { ...headers(TYPES[ext] || 'application/octet-stream'),
          'Content-Length': (await stat(file)).size });
        createReadStream(file).pipe(response);
      } else if (request.method === 'POST' && rel.startsWith('exchange/') && OUTPUT_FILE_RE.test(rel.slice(9))) {
        await writeFile(join(req.work_dir, rel.slice(9)), await readBody(request, 2 ** 31));
        response.writeHead(204, headers('text/plain')).end();
      } else {
        throw Object.assign(new Error('not found'), { status: 404 });
      }
    } catch (e) {
      if (!response.headersSent) response.writeHead(e.status || 500, headers('text/plain'));
      response.end(String(e.message));
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, resolve); // port 0: the OS picks a free port
  });
  const origin = `http://${LOOPBACK}:${server.address().port}`;
  return { server, origin, page: `${origin}${base}index.html`, base };
}

// ---------------------------------------------------------------- in the page

// Sent to the page with page.evaluate: it must not use anything from this module.
async function runInPage({ backend, base, inputs, outputs, repeat }) {
  const tf = window.tf;
  const TYPED = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };
  const get = async (path) => {
    const r = await fetch(base + path);
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status}`);
    return r;
  };
  if (!(await tf.setBackend(backend))) throw new Error(`backend '${backend}' failed to initialise`);
  await tf.ready();
  if (tf.getBackend() !== backend) throw new Error(`asked for backend '${backend}', tfjs runs '${tf.getBackend()}'`);
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
  }

  const model = await tf.loadGraphModel({
    load: async () => {
      const modelJSON = await (await get('model/model.json')).json();
      delete modelJSON.signature; // names go by node only (see run.mjs)
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          for (const path of group.paths) buffers.push(await (await get(`model/${path}`)).arrayBuffer());
          specs.push(...group.weights);
        }
        return [specs, buffers];
      });
    },
  });
  const feeds = {};
  const written = [];
  const ms = [];
  try {
    for (const inp of inputs) {
      const Typed = TYPED[inp.dtype];
      if (!Typed) throw new Error(`unsupported input dtype ${inp.dtype} for ${inp.node}`);
      const data = new Typed(await (await get(`exchange/${inp.file}`)).arrayBuffer());
      feeds[inp.node] = tf.tensor(data, inp.shape, inp.dtype);
    }
    const nodes = outputs.map((o) => o.node);
    const run = async () => {
      let got;
      try {
        got = model.execute(feeds, nodes); // synchronous; control flow needs executeAsync
      } catch (e) {
        if (!String(e && e.message).includes('executeAsync')) throw e;
        got = await model.executeAsync(feeds, nodes);
      }
      return Array.isArray(got) ? got : [got];
    };
    // Each time covers execute() and reading every output back, as in run.mjs; the first is cold.
    let t0 = performance.now();
    const out = await run();
    await Promise.all(out.map((t) => t.data()));
    ms.push(performance.now() - t0);
    for (let k = 1; k < (repeat || 1); k++) {
      t0 = performance.now();
      const extra = await run();
      await Promise.all(extra.map((t) => t.data()));
      ms.push(performance.now() - t0);
      tf.dispose(extra);
    }
    try {
      for (const [i, t] of out.entries()) {
        const spec = outputs[i];
        if (!TYPED[t.dtype]) throw new Error(`output ${spec.name} has dtype ${t.dtype}, which cannot be exchanged`);
        const data = await t.data();
        const file = `out_${backend}_${i}.bin`;
        const r = await fetch(`${base}exchange/${file}`, {
          method: 'POST', body: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
        if (!r.ok) throw new Error(`POST ${file}: HTTP ${r.status}`);
        written.push({ name: spec.name, dtype: t.dtype, shape: t.shape, file });
      }
    } finally {
      tf.dispose(out);
    }
  } finally {
    tf.dispose(Object.values(feeds));
    model.dispose();
  }
  return { info, outputs: written, ms };
}

// ---------------------------------------------------------------- driver

function message(e) {
  // playwright colours its call logs; the ANSI codes would end up in ExportError messages.
  return String((e && e.stack) || e).replace(/\x1b\[[0-9;]*m/g, '');
}

function withTimeout(promise, seconds, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${seconds} s`)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function runBackend(context, site, backend, req) {
  const consoleLines = [];
  const note = (line) => { if (consoleLines.length < MAX_CONSOLE_LINES) consoleLines.push(line); };
  const page = await context.newPage();
  page.on('console', (m) => note(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => note(`page error: ${(e && e.stack) || e}`));
  page.on('crash', () => note('page crashed'));
  try {
    const seconds = req.timeouts_s.backend; // for loading the page and running the model together
    const deadline = Date.now() + seconds * 1000;
    await page.goto(site.page, { waitUntil: 'load', timeout: seconds * 1000 });
    const arg = { backend, base: site.base, inputs: req.inputs, outputs: req.outputs, repeat: req.repeat || 1 };
    const left = Math.max(0, (deadline - Date.now()) / 1000);
    const done = await withTimeout(page.evaluate(runInPage, arg), left, `the ${backend} run (${seconds} s budget)`);
    return { ok: true, ...done, console: consoleLines };
  } catch (e) {
    return { ok: false, error: message(e), console: consoleLines };
  } finally {
    await withTimeout(page.close(), 10, 'closing the page').catch(() => {}); // a hung page must not hang us
  }
}

async function main() {
  const req = JSON.parse(await readFile(process.argv[2], 'utf8'));
  const { chromium } = createRequire(join(req.js_dir, 'package.json'))('playwright-core');
  const modelJSON = JSON.parse(await readFile(join(req.model_dir, 'model.json'), 'utf8'));
  let browser;
  let site;
  const watchdog = setTimeout(() => {
    process.stderr.write(`bridge browser runner: no result within ${req.timeouts_s.total} s, giving up\n`);
    process.exit(3); // playwright kills the browser it launched when the process exits
  }, req.timeouts_s.total * 1000);
  try {
    site = await startServer(req, modelJSON);
    browser = await chromium.launch({
      executablePath: req.chromium, headless: true, args: CHROMIUM_ARGS,
      timeout: req.timeouts_s.launch * 1000,
    });
    const context = await browser.newContext();
    await context.route('**/*', (route) => // the page talks to our server only
      (route.request().url().startsWith(site.origin + '/') ? route.continue() : route.abort('blockedbyclient')));
    const backends = {};
    for (const backend of req.backends) backends[backend] = await runBackend(context, site, backend, req);
    const result = { browser: browser.version(), backends };
    await writeFile(join(req.work_dir, 'result.json'), JSON.stringify(result, null, 1));
  } finally {
    if (browser) await withTimeout(browser.close(), 30, 'closing the browser').catch(() => {});
    if (site) {
      site.server.closeAllConnections();
      site.server.close();
    }
    clearTimeout(watchdog);
  }
}

main().catch((e) => {
  process.stderr.write(`bridge browser runner failed: ${message(e)}\n`);
  process.exit(2);
});
