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
// - The page loads, feeds and times the model with tfjs_io.mjs, the same code run.mjs uses (served
//   to the page as an ES module); the model.json `signature` is dropped there.
// - One browser launch serves every input set: each backend's page loads the model once and runs
//   all of them (a browser launch and a model load cost seconds).
// - The page code lives in this file (runInPage is sent with page.evaluate and
//   the HTML is a string), with tfjs_io.mjs beside it.
//
// Usage: node browser.mjs PREPARE.json, then REQUEST.json's path as one line on stdin.
// The runner launches chromium and opens and initialises one page per backend as soon as it starts, while
// Python is still writing the model; the request names the model and the input sets. A closed stdin
// without a line means there is nothing to check: the runner closes the browser and exits 0.
// PREPARE: {"js_dir", "chromium", "backends": [..], "timeouts_s": {"launch", "backend"}}
// REQUEST: {"js_dir", "model_dir", "work_dir", "backends": [..], "outputs": [{"name", "node"}],
//           "runs": [{"id", "inputs": [{"node", "dtype", "shape", "file"}]}], "chromium": path,
//           "repeat": N (executions of the first input set, default 1; the others run once),
//           "warm_budget_ms": warm runs stop once they took this long together, "timeouts_s": {"backend", "total"},
//           "budget_ms": null or ms: runs come cheapest first; the first always runs (with its repeats), a
//           later one only if the page's time so far plus its predicted time (the first set's last warm
//           execution per input element) fits; one left out is {"id", "over_budget": true}}
// Input and output files are raw little-endian arrays (float32, int32, bool as
// uint8) relative to work_dir. The runner writes work_dir/result.json:
//   {"browser": "156.0...", "backends": {"webgl": {"ok": true, "info": {..},
//     "runs": [{"id", "outputs": [{"name", "dtype", "shape", "file"}], "ms": [per execution]}], "console": [..]},
//    "wasm": {"ok": false, "error": "...", "console": [..]}}}
// Exit code 0 means result.json was written (a backend may still have failed).

import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LOOPBACK = '127.0.0.1';
const OUTPUT_FILE_RE = /^out_[a-z]+_\d+_\d+\.bin$/; // out_<backend>_<run id>_<output index>.bin
const HERE = dirname(fileURLToPath(import.meta.url));
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
  '.mjs': 'text/javascript; charset=utf-8',
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
<script type="module">import * as io from ${JSON.stringify(base + 'io/tfjs_io.mjs')}; window.bridgeIO = io;</script>
</head><body>bridge tfjs check</body></html>`;
}

// URL path (below the token) -> file on disk, for everything the page may GET: the tfjs bundles
// first (the page loads them before any model exists), the model and exchange files once asked.
function assetFiles(jsDir) {
  const require = createRequire(join(jsDir, 'package.json'));
  const tfjsDist = dirname(require.resolve('@tensorflow/tfjs/dist/tf.min.js'));
  const wasmDist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js'));
  const files = new Map([['tfjs/tf.min.js', join(tfjsDist, 'tf.min.js')],
    ['tfjs/tf-backend-wasm.min.js', join(wasmDist, 'tf-backend-wasm.min.js')]]);
  for (const flavour of ['', '-simd', '-threaded-simd']) {
    const name = `tfjs-backend-wasm${flavour}.wasm`;
    files.set(`tfjs/${name}`, join(wasmDist, name));
  }
  files.set('io/tfjs_io.mjs', join(HERE, 'tfjs_io.mjs')); // the loading code run.mjs uses too
  return files;
}

function addModelFiles(files, req, modelJSON) {
  files.set('model/model.json', join(req.model_dir, 'model.json'));
  for (const group of modelJSON.weightsManifest) {
    for (const path of group.paths) files.set(`model/${path}`, join(req.model_dir, basename(path)));
  }
  for (const run of req.runs) {
    for (const inp of run.inputs) files.set(`exchange/${inp.file}`, join(req.work_dir, inp.file));
  }
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

async function startServer(prep) {
  const token = randomBytes(16).toString('hex');
  const base = `/${token}/`;
  const files = assetFiles(prep.js_dir);
  const site = { files, workDir: null };
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
        if (!site.workDir) throw Object.assign(new Error('no request yet'), { status: 404 });
        await writeFile(join(site.workDir, rel.slice(9)), await readBody(request, 2 ** 31));
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
  return Object.assign(site, { server, origin, page: `${origin}${base}index.html`, base });
}

// ---------------------------------------------------------------- in the page

// Sent to the page with page.evaluate (these two must not use anything from this module). The loading
// code is tfjs_io.mjs, which the page imported as window.bridgeIO.
async function initBackend({ backend }) {
  const tf = window.tf;
  for (let i = 0; !window.bridgeIO; i++) { // the module script runs after the classic ones
    if (i > 400) throw new Error('tfjs_io.mjs did not load');
    await new Promise((r) => setTimeout(r, 25));
  }
  // Shapes as uniforms: one compiled shader per op and rank, not per op and shape. The page runs many
  // shapes (each input set, each model), and on SwiftShader compiling them was over half of a
  // ResNet-50's first run (18 s, 10 s with this; outputs bit-identical).
  if (backend === 'webgl') tf.env().set('WEBGL_USE_SHAPES_UNIFORMS', true);
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
  return info;
}

async function runInPage({ backend, base, runs, outputs, repeat, warmBudgetMs, budgetMs }) {
  const tf = window.tf;
  const io = window.bridgeIO;
  if (tf.getBackend() !== backend) throw new Error(`the page runs '${tf.getBackend()}', not '${backend}'`);
  const get = async (path) => {
    const r = await fetch(base + path);
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status}`);
    return r;
  };
  const model = await tf.loadGraphModel(io.graphModelHandler(tf, async () => (await get('model/model.json')).json(),
    async (path) => (await get(`model/${path}`)).arrayBuffer()));
  const nodes = outputs.map((o) => o.node);
  const done = [];
  let spent = 0;
  let msPerElement = 0;
  try {
    for (const run of runs) { // every input set on one loaded model; the first run of the first is the cold one
      const elements = run.inputs.reduce((n, inp) => n + inp.shape.reduce((a, b) => a * b, 1), 0);
      if (budgetMs !== null && done.length && spent + msPerElement * elements > budgetMs) {
        done.push({ id: run.id, over_budget: true });
        continue;
      }
      const feeds = await io.makeFeeds(tf, run.inputs, async (inp) => (await get(`exchange/${inp.file}`)).arrayBuffer());
      let out = [];
      try {
        // latency from the first set (its first run is the cold one); the other sets run once
        const timed = await io.timedRuns(tf, model, feeds, nodes, done.length ? 1 : repeat, warmBudgetMs);
        out = timed.out;
        spent += timed.ms.reduce((a, b) => a + b, 0);
        if (!done.length) msPerElement = timed.ms[timed.ms.length - 1] / Math.max(elements, 1);
        const written = [];
        for (const [i, t] of out.entries()) {
          const file = `out_${backend}_${run.id}_${i}.bin`;
          const r = await fetch(`${base}exchange/${file}`, { method: 'POST', body: await io.outputBytes(t, outputs[i].name) });
          if (!r.ok) throw new Error(`POST ${file}: HTTP ${r.status}`);
          written.push({ name: outputs[i].name, dtype: t.dtype, shape: t.shape, file });
        }
        done.push({ id: run.id, outputs: written, ms: timed.ms });
      } finally {
        tf.dispose(out);
        tf.dispose(Object.values(feeds));
      }
    }
  } finally {
    model.dispose();
  }
  return { runs: done };
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

