// The playground page (tapegrad playground) in a real browser: Debian's chromium, driven by
// playwright-core. The page opens from file:// with every other request refused; the gradients it
// shows and its scripting API equal `tapegrad grad --json`'s, a mistake shows the CLI's caret
// message and keeps the graph, stepping shows `tapegrad step`'s lines, the URL keeps the state,
// NaN and a graph past the budget get a message, and nothing is logged as an error. Screenshots
// (playground-*.png) and the figures measured (page size, time to the first graph, time of an
// edit of a 50-node program) are left in the build directory.
// Usage: node playground_test.mjs PATH/TO/tapegrad OUTPUT_DIR
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const SETUP = 'run tools/setup.sh test, which installs it';
const here = path.dirname(fileURLToPath(import.meta.url));
const [tapegrad, outDir] = process.argv.slice(2).map((p) => path.resolve(p));

let context;  // one browser for every test, with a fresh profile
let profile;
let pageFile;
const refused = [];  // every request that was not for a file: there must be none
const figures = {};  // what was measured, written to playground-figures.json

function need(ok, message) {
  if (ok) return;
  console.error(`error: ${message}`);
  process.exit(1);
}
need(tapegrad && outDir, 'usage: node playground_test.mjs PATH/TO/tapegrad OUTPUT_DIR');
need(fs.existsSync(CHROMIUM), `Debian's chromium is missing (${CHROMIUM}): ${SETUP}`);
need(fs.existsSync(path.join(here, 'node_modules', 'playwright-core')),
    `tests/browser/node_modules is missing (playwright-core): ${SETUP} (npm ci there)`);

function run(...args) {
  return execFileSync(tapegrad, args, { encoding: 'utf8', cwd: outDir });
}

// The programs whose gradients the page must show as the CLI prints them: the presets, and
// programs with every kind of op, a fork, a rebinding and numbers that print long.
const PROGRAMS = [
  ['q = x + y\nf = q * z', { x: -2, y: 5, z: -4 }],
  ['f = sigmoid(w0*x0 + w1*x1 + w2)', { w0: 2, x0: -1, w1: -3, x1: -2, w2: -3 }],
  ['c = a + b\nd = a * b + b^3\nc = c + c + 1\nc = c + 1 + c + (-a)\nd = d + d * 2 + relu(b + a)\n' +
   'd = d + 3 * d + relu(b - a)\ne = c - d\nf = e^2\ng = f / 2\ng = g + 10 / f', { a: -4, b: 2 }],
  ['y = w * x + b', { w: 2, x: -3, b: 4 }],
  ['h = tanh(x * y) + x^2 - exp(-y) / sqrt(1 + x^2); out = h * log(1 + y^2)', { x: 0.3, y: -1.7 }],
  ['m = max(a, b) * softplus(a - b) + gelu(a) - leaky_relu(-b, 0.1)', { a: 1.25, b: -0.5 }],
];

