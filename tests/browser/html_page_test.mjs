// The step-through page (tapegrad html) in a real browser: Debian's chromium, driven by
// playwright-core. It opens the pages from file:// with every other request refused, clicks
// through the whole pass checking the panel against `tapegrad step` and the highlighted node,
// uses the keys, resets, and keeps a screenshot of each page in the build directory.
// Usage: node html_page_test.mjs PATH/TO/tapegrad OUTPUT_DIR
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const SETUP = 'run tools/setup.sh test, which installs it';
const here = path.dirname(fileURLToPath(import.meta.url));
const [tapegrad, outDir] = process.argv.slice(2).map((p) => path.resolve(p));
const CS231N = ['q = x + y; f = q * z', 'x=-2', 'y=5', 'z=-4'];
const MLP = ['--mlp', '2,2,1', '--act', 'sigmoid', '--seed', '1'];

let context;       // one browser for every test, with a fresh profile
let profile;
const refused = [];  // every request that was not for a file: there must be none

// A missing precondition fails the test with one line saying what to do; it never skips.
function need(ok, message) {
  if (ok) return;
  console.error(`error: ${message}`);
  process.exit(1);
}
need(tapegrad && outDir, 'usage: node html_page_test.mjs PATH/TO/tapegrad OUTPUT_DIR');
need(fs.existsSync(CHROMIUM), `Debian's chromium is missing (${CHROMIUM}): ${SETUP}`);
need(fs.existsSync(path.join(here, 'node_modules', 'playwright-core')),
    `tests/browser/node_modules is missing (playwright-core): ${SETUP} (npm ci there)`);

function run(...args) {
  return execFileSync(tapegrad, args, { encoding: 'utf8', cwd: outDir });
}

function writePage(name, args) {
  const file = path.join(outDir, name);
  assert.equal(run('html', ...args, '-o', file), `page written to ${file}\n`);
  return file;
}

// `tapegrad step`'s output as {forward: [line], backward: [{heading, lines}]}, and the page's
// forward steps made from it: the leaves' lines ("x = -2") as one step, then each op's line.
function stepTranscript(args) {
  const forward = [];
  const backward = [];
  let section = '';
  for (const line of run('step', ...args).split('\n')) {
    if (!line.startsWith(' ')) section = line;
    else if (section === 'forward') forward.push(line.trim());
    else if (section === 'backward' && line.startsWith('  step ')) {
      backward.push({ heading: line.trim(), lines: [] });
    } else if (section === 'backward') backward.at(-1).lines.push(line.trim());
  }
  const isLeaf = (line) => line.split(' = ').length === 2;
  const pageForward = [forward.filter(isLeaf), ...forward.filter((l) => !isLeaf(l)).map((l) => [l])];
  return { forward: pageForward, backward };
}

async function open(file) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(pathToFileURL(file).href);
  await page.waitForSelector('#counter:not(:empty)');
  return { page, errors };
}

// What the page shows: its step, the panel, the highlighted node and edges, and which edge
// labels are visible.
function state(page) {
  return page.evaluate(() => {
    const visible = (selector) => Array.from(document.querySelectorAll(selector))
        .filter((t) => getComputedStyle(t).visibility === 'visible')
        .map((t) => t.closest('g.edge').id);
    return {
      step: Number(document.body.dataset.step),
      counter: document.getElementById('counter').textContent,
      heading: document.querySelector('#now .heading')?.textContent ?? null,
      lines: Array.from(document.querySelectorAll('#now .line'), (d) => d.textContent),
      hint: document.querySelector('#now .hint') !== null,
      nodes: Array.from(document.querySelectorAll('g.node.current'), (g) => g.id),
      nodeText: Array.from(document.querySelectorAll('g.node.current text'),
          (t) => t.textContent).join(''),
      edges: Array.from(document.querySelectorAll('g.edge.current'), (g) => g.id).sort(),
      values: visible('g.edge text.value'),
      grads: visible('g.edge text.grad'),
      play: document.getElementById('play').textContent,
      backDisabled: document.getElementById('back').disabled,
      nextDisabled: document.getElementById('next').disabled,
    };
  });
}

function pageData(page) {
  return page.evaluate(() => JSON.parse(document.getElementById('page-data').textContent));
}

async function screenshot(page, name) {
  const file = path.join(outDir, name);
  await page.waitForTimeout(400);  // the labels fade in over 0.3 s
  await page.screenshot({ path: file });
  console.log(`screenshot: ${file}`);
}

before(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  const { chromium } = await import('playwright-core');
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tapegrad-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:')) return route.continue();
    refused.push(url);
    return route.abort();
  });
});

