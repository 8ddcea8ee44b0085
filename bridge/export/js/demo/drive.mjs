// Opens bridge serve demo pages in one headless Chromium and collects what they measured
// (window.bridgeResults), for tests and for screenshots.
//
// - The browser is Debian's chromium driven by playwright-core (never a downloaded browser), with the
//   flags of ../browser.mjs (SwiftShader WebGL) plus --enable-unsafe-webgpu, under which headless
//   chromium exposes a SwiftShader WebGPU adapter.
// - One browser, one page per URL, in order; a page that fails records its error and the rest still run.
// - The pages may only reach their own server (other requests are aborted).
//
// Usage: node drive.mjs REQUEST.json
// REQUEST: {"js_dir", "chromium", "timeout_s", "out": path,
//           "pages": [{"url", "grey": {"pixels": [..0..255], "h", "w"} (optional: drawn, then predicted),
//                      "strokes": [[[x, y], ...], ...] (optional: mouse strokes on the canvas, 0..1 coords),
//                      "picture": path (optional: an image file chosen in the page's file input),
//                      "screenshot": path (optional, full page, after everything else)}]}
// Writes OUT: {"browser": version, "pages": [{"url", "ok", "results", "drawn", "stroked", "picked", "error",
//                                             "console"}]}

import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const CHROMIUM_ARGS = [
  '--no-sandbox', // runs as root in containers
  '--enable-unsafe-swiftshader',
  '--use-angle=swiftshader',
  '--enable-unsafe-webgpu', // WebGPU on SwiftShader (tfjs-backend-webgpu)
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const MAX_CONSOLE_LINES = 100;

function message(e) {
  return String((e && e.stack) || e).replace(/\x1b\[[0-9;]*m/g, '');
}

async function stroke(page, points) {
  const box = await page.locator('#draw').boundingBox();
  const xy = ([x, y]) => [box.x + x * box.width, box.y + y * box.height];
  await page.mouse.move(...xy(points[0]));
  await page.mouse.down();
  for (const p of points.slice(1)) await page.mouse.move(...xy(p), { steps: 4 });
  await page.mouse.up();
}

async function runPage(context, spec, timeoutMs) {
  const consoleLines = [];
  const note = (line) => { if (consoleLines.length < MAX_CONSOLE_LINES) consoleLines.push(line); };
  const page = await context.newPage();
  page.on('console', (m) => note(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => note(`page error: ${(e && e.stack) || e}`));
  const out = { url: spec.url, ok: false, console: consoleLines };
  try {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(spec.url, { waitUntil: 'load', timeout: timeoutMs });
    await page.waitForFunction(() => window.bridgeResults && window.bridgeResults.done, null, { timeout: timeoutMs });
    if (spec.grey) {
      out.drawn = await page.evaluate(({ pixels, h, w }) => (window.bridgeDemo
        ? window.bridgeDemo.drawGrey(pixels, h, w) : null), spec.grey);
    }
    if (spec.strokes) {
      await page.evaluate(() => window.bridgeDemo && window.bridgeDemo.clear());
      for (const s of spec.strokes) await stroke(page, s);
      await page.waitForTimeout(300);
      out.stroked = await page.evaluate(() => (window.bridgeDemo ? window.bridgeDemo.predict() : null));
    }
    if (spec.picture) {
      const before = await page.evaluate(() => window.bridgeResults.predictions);
      await page.setInputFiles('#picture', spec.picture);
      await page.waitForFunction((n) => window.bridgeResults.predictions > n, before, { timeout: timeoutMs });
      out.picked = await page.evaluate(() => window.bridgeResults.prediction);
    }
    out.results = await page.evaluate(() => window.bridgeResults);
    if (spec.screenshot) await page.screenshot({ path: spec.screenshot, fullPage: true });
    out.ok = true;
  } catch (e) {
    out.error = message(e);
    try { out.results = await page.evaluate(() => window.bridgeResults); } catch { /* page gone */ }
  } finally {
    await page.close().catch(() => {});
  }
  return out;
}

async function main() {
  const req = JSON.parse(await readFile(process.argv[2], 'utf8'));
  const { chromium } = createRequire(join(req.js_dir, 'package.json'))('playwright-core');
  const timeoutMs = (req.timeout_s || 180) * 1000;
  const browser = await chromium.launch({ executablePath: req.chromium, headless: true, args: CHROMIUM_ARGS,
    timeout: 60000 });
  try {
    const context = await browser.newContext();
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      const local = url.hostname === '127.0.0.1' || url.hostname === 'localhost';
      return local ? route.continue() : route.abort('blockedbyclient');
    });
    const pages = [];
    for (const spec of req.pages) pages.push(await runPage(context, spec, timeoutMs));
    await writeFile(req.out, JSON.stringify({ browser: browser.version(), pages }, null, 1));
  } finally {
    await browser.close().catch(() => {});
  }
}

main().catch((e) => {
  process.stderr.write(`bridge demo driver failed: ${message(e)}\n`);
  process.exit(2);
});