// Note [The page's numbers and the CLI's]
// The page's engine is the CLI's, compiled by emscripten, so + - * / and sqrt (correctly rounded
// in IEEE arithmetic) give the very same doubles. exp, log, tanh and the functions made of them
// come from emscripten's musl libm in the page and from glibc natively: both are within an ulp
// of the true value, not always the same ulp. Numbers through them agree to 1e-14 relative (a
// few ulps after the chain rule), and those of programs without them exactly.
const TRANSCENDENTAL = /\b(exp|log|tanh|sigmoid|softplus|gelu|gelu_tanh|silu|elu|pow)\s*\(|\^\s*[a-z(]/;
function assertAgree(shown, native, program) {
  if (!TRANSCENDENTAL.test(program)) {
    assert.deepEqual(shown, native, program);
    return;
  }
  const close = (a, b) => a === b || Math.abs(a - b) <= 1e-14 * Math.max(1, Math.abs(b));
  assert.ok(close(shown.value, native.value), `${program}: value ${shown.value} vs ${native.value}`);
  assert.deepEqual(Object.keys(shown.grad), Object.keys(native.grad), program);
  for (const name of Object.keys(native.grad)) {
    assert.ok(close(shown.grad[name], native.grad[name]),
        `${program}: d/d${name} ${shown.grad[name]} vs ${native.grad[name]}`);
  }
}

function nativeGrad(program, inputs) {
  const args = Object.entries(inputs).map(([k, v]) => `${k}=${v}`);
  return JSON.parse(run('grad', '--json', program, ...args));
}

function hashFor(program, inputs) {
  const state = new URLSearchParams();
  state.set('program', program);
  for (const [k, v] of Object.entries(inputs)) state.set(`in.${k}`, String(v));
  return `#${state.toString()}`;
}

async function open(hash = '') {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const started = Date.now();
  await page.goto(pathToFileURL(pageFile).href + hash);
  await settled(page);
  return { page, errors, openedMs: Date.now() - started };
}

// Waits until the worker has answered the latest edit.
async function settled(page) {
  await page.waitForFunction(() => document.body.dataset.idle === 'true', null, { timeout: 60000 });
}

// What the gradient table shows: {value, grad: {x: number}, fd: {x: number}}.
function shownGradients(page) {
  return page.evaluate(() => {
    const rows = Array.from(document.querySelectorAll('#gradients tr'));
    const grad = {};
    const fd = {};
    let value;
    rows.forEach((tr) => {
      const cells = Array.from(tr.children).map((c) => c.textContent);
      if (tr.dataset.input) {
        grad[tr.dataset.input] = Number(cells[1]);
        if (cells.length > 2) fd[tr.dataset.input] = Number(cells[2]);
      } else if (tr.querySelector('td.value')) {
        value = Number(cells[1]);
      }
    });
    return { value, grad, fd };
  });
}

before(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  pageFile = path.join(outDir, 'playground.html');
  const written = spawnSync(tapegrad, ['playground', '-o', pageFile], { encoding: 'utf8' });
  need(written.status === 0, `tapegrad playground failed: ${written.stderr.trim()}`);
  assert.equal(written.stdout, `page written to ${pageFile}\n`);
  figures.pageBytes = fs.statSync(pageFile).size;
  const { chromium } = await import('playwright-core');
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tapegrad-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 820 },
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
  fs.writeFileSync(path.join(outDir, 'playground-figures.json'), `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`playground figures: ${JSON.stringify(figures)}`);
});

test('one file under 5 MB, UTF-8, that opens on the CS231n circuit and fetches nothing', async () => {
  assert.ok(figures.pageBytes <= 5 * 1024 * 1024, `the page is ${figures.pageBytes} bytes`);
  const head = fs.readFileSync(pageFile, 'utf8').slice(0, 200);
  assert.match(head, /<meta charset="utf-8">/);
  const { page, errors, openedMs } = await open();
  figures.firstGraphMs = Number(await page.evaluate(() => document.body.dataset.firstGraphMs));
  figures.openToSettledMs = openedMs;
  assert.equal(await page.inputValue('#program'), 'q = x + y\nf = q * z');
  assert.equal(await page.locator('#graph svg g.node').count(), 6);  // x, y, z, +, *, f's box
  assert.deepEqual(await shownGradients(page), { value: -12, grad: { x: -4, y: -4, z: 3 }, fd: {} });
  await page.screenshot({ path: path.join(outDir, 'playground-cs231n.png') });
  assert.deepEqual(errors, []);
  assert.deepEqual(refused, []);
  await page.close();
});

test('editing a program redraws the graph, with the gradients `tapegrad grad --json` prints', async () => {
  const { page, errors } = await open();
  for (const [program, inputs] of PROGRAMS) {
    const before = Number(await page.evaluate(() => document.body.dataset.graphs));
    await page.fill('#program', program);
    await settled(page);
    for (const [name, value] of Object.entries(inputs)) {
      await page.fill(`#inputs input[data-input="${name}"]`, String(value));
      await settled(page);
    }
    const native = nativeGrad(program, inputs);
    const shown = await shownGradients(page);
    assertAgree({ value: shown.value, grad: shown.grad }, native, program);
    assert.ok(Number(await page.evaluate(() => document.body.dataset.graphs)) > before);
    // The scripting API returns the very object the CLI prints.
    assertAgree(await page.evaluate(([p, i]) => window.tapegrad.grad(p, i), [program, inputs]),
        native, program);
  }
  await page.screenshot({ path: path.join(outDir, 'playground-edited.png') });
  assert.deepEqual(errors, []);
  assert.deepEqual(refused, []);
  await page.close();
});

test('a mistake shows the caret message the CLI prints, and the last good graph stays', async () => {
  const { page, errors } = await open();
  const graphText = () => page.textContent('#graph svg');
  const textBefore = await graphText();
  const bad = 'q = x + y\nf = q * (z + )';
  await page.fill('#program', bad);
  await settled(page);
  const cli = spawnSync(tapegrad, ['grad', bad, 'x=1', 'y=1', 'z=1'], { encoding: 'utf8' });
  assert.equal(cli.status, 2);
  assert.match(cli.stderr, /\^/);
  assert.equal(await page.textContent('#error'), cli.stderr.replace(/\n$/, ''));
  assert.ok(await page.isVisible('#error'));
  assert.equal(await graphText(), textBefore);  // the CS231n graph, dimmed
  assert.equal(await page.locator('#graph.stale svg').count(), 1);
  const api = await page.evaluate((p) => window.tapegrad.grad(p, { x: 1, y: 1, z: 1 })
      .then(() => 'no error', (e) => e.message), bad);
  assert.equal(api, cli.stderr.replace(/\n$/, ''));
  await page.screenshot({ path: path.join(outDir, 'playground-error.png') });
  // Fixing it draws again.
  await page.fill('#program', 'q = x + y\nf = q * (z + 1)');
  await settled(page);
  assert.ok(await page.isHidden('#error'));
  assert.equal(await page.locator('#graph.stale').count(), 0);
  assert.deepEqual(errors, []);
  await page.close();
});