// A page per backend, opened and its backend initialised before the model exists (prepare).
async function openBackend(context, site, backend, seconds) {
  const consoleLines = [];
  const note = (line) => { if (consoleLines.length < MAX_CONSOLE_LINES) consoleLines.push(line); };
  const page = await context.newPage();
  page.on('console', (m) => note(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => note(`page error: ${(e && e.stack) || e}`));
  page.on('crash', () => note('page crashed'));
  const entry = { page, console: consoleLines, info: null, error: null };
  try {
    await page.goto(site.page, { waitUntil: 'load', timeout: seconds * 1000 });
    entry.info = await withTimeout(page.evaluate(initBackend, { backend }), seconds, `starting ${backend}`);
  } catch (e) {
    entry.error = message(e);
  }
  return entry;
}

async function runBackend(entry, site, backend, req) {
  try {
    if (entry.error) throw new Error(entry.error);
    const seconds = req.timeouts_s.backend; // for loading the model and running every set
    const arg = { backend, base: site.base, runs: req.runs, outputs: req.outputs, repeat: req.repeat || 1,
      warmBudgetMs: req.warm_budget_ms || 1e12, budgetMs: req.budget_ms ?? null };
    const done = await withTimeout(entry.page.evaluate(runInPage, arg), seconds, `the ${backend} run (${seconds} s budget)`);
    return { ok: true, info: entry.info, ...done, console: entry.console };
  } catch (e) {
    return { ok: false, error: message(e), console: entry.console };
  } finally {
    await withTimeout(entry.page.close(), 10, 'closing the page').catch(() => {}); // a hung page must not hang us
  }
}

function readLine(stream) {
  // The request's path, on stdin once the model exists; '' when stdin closes first (nothing to check).
  return new Promise((resolve) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (c) => {
      text += c;
      if (text.includes('\n')) resolve(text.split('\n')[0].trim());
    });
    stream.on('end', () => resolve(text.trim()));
  });
}

async function main() {
  // argv: PREPARE.json {"js_dir", "chromium", "backends", "timeouts_s"}, then the request path on stdin.
  const prep = JSON.parse(await readFile(process.argv[2], 'utf8'));
  const { chromium } = createRequire(join(prep.js_dir, 'package.json'))('playwright-core');
  let browser;
  let site;
  let watchdog;
  try {
    site = await startServer(prep);
    browser = await chromium.launch({
      executablePath: prep.chromium, headless: true, args: CHROMIUM_ARGS,
      timeout: prep.timeouts_s.launch * 1000,
    });
    const context = await browser.newContext();
    await context.route('**/*', (route) => // the page talks to our server only
      (route.request().url().startsWith(site.origin + '/') ? route.continue() : route.abort('blockedbyclient')));
    const pages = {};
    await Promise.all(prep.backends.map(async (b) => {
      pages[b] = await openBackend(context, site, b, prep.timeouts_s.backend);
    }));
    const requestPath = await readLine(process.stdin);
    if (!requestPath) return; // the export stopped before the browser check
    const req = JSON.parse(await readFile(requestPath, 'utf8'));
    watchdog = setTimeout(() => {
      process.stderr.write(`bridge browser runner: no result within ${req.timeouts_s.total} s, giving up\n`);
      process.exit(3); // playwright kills the browser it launched when the process exits
    }, req.timeouts_s.total * 1000);
    addModelFiles(site.files, req, JSON.parse(await readFile(join(req.model_dir, 'model.json'), 'utf8')));
    site.workDir = req.work_dir;
    const backends = {};
    for (const backend of req.backends) {
      pages[backend] ||= await openBackend(context, site, backend, req.timeouts_s.backend);
      backends[backend] = await runBackend(pages[backend], site, backend, req);
    }
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