after(async () => {
  if (context) await context.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test('CS231n: every step as tapegrad step prints it, the node it highlights, keys and reset',
    async () => {
      const expected = stepTranscript(CS231N);
      const total = expected.forward.length + expected.backward.length;
      assert.equal(total, 5);  // the inputs, q, f; then f's and q's chain rule
      const { page, errors } = await open(writePage('html-cs231n.html', CS231N));

      let s = await state(page);
      assert.equal(s.counter, `step 0 / ${total}`);
      assert.ok(s.hint && s.backDisabled && !s.nextDisabled);
      assert.deepEqual([s.nodes, s.values, s.grads], [[], [], []]);

      for (let i = 1; i <= total; ++i) {
        await page.click('#next');
        s = await state(page);
        assert.equal(s.counter, `step ${i} / ${total}`);
        assert.equal(s.nodes.length, i === 1 ? 3 : 1, `step ${i}: the leaves, then one node`);
        if (i <= expected.forward.length) {
          assert.deepEqual(s.lines, expected.forward[i - 1], `step ${i}`);
          assert.equal(s.values.length, i + 2, `step ${i}: three leaves, then a value a step`);
          assert.deepEqual(s.grads, []);
        } else {
          const b = expected.backward[i - expected.forward.length - 1];
          assert.equal(s.heading, b.heading);
          assert.deepEqual(s.lines, b.lines, `step ${i}`);
          assert.equal(s.values.length, 5);
        }
        if (i === 4) await screenshot(page, 'html-cs231n.png');
      }
      // Which node each step highlights: q's + at its forward step and at backward step 2, f's *
      // at backward step 1 with its two input edges, which by then carry -4 (dq) and 3 (dz).
      await page.keyboard.press('Home');
      for (let i = 0; i < 2; ++i) await page.keyboard.press('ArrowRight');
      s = await state(page);
      assert.deepEqual([s.step, s.nodeText, s.lines], [2, '+q', ['q = x + y = 3']]);
      await page.keyboard.press('ArrowRight');
      await page.keyboard.press('ArrowRight');
      s = await state(page);
      assert.deepEqual([s.step, s.nodeText, s.edges], [4, '*', ['e4_0', 'e4_1']]);
      assert.deepEqual(await page.evaluate(() => ['e4_0', 'e4_1', 'e_out'].map(
          (id) => document.querySelector(`#${id} text.grad`).textContent)), ['-4', '3', '1']);
      assert.deepEqual(s.grads.sort(), ['e4_0', 'e4_1', 'e_out']);
      await page.keyboard.press('ArrowRight');
      s = await state(page);
      assert.deepEqual([s.step, s.nodeText, s.grads.length, s.nextDisabled], [5, '+q', 5, true]);
      assert.ok(await page.isVisible('text=df/dx = -4'), 'the gradients after the last step');
      await page.keyboard.press('ArrowRight');  // at the end: stays
      assert.equal((await state(page)).step, 5);
      await page.keyboard.press('ArrowLeft');
      assert.equal((await state(page)).step, 4);

      // Space plays and pauses; with Next focused it does not also click it.
      await page.click('#next');
      await page.keyboard.press('Home');
      await page.click('#next');
      assert.equal((await state(page)).step, 1);
      await page.keyboard.press('Space');
      assert.match((await state(page)).play, /Pause/);
      await page.waitForFunction(() => document.body.dataset.step === '3', null, { timeout: 5000 });
      await page.keyboard.press('Space');
      s = await state(page);
      assert.match(s.play, /Play/);
      await page.waitForTimeout(1300);
      assert.equal((await state(page)).step, s.step, 'paused');

      await page.click('#reset');
      s = await state(page);
      assert.deepEqual([s.step, s.counter, s.hint, s.backDisabled], [0, 'step 0 / 5', true, true]);
      assert.deepEqual([s.nodes, s.edges, s.values, s.grads], [[], [], [], []]);
      assert.deepEqual(errors, []);
    });

test('the MLP: 35 steps, the leaves at once, then a node at each, fitting the window', async () => {
  const { page, errors } = await open(writePage('html-mlp.html', MLP));
  const data = await pageData(page);
  const total = data.steps.length;
  assert.equal(total, 1 + 17 + 17);
  for (let i = 1; i <= total; ++i) {
    await page.keyboard.press('ArrowRight');
    const s = await state(page);
    const step = data.steps[i - 1];
    assert.equal(s.counter, `step ${i} / ${total}`);
    assert.deepEqual(s.nodes, step.nodes, `step ${i}`);
    assert.equal(s.nodes.length, i === 1 ? 11 : 1, `step ${i}`);
    assert.deepEqual(s.lines, step.lines, `step ${i}`);
    if (i === 25) await screenshot(page, 'html-mlp.png');
  }
  const s = await state(page);
  assert.equal(s.grads.length, await page.locator('g.edge text.grad').count());
  // The whole graph fits the graph area at 1280x800 and at 1920x1080, at a readable scale; the
  // zoom buttons scale it and "fit" brings it back.
  const fits = () => page.evaluate(() => {
    const graph = document.getElementById('graph');
    const svg = graph.querySelector('svg').getBoundingClientRect();
    return { zoom: Number(document.body.dataset.zoom),
             fits: svg.width <= graph.clientWidth && svg.height <= graph.clientHeight };
  });
  let f = await fits();
  assert.ok(f.fits && f.zoom >= 0.5, `1280x800: ${JSON.stringify(f)}`);
  // The page refits on the window's resize event, which arrives after setViewportSize returns.
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.waitForFunction((z) => document.body.dataset.zoom !== z, f.zoom.toFixed(3));
  f = await fits();
  assert.ok(f.fits && f.zoom >= 0.5, `1920x1080: ${JSON.stringify(f)}`);
  await page.click('#zoom-in');
  const larger = await fits();
  assert.ok(Math.abs(larger.zoom - 1.25 * f.zoom) < 1e-3, JSON.stringify([f, larger]));
  await page.keyboard.press('0');
  assert.equal((await fits()).zoom, f.zoom);
  await page.setViewportSize({ width: 1280, height: 800 });
  assert.ok(await page.isVisible('text=/^dL\\/dw1_11 = /'));
  await page.click('#reset');
  const reset = await state(page);
  assert.deepEqual([reset.step, reset.nodes, reset.grads], [0, [], []]);
  assert.deepEqual(reset.values, data.known);  // the target y: a constant, known from the start
  assert.equal(data.known.length, 1);
  assert.deepEqual(errors, []);
});

test('the pages loaded nothing but themselves', () => {
  assert.deepEqual(refused, []);
});