// `tapegrad step`'s output as the page's steps: the leaves' forward lines ("x = -2") as one step,
// then each op's line; then each backward step's heading and lines.
function stepTranscript(program, inputs) {
  const args = Object.entries(inputs).map(([k, v]) => `${k}=${v}`);
  const text = run('step', program, ...args);
  const forward = [];
  const backward = [];
  let section = '';
  for (const line of text.split('\n')) {
    if (!line.startsWith(' ')) section = line;
    else if (section === 'forward') forward.push(line.trim());
    else if (section === 'backward' && line.startsWith('  step ')) {
      backward.push({ heading: line.trim(), lines: [] });
    } else if (section === 'backward') backward.at(-1).lines.push(line.trim());
  }
  const isLeaf = (line) => line.split(' = ').length === 2;
  const pageForward = [forward.filter(isLeaf), ...forward.filter((l) => !isLeaf(l)).map((l) => [l])];
  return { text, forward: pageForward, backward };
}

test('Step, Back, Play and Reset show `tapegrad step`\'s lines, forward then backward', async () => {
  const [program, inputs] = PROGRAMS[1];  // the sigmoid neuron
  const { page, errors } = await open(hashFor(program, inputs));
  const cli = stepTranscript(program, inputs);
  assert.deepEqual(await page.evaluate(([p, i]) => window.tapegrad.step(p, i), [program, inputs]),
      cli.text.replace(/\n$/, '').split('\n'));
  const steps = cli.forward.length + cli.backward.length;
  assert.equal(await page.textContent('#counter'), `step ${steps} / ${steps}`);  // an edit shows all
  await page.click('#reset');
  assert.equal(await page.textContent('#counter'), `step 0 / ${steps}`);
  const now = () => page.$$eval('#now > div', (ds) => ds.map((d) => d.textContent));
  for (const lines of cli.forward) {
    await page.click('#next');
    assert.deepEqual((await now()).slice(1), lines);
  }
  assert.equal(await page.locator('#graph g.edge.has-grad').count(), 0);  // no gradient yet
  for (const [k, step] of cli.backward.entries()) {
    await page.click('#next');
    assert.deepEqual(await now(), [step.heading, ...step.lines]);
    if (k === 0) await page.screenshot({ path: path.join(outDir, 'playground-step.png') });
  }
  assert.ok(await page.isDisabled('#next'));
  await page.click('#back');
  const back = cli.backward.at(-2);
  assert.deepEqual(await now(), [back.heading, ...back.lines]);
  await page.click('#reset');
  await page.click('#play');
  await page.waitForFunction((n) => document.body.dataset.step === String(n), steps, { timeout: 60000 });
  assert.equal(await page.getAttribute('#play', 'aria-pressed'), 'false');
  assert.deepEqual(errors, []);
  await page.close();
});

test('the URL holds the program and the inputs: a link opens the same graph', async () => {
  const { page, errors } = await open();
  const [program, inputs] = PROGRAMS[4];
  await page.fill('#program', program);
  await settled(page);
  for (const [name, value] of Object.entries(inputs)) {
    await page.fill(`#inputs input[data-input="${name}"]`, String(value));
    await settled(page);
  }
  const url = page.url();
  const shown = await shownGradients(page);
  await page.close();
  const again = await context.newPage();
  await again.goto(url);
  await settled(again);
  assert.equal(await again.inputValue('#program'), program);
  for (const [name, value] of Object.entries(inputs)) {
    assert.equal(Number(await again.inputValue(`#inputs input[data-input="${name}"]`)), value);
  }
  assert.deepEqual(await shownGradients(again), shown);
  assertAgree({ value: shown.value, grad: shown.grad }, nativeGrad(program, inputs), program);
  assert.deepEqual(errors, []);
  await again.close();
});

test('the toggle shows each gradient beside its central difference', async () => {
  const [program, inputs] = PROGRAMS[4];
  const { page, errors } = await open(hashFor(program, inputs));
  await page.check('#show-fd');
  const shown = await shownGradients(page);
  for (const name of Object.keys(inputs)) {
    const g = shown.grad[name];
    assert.ok(Math.abs(g - shown.fd[name]) <= 1e-6 * Math.max(1, Math.abs(g)),
        `${name}: gradient ${g}, central difference ${shown.fd[name]}`);
  }
  await page.screenshot({ path: path.join(outDir, 'playground-fd.png') });
  assert.deepEqual(errors, []);
  await page.close();
});

test('NaN and a graph past the drawing budget get a message, and the page stays usable', async () => {
  const { page, errors } = await open(hashFor('f = log(x) * y', { x: -1, y: 2 }));
  assert.ok(await page.isVisible('#warning'));
  const cli = spawnSync(tapegrad, ['grad', '--check-finite', 'f = log(x) * y', 'x=-1', 'y=2'],
      { encoding: 'utf8' });
  assert.equal(cli.status, 2);
  assert.equal(`error: ${await page.textContent('#warning')}\n`, cli.stderr);
  await page.screenshot({ path: path.join(outDir, 'playground-nan.png') });
  // 1200 statements: past the budget of 1000 drawn nodes; refused before any layout.
  const big = Array.from({ length: 1200 }, (_, i) => `a${i + 1} = a${i} * 1.001 + x`)
      .join('\n').replace('a0', 'x');
  await page.fill('#program', big);
  await settled(page);
  assert.match(await page.textContent('#error'), /drawing budget|too large|nodes/);
  // 450 statements: within the budget, past the 400 nodes stepping follows. Drawn whole.
  const long = Array.from({ length: 450 }, (_, i) => `a${i + 1} = a${i} * x`).join('\n')
      .replace('a0', 'y');
  await page.fill('#program', long);
  await settled(page);
  assert.ok(await page.isHidden('#error'));
  assert.match(await page.textContent('#now'), /Stepping is for graphs of at most 400 nodes/);
  assert.ok(await page.isDisabled('#next'));
  await page.screenshot({ path: path.join(outDir, 'playground-450.png') });
  // 451 nodes, the output's box, and copies of x beside its uses (Note [Long edges]).
  assert.ok(await page.locator('#graph svg g.node').count() > 452);
  assertAgree((({ value, grad }) => ({ value, grad }))(await shownGradients(page)),
      nativeGrad(long, { y: 2, x: -1 }), long);
  await page.fill('#program', 'f = x * y');
  await settled(page);
  assert.ok(await page.isHidden('#error'));
  assert.deepEqual((await shownGradients(page)).grad, { x: 2, y: -1 });
  assert.deepEqual(errors, []);
  await page.close();
});

test('a 50-node program: each edit is drawn (the time is measured, not asserted)', async () => {
  // 16 statements of 3 ops over 2 inputs: 50 nodes.
  const lines = ['s0 = x * y'];
  for (let i = 1; i < 17; ++i) lines.push(`s${i} = tanh(s${i - 1} + x) * y`);
  const program = lines.join('\n');
  const { page, errors } = await open(hashFor(program, { x: 0.5, y: 0.9 }));
  figures.fiftyNodeProgramNodes = Number((await page.textContent('#status')).split(' ')[0]);
  const times = [];
  for (const x of [0.1, 0.2, 0.3, 0.4, 0.6]) {
    await page.fill('#inputs input[data-input="x"]', String(x));
    await settled(page);
    times.push(await page.evaluate(() => ['lastUpdateMs', 'engineMs', 'layoutMs']
        .map((k) => Number(document.body.dataset[k]))));
    const shown = await shownGradients(page);
    assertAgree({ value: shown.value, grad: shown.grad }, nativeGrad(program, { x, y: 0.9 }), program);
  }
  figures.fiftyNodeEditMs = times;  // [the whole edit, the engine, Graphviz's layout]
  await page.screenshot({ path: path.join(outDir, 'playground-50.png') });
  assert.deepEqual(errors, []);
  assert.deepEqual(refused, []);
  await page.close();
});

// ---- the network lab ---------------------------------------------------------------------------

// A network-lab link: the lab shown and its setup (Note [The URL's state], page.js).
function netHash(setup) {
  const state = new URLSearchParams({ lab: 'network' });
  for (const [k, v] of Object.entries(setup)) state.set(`net.${k}`, String(v));
  return `#${state.toString()}`;
}

// Opens the page at 1280x800, the smallest screen the lab is laid out for, and waits for the
// engine's first net_create.
async function openNetwork(hash) {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 800 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(pathToFileURL(pageFile).href + hash);
  await settled(page);
  await netSettled(page);
  return { page, errors };
}
async function netSettled(page) {
  await page.waitForFunction(() => document.body.dataset.netIdle === 'true', null, { timeout: 60000 });
}
const dataset = (page, key) => page.evaluate((k) => document.body.dataset[k], key);

// Every control of the lab as the page shows it, to compare two pages.
function netControls(page) {
  return page.evaluate(() => {
    const value = (id) => document.getElementById(id).value;
    return {
      data: document.querySelector('#net-sets [aria-checked="true"]')?.dataset.set,
      features: Array.from(document.querySelectorAll('#net-features [aria-pressed="true"]'))
          .map((b) => b.dataset.feature),
      hidden: Array.from(document.querySelectorAll('#net-layers .column[data-layer]'))
          .filter((c) => c.dataset.layer !== 'output')
          .map((c) => c.querySelectorAll('canvas').length),
      ...Object.fromEntries(['net-lr', 'net-act', 'net-reg', 'net-reg-rate', 'net-problem', 'net-ratio',
        'net-noise', 'net-batch', 'net-opt', 'net-init'].map((id) => [id, value(id)])),
      seed: document.getElementById('net-seed').textContent,
      showTest: document.getElementById('net-show-test').checked,
      discretize: document.getElementById('net-discretize').checked,
      command: document.getElementById('net-command').textContent,
    };
  });
}

test('the network lab trains moons to 0.95 test accuracy within 10 s, and the page keeps drawing', async () => {
  const { page, errors } = await openNetwork(netHash({ data: 'moons', hidden: '8,8', act: 'relu',
    opt: 'adam', lr: 0.01, noise: 15, batch: 10 }));
  assert.equal(await dataset(page, 'netLayers'), '2,8,8,1');
  assert.match(await page.textContent('#net-command'), /^tapegrad train --data moons .*--hidden 8,8/);
  // At 1280x800 the whole lab is on the screen: the page itself does not scroll.
  assert.deepEqual(await page.evaluate(() => [document.documentElement.scrollWidth,
    document.documentElement.scrollHeight]), [1280, 800]);
  const started = Date.now();
  await page.click('#net-play');
  // Frames the browser drew in one second of training, and how many of them showed a new
  // snapshot (a redrawn map): training in the worker leaves the page's thread free.
  [figures.netFramesPerSecond, figures.netMapDrawsPerSecond] = await page.evaluate(() => new Promise((done) => {
    const draws = Number(document.body.dataset.netDraws);
    const start = performance.now();
    let frames = 0;
    const frame = () => {
      frames += 1;
      if (performance.now() - start < 1000) requestAnimationFrame(frame);
      else done([frames, Number(document.body.dataset.netDraws) - draws]);
    };
    requestAnimationFrame(frame);
  }));
  // Speed is measured, not asserted (a loaded machine draws fewer frames): the figures go to
  // playground-figures.json. A page whose thread training blocked would draw next to none.
  assert.ok(figures.netFramesPerSecond >= 5, `${figures.netFramesPerSecond} frames in a second`);
  // What the slices were at the end of that second (Note [Training slices], page.js): the
  // engine's time for the last one, its epochs, and the page's time to draw a snapshot.
  figures.netSliceEngineMs = Number(await dataset(page, 'netEngineMs'));
  figures.netSliceEpochs = Number(await dataset(page, 'netSliceEpochs'));
  figures.netDrawMs = Number(await dataset(page, 'netDrawMs'));
  await page.waitForFunction(() => Number(document.body.dataset.netTestAccuracy) >= 0.95, null,
      { timeout: 10000 });
  figures.netMoonsSecondsTo95 = (Date.now() - started) / 1000;
  figures.netMoonsEpochsTo95 = Number(await dataset(page, 'netEpoch'));
  await page.click('#net-play');  // Pause
  assert.equal(await page.getAttribute('#net-play', 'aria-pressed'), 'false');
  await page.waitForTimeout(200);
  const paused = await dataset(page, 'netEpoch');
  await page.waitForTimeout(300);
  assert.equal(await dataset(page, 'netEpoch'), paused);  // no epoch after Pause
  await page.click('#net-show-test');
  await page.screenshot({ path: path.join(outDir, 'playground-network-moons.png') });
  // Step trains one epoch; Reset goes back to epoch 0.
  await page.click('#net-step');
  await page.waitForFunction((e) => document.body.dataset.netEpoch === String(e + 1), Number(paused));
  await page.click('#net-reset');
  await page.waitForFunction(() => document.body.dataset.netEpoch === '0');
  assert.deepEqual(errors, []);
  assert.deepEqual(refused, []);
  await page.close();
});

test('the network lab\'s + and - buttons change the network the engine trains', async () => {
  const { page, errors } = await openNetwork(netHash({ data: 'xor', hidden: '4,2' }));
  const engine = async () => [await dataset(page, 'netLayers'), await dataset(page, 'netWeights')];
  assert.deepEqual(await engine(), ['2,4,2,1', '4x2,2x4,1x2']);
  const change = async (selector, layers, weights) => {
    await page.click(selector);
    await netSettled(page);
    await page.waitForFunction((l) => document.body.dataset.netLayers === l, layers);
    assert.deepEqual(await engine(), [layers, weights], selector);
  };
  await change('#net-add-layer', '2,4,2,2,1', '4x2,2x4,2x2,1x2');
  await change('[aria-label="add a neuron to layer 3"]', '2,4,2,3,1', '4x2,2x4,3x2,1x3');
  await change('[aria-label="remove a neuron from layer 1"]', '2,3,2,3,1', '3x2,2x3,3x2,1x3');
  await change('#net-remove-layer', '2,3,2,1', '3x2,2x3,1x2');
  await change('#net-features [data-feature="x1*x2"]', '3,3,2,1', '3x3,2x3,1x2');
  while (!(await page.isDisabled('#net-add-layer'))) {
    await page.click('#net-add-layer');
    await netSettled(page);
  }
  assert.ok(await page.isDisabled('#net-add-layer'));  // 6 hidden layers, as TensorFlow Playground
  assert.equal((await dataset(page, 'netLayers')).split(',').length, 8);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the network lab\'s setup round-trips through the URL', async () => {
  const { page, errors } = await openNetwork(netHash({}));
  await page.click('#net-sets [data-set="spirals"]');
  await page.selectOption('#net-act', 'relu');
  await page.selectOption('#net-lr', '0.1');
  await page.selectOption('#net-reg', 'l2');
  await page.selectOption('#net-reg-rate', '0.003');
  await page.selectOption('#net-opt', 'adam');
  await page.selectOption('#net-init', 'xavier');
  await page.click('#net-features [data-feature="sin_x2"]');
  await page.click('#net-add-layer');
  await page.click('[aria-label="add a neuron to layer 1"]');
  for (const [id, value] of [['net-ratio', '70'], ['net-noise', '20'], ['net-batch', '5']]) {
    await page.$eval(`#${id}`, (e, v) => {
      e.value = v;
      e.dispatchEvent(new Event('change'));
    }, value);
  }
  await page.click('#net-regenerate');
  await page.check('#net-show-test');
  await page.check('#net-discretize');
  await netSettled(page);
  const setup = await netControls(page);
  assert.deepEqual([setup.data, setup.features, setup.hidden, setup['net-act'], setup.seed],
      ['spirals', ['x1', 'x2', 'sin_x2'], [5, 2, 2], 'relu', '2']);
  const url = page.url();
  await page.close();
  const again = await openNetwork(new URL(url).hash);
  assert.deepEqual(await netControls(again.page), setup);
  assert.equal(await dataset(again.page, 'netLayers'), '3,5,2,2,3');  // spirals: three arms
  await again.page.screenshot({ path: path.join(outDir, 'playground-network-spirals.png') });
  // The graph lab's state shares the fragment and survives the network lab's.
  await again.page.click('#tab-graph');
  assert.equal(await again.page.inputValue('#program'), 'q = x + y\nf = q * z');
  assert.match(again.page.url(), /net\.data=spirals/);
  assert.deepEqual(errors, []);
  assert.deepEqual(again.errors, []);
  await again.page.close();
});

test('the network lab: a diverging learning rate stops training with a message, and the page stays usable', async () => {
  // A linear network's weights multiply layer by layer: at a rate of 10 they overflow in a few
  // epochs.
  const { page, errors } = await openNetwork(netHash({ data: 'moons', hidden: '8,8', act: 'none',
    lr: 10, opt: 'sgd', noise: 15 }));
  await page.click('#net-play');
  await page.waitForSelector('#net-message:not([hidden])', { timeout: 30000 });
  assert.match(await page.textContent('#net-message'), /learning rate/);
  assert.equal(await page.getAttribute('#net-play', 'aria-pressed'), 'false');
  await page.screenshot({ path: path.join(outDir, 'playground-network-diverged.png') });
  await page.selectOption('#net-lr', '0.03');
  await netSettled(page);
  assert.ok(await page.isHidden('#net-message'));
  assert.equal(await dataset(page, 'netEpoch'), '0');
  await page.click('#net-step');
  await page.waitForFunction(() => document.body.dataset.netEpoch === '1');
  assert.deepEqual(errors, []);
  await page.close();
});

// Where on the map (CSS pixels from its content box's corner) a data point of class `label` is
// drawn: the middle of a dot of its pure class colour (which the map under the dots never
// reaches; a dot's antialiased edge does not either), so that no other point is nearer.
async function dotOfClass(page, label) {
  // The map is redrawn at the animation frame after a snapshot.
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  return page.evaluate((l) => {
    const canvas = document.getElementById('net-map');
    const { data, width, height } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const colour = l === 1 ? [8, 119, 189] : [245, 147, 34];
    const pure = (x, y) => colour.every((c, k) => data[(y * width + x) * 4 + k] === c);
    let best = null;
    let bestScore = 0;  // the pure pixels around it: a dot's middle has the most
    for (let y = 1; y < height - 1; y += 1) {
      for (let x = 1; x < width - 1; x += 1) {
        if (!pure(x, y)) continue;
        let score = 0;
        for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [-1, -1], [1, -1], [-1, 1]]) score += pure(x + dx, y + dy);
        if (score > bestScore) [best, bestScore] = [[x, y], score];
      }
    }
    return best;
  }, label);
}
async function clickMap(page, [x, y]) {
  const at = await page.$eval('#net-map', (c) => {
    const box = c.getBoundingClientRect();
    return [box.left + c.clientLeft, box.top + c.clientTop];
  });
  await page.mouse.click(at[0] + x + 0.5, at[1] + y + 0.5);
}

test('the network lab: a click on a point shows its pass in the graph lab, with every weight\'s gradient', async () => {
  const { page, errors } = await openNetwork(netHash({ data: 'moons', hidden: '8,8', act: 'relu',
    opt: 'adam', lr: 0.01, noise: 0.1, batch: 10 }));
  assert.ok(await page.isVisible('#net-point-hint'));
  for (let epoch = 1; epoch <= 3; epoch += 1) {
    await page.click('#net-step');
    await page.waitForFunction((e) => document.body.dataset.netEpoch === String(e), epoch);
  }
  const dot = await dotOfClass(page, 1);
  assert.ok(dot, 'a blue point on the map');
  await clickMap(page, dot);
  await page.waitForFunction(() => document.body.dataset.netPoint === 'shown', null, { timeout: 60000 });
  assert.ok(await page.isVisible('#graph-lab'));
  assert.ok(await page.isVisible('#point-note'));
  assert.ok(await page.isHidden('#program'));
  assert.match(await page.textContent('#point-caption'), /^The train point .* of class 1, .* at epoch 3, with its bce_logits loss L\.$/);
  // Every weight's gradient is listed, and the step lines say how each was found.
  const shown = await shownGradients(page);
  assert.equal(Object.keys(shown.grad).length, 2 + (2 * 8 + 8) + (8 * 8 + 8) + (8 + 1));
  assert.ok(Number.isFinite(shown.grad.w1_11) && Number.isFinite(shown.grad.b3_1));
  const log = await page.textContent('#log');
  assert.match(log, /dL\/dw2_11 = dL\/dt\d+ · ∂t\d+\/∂w2_11 = /);
  assert.match(log, /dL\/db3_1 = /);
  const steps = Number((await page.textContent('#counter')).match(/\/ (\d+)$/)[1]);
  assert.equal(await page.textContent('#counter'), `step ${steps} / ${steps}`);
  await page.screenshot({ path: path.join(outDir, 'playground-network-point.png') });
  await page.click('#reset');
  assert.equal(await page.textContent('#counter'), `step 0 / ${steps}`);
  await page.click('#next');
  await page.click('#next');
  assert.equal(await page.textContent('#counter'), `step 2 / ${steps}`);
  await page.click('#back');
  assert.equal(await page.textContent('#counter'), `step 1 / ${steps}`);
  // Off the data, the loss takes the class the network predicts; Back to the program returns.
  await page.click('#tab-network');
  await clickMap(page, [1, 1]);  // the map's corner: padding, no data point
  await page.waitForFunction(() => /predicts/.test(document.getElementById('point-caption').textContent));
  await page.click('#point-leave');
  await settled(page);
  assert.ok(await page.isVisible('#program'));
  assert.ok(await page.isHidden('#point-note'));
  assert.deepEqual(errors, []);
  await page.close();
});

test('the network lab: a point\'s pass through a network past the drawing budget gets a message', async () => {
  const { page, errors } = await openNetwork(netHash({ data: 'moons', hidden: '8,8,8,8,8,8' }));
  await clickMap(page, [150, 150]);
  await page.waitForFunction(() => document.body.dataset.netPoint === 'refused', null, { timeout: 60000 });
  assert.match(await page.textContent('#net-message'),
      /^error: net_point: one point's pass through this 2,8,8,8,8,8,8,1 network has \d+ nodes .* past the graph lab's drawing budget/);
  assert.ok(await page.isVisible('#network-lab'));
  assert.deepEqual(errors, []);
  await page.close();
});

test('the network lab: the download is the model as safetensors, with PyTorch\'s names', async () => {
  const { page, errors } = await openNetwork(netHash({ data: 'circles', hidden: '4,3', act: 'tanh' }));
  await page.click('#net-step');
  await page.waitForFunction(() => document.body.dataset.netEpoch === '1');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#net-download')]);
  assert.equal(download.suggestedFilename(), 'tapegrad-circles-epoch-1.safetensors');
  const bytes = fs.readFileSync(await download.path());
  // The safetensors layout: an 8-byte little-endian header length, the JSON header, the data.
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'));
  const shapes = Object.fromEntries(Object.entries(header).filter(([name]) => name !== '__metadata__')
      .map(([name, t]) => [name, t.shape]));
  assert.deepEqual(shapes, { 'layers.0.weight': [4, 2], 'layers.0.bias': [4], 'layers.2.weight': [3, 4],
    'layers.2.bias': [3], 'layers.4.weight': [1, 3], 'layers.4.bias': [1] });
  assert.ok(Object.values(header).every((t) => t.dtype === undefined || t.dtype === 'F32'));
  const end = Math.max(...Object.values(header).filter((t) => t.data_offsets).map((t) => t.data_offsets[1]));
  assert.equal(bytes.length, 8 + length + end);
  assert.equal(header.__metadata__['data.name'], 'circles');
  assert.deepEqual(errors, []);
});

test('the network lab\'s regression: the problem menu switches the sets, and plane trains to a low test loss', async () => {
  const { page, errors } = await openNetwork(netHash({ hidden: '4,2', act: 'tanh', lr: 0.03 }));
  const shownSets = () => page.$$eval('#net-sets button:not([hidden])', (bs) => bs.map((b) => b.dataset.set));
  assert.deepEqual(await shownSets(), ['circles', 'xor', 'gaussian', 'two-spirals', 'moons', 'spirals']);
  await page.selectOption('#net-problem', 'regression');
  await netSettled(page);
  await page.waitForFunction(() => document.body.dataset.netLayers === '2,4,2,1');
  // TF Playground's regression sets take the classification sets' place; plane is the first.
  assert.deepEqual(await shownSets(), ['plane', 'multi-gaussian']);
  assert.equal((await netControls(page)).data, 'plane');
  assert.match(page.url(), /net\.problem=regression/);
  assert.match(page.url(), /net\.data=plane/);
  assert.match(await page.textContent('#net-command'), /^tapegrad train --data plane .*--out none --loss mse/);
  assert.equal(await page.textContent('#net-score-name'), 'Test R\u00b2');
  assert.ok(!(await page.isVisible('#net-point-hint')));  // a regression's point is refused
  // Playground's mean-predictor loss here is about 0.24, the targets' variance: 0.02 is an R² of
  // about 0.92 (test R² 0.93 by epoch 20 natively).
  await page.click('#net-play');
  await page.waitForFunction(() => Number(document.body.dataset.netTestLoss) < 0.02, null, { timeout: 30000 });
  // A new learning rate is taken in place, as TF Playground's: the epoch goes on from where it was.
  await page.click('#net-play');  // Pause
  await page.waitForTimeout(200);
  const paused = Number(await dataset(page, 'netEpoch'));
  await page.selectOption('#net-lr', '0.01');
  await page.waitForFunction(() => /--lr 0\.01 /.test(document.getElementById('net-command').textContent));
  assert.equal(Number(await dataset(page, 'netEpoch')), paused);
  await page.click('#net-step');
  await page.waitForFunction((e) => document.body.dataset.netEpoch === String(e + 1), paused);
  assert.match(page.url(), /net\.lr=0\.01/);
  await page.screenshot({ path: path.join(outDir, 'playground-network-plane.png') });
  // The regularization rate starts again (TF Playground resets on it too).
  await page.selectOption('#net-reg', 'l2');
  await page.waitForFunction(() => document.body.dataset.netEpoch === '0');
  // A link keeps the problem type: it opens on the regression sets.
  const again = await openNetwork(new URL(page.url()).hash);
  assert.equal(await again.page.inputValue('#net-problem'), 'regression');
  assert.equal(await dataset(again.page, 'netLayers'), '2,4,2,1');
  assert.deepEqual(await again.page.$$eval('#net-sets button:not([hidden])', (bs) => bs.map((b) => b.dataset.set)),
      ['plane', 'multi-gaussian']);
  await again.page.click('#net-sets [data-set="multi-gaussian"]');
  await netSettled(again.page);
  assert.match(await again.page.textContent('#net-command'), /--data multi-gaussian/);
  await again.page.screenshot({ path: path.join(outDir, 'playground-network-multi-gaussian.png') });
  assert.deepEqual(errors, []);
  assert.deepEqual(again.errors, []);
  await again.page.close();
  await page.close();
});

test('tapegrad.train(config) returns the summary `tapegrad train --json` prints last', async () => {
  const { page, errors } = await open();
  const config = { data: 'moons', hidden: [8, 8], act: 'relu', lr: 0.03, epochs: 20, batch: 10,
    seed: 1, noise: 0.1, opt: 'sgd' };
  const args = Object.entries(config).flatMap(([k, v]) => [`--${k}`, Array.isArray(v) ? v.join(',') : String(v)]);
  const native = JSON.parse(run('train', ...args, '--json').trim().split('\n').at(-1));
  const shown = await page.evaluate((c) => window.tapegrad.train(c), config);
  // The same numbers to 1e-5 (float sums in another order: README.md, "The playground").
  for (const key of ['train_accuracy', 'test_accuracy', 'loss']) {
    assert.ok(Math.abs(shown[key] - native[key]) <= 1e-5, `${key}: ${shown[key]} vs ${native[key]}`);
  }
  const bad = await page.evaluate(() => window.tapegrad.train({ data: 'no such set' })
      .then(() => 'no error', (e) => e.message));
  assert.match(bad, /^error: .*no such set/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the network lab\'s lecture presets: the 11-layer deep XOR nets, zero initialisation', async () => {
  const { page, errors } = await openNetwork(netHash({}));
  const choose = async (label) => {
    await page.selectOption('#net-preset', { label });
    await netSettled(page);
  };
  await choose('Deep XOR, 11 layers of sigmoid: the gradient vanishes');
  assert.equal(await dataset(page, 'netLayers'), ['2', ...Array(10).fill('8'), '1'].join(','));
  assert.match(page.url(), /net\.hidden=8%2C8%2C8%2C8%2C8%2C8%2C8%2C8%2C8%2C8&net\.act=sigmoid/);
  assert.equal(await page.locator('#net-health tr').count(), 12);  // a heading and 11 layers
  await page.click('#net-step');
  await page.waitForFunction(() => document.body.dataset.netEpoch === '1');
  await page.screenshot({ path: path.join(outDir, 'playground-network-deep-sigmoid.png') });
  await choose('Zero initialisation: every unit of a layer the same');
  assert.equal(await page.inputValue('#net-init'), 'zeros');
  assert.match(await page.textContent('#net-command'), /--init zeros/);
  assert.deepEqual(errors, []);
  await page.close();
});
