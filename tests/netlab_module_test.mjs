// The network lab's engine in the playground's WebAssembly module, run by node against the
// native command: train(config) returns `tapegrad train --json`'s summary for the same options,
// a bad config gets the command line's own message, and net_create/net_train/net_snapshot train
// the same run in slices. Also measures steps per second of moons 2-8-8-1 (issue 14, item 7).
// Usage: node netlab_module_test.mjs PATH/TO/tapegrad PATH/TO/tapegrad-module.js OUT_DIR
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const [tapegrad, modulePath, outDir] = process.argv.slice(2).map((p) => path.resolve(p));
if (!fs.existsSync(modulePath)) {
  console.error(`${modulePath} is missing: build the playground first (meson setup build-wasm ` +
                '--cross-file playground/emscripten.ini && meson compile -C build-wasm)');
  process.exit(1);
}
const createTapegrad = createRequire(import.meta.url)(modulePath);
const engine = await createTapegrad();

// A config as the command line's options: the same long names (Note in network_lab.hpp).
function argsOf(config) {
  const args = ['train'];
  for (const [key, value] of Object.entries(config)) {
    const text = Array.isArray(value) ? (value.length ? value.join(',') : 'none') : String(value);
    args.push('--' + key.replaceAll('_', '-'), text);
  }
  return args;
}

function nativeSummary(config) {
  const out = execFileSync(tapegrad, [...argsOf(config), '--json'], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop());
}

function moduleCall(name, ...args) {
  return JSON.parse(engine[name](...args));
}

// Every key but seconds agrees to 1e-5; the figures say whether to the last digit.
let exact = 0, compared = 0;
function assertSame(wasm, native, what) {
  assert.deepEqual(Object.keys(wasm), Object.keys(native), what);
  for (const key of Object.keys(native)) {
    if (key === 'seconds') continue;
    const a = [wasm[key]].flat(), b = [native[key]].flat();
    assert.equal(a.length, b.length, `${what}: ${key}`);
    a.forEach((x, i) => {
      assert.ok(Math.abs(x - b[i]) <= 1e-5, `${what}: ${key}[${i}] ${x} vs ${b[i]}`);
      ++compared;
      exact += x === b[i];
    });
  }
}

const configs = {
  'moons relu 8,8': { data: 'moons', hidden: [8, 8], act: 'relu', lr: 0.03, epochs: 30,
                      batch: 10, seed: 1, noise: 0.1 },
  'circles tanh with features': { data: 'circles', hidden: [4], act: 'tanh', epochs: 20, seed: 2,
                                  features: ['x1', 'x2', 'x1^2', 'x2^2'], test_fraction: 0.3 },
  'xor sigmoid': { data: 'xor', hidden: [4], act: 'sigmoid', n: 200, noise: 0.1, epochs: 30,
                   seed: 3, opt: 'sgd', lr: 0.5, l1: 0.001, l2: 0.001 },
  'gaussian linear': { data: 'gaussian', hidden: [], act: 'none', epochs: 5, seed: 4,
                       loss: 'bce_logits', noise: 0.3 },
  // A regression (TF Playground's plane, MSE on a linear output: r2 and rmse in the summary),
  // TF's noise control in percent and TF's two-arm spiral.
  'plane regression': { data: 'plane', task: 'regression', hidden: [4], act: 'tanh', opt: 'sgd',
                        lr: 0.03, epochs: 20, batch: 10, seed: 1, noise_percent: 10 },
  'multi-gaussian relu': { data: 'multi-gaussian', hidden: [8, 8], act: 'relu', epochs: 10,
                           seed: 2 },
  'two-spirals noise 20%': { data: 'two-spirals', hidden: [8], epochs: 5, seed: 3,
                             noise_percent: 20, loss: 'bce_logits' },
};
for (const [name, config] of Object.entries(configs))
  assertSame(moduleCall('train', JSON.stringify(config)), nativeSummary(config), name);

// A bad config: the message the command line prints on stderr.
for (const config of [{ data: 'moons', lr: -1 }, { data: 'moons', batch: 0 },
                      { data: 'spirals', n: 100 }, { data: 'moons', act: 'swish' }]) {
  const r = spawnSync(tapegrad, argsOf(config), { encoding: 'utf8' });
  assert.equal(r.status, 2, JSON.stringify(config));
  assert.deepEqual(moduleCall('train', JSON.stringify(config)), { error: r.stderr.trim() });
  assert.deepEqual(moduleCall('net_create', JSON.stringify(config)), { error: r.stderr.trim() });
}
assert.match(moduleCall('train', '{"data": "moons", "speed": 1}').error,
             /^error: config: unknown key "speed"/);

// A session: no network before net_create; slices of epochs train `train`'s run.
assert.deepEqual(moduleCall('net_snapshot'),
                 { error: 'error: net_snapshot: no network yet: call net_create(config) first' });
const moons = configs['moons relu 8,8'];
const created = moduleCall('net_create', JSON.stringify(moons));
assert.deepEqual(created.layers, [2, 8, 8, 2]);
assert.equal(created.train.length + created.test.length, 400);
assert.equal(created.output_map.length, created.map_size ** 2);
moduleCall('net_train', 10);
const snapshot = moduleCall('net_train', 20);
assert.equal(snapshot.epoch, 30);
const summary = nativeSummary(moons);
assert.equal(snapshot.train_accuracy, summary.train_accuracy);
assert.equal(snapshot.test_accuracy, summary.test_accuracy);
assert.deepEqual(snapshot.dead_fraction, summary.dead_fraction);
assert.deepEqual(moduleCall('net_snapshot').weights, snapshot.weights);
assert.match(snapshot.command, /^tapegrad train --data moons --hidden 8,8 .*--epochs 30 /);

// A regression session: the summary's r2 and rmse are its snapshot's test_r2 and test_rmse, its
// points carry their targets and its output map the predicted value.
const plane = configs['plane regression'];
const planeCreated = moduleCall('net_create', JSON.stringify(plane));
assert.equal(planeCreated.task, 'regression');
assert.deepEqual(planeCreated.layers, [2, 4, 1]);
assert.equal(planeCreated.test_accuracy, null);
assert.ok(planeCreated.train.some(([, , target]) => !Number.isInteger(target)));
const planeSnapshot = moduleCall('net_train', 20);
const planeSummary = nativeSummary(plane);
assert.ok(Math.abs(planeSnapshot.test_r2 - planeSummary.r2) <= 1e-5);
assert.ok(Math.abs(planeSnapshot.test_rmse - planeSummary.rmse) <= 1e-5);
assert.ok(planeSnapshot.output_map.some((v) => v < 0));  // a value, not a probability
assert.match(planeSnapshot.command, /--data plane .*--noise 0\.1( |$)/);

// The learning rate changed in place: a session that changes it before its first epoch trains
// `train`'s run at the new rate; midway, the epoch stays.
const rated = moduleCall('net_create', JSON.stringify(moons));
assert.deepEqual(moduleCall('net_set_rates', '{"lr": 0.1}'),
                 { lr: 0.1, l1: 0, l2: 0, command: rated.command.replace('--lr 0.03', '--lr 0.1') });
const ratedSnapshot = moduleCall('net_train', 30);
const ratedSummary = nativeSummary({ ...moons, lr: 0.1 });
assert.equal(ratedSnapshot.test_accuracy, ratedSummary.test_accuracy);
assert.deepEqual(moduleCall('net_set_rates', '{"lr": -1}'),
                 { error: 'error: --lr -1: the learning rate must be a positive number' });
assert.equal(moduleCall('net_snapshot').epoch, 30);

// The command a session shows is the run: pasted into a shell (single quotes are its only
// quoting), it trains to the numbers `train` gives for the same config.
for (const name of ['circles tanh with features', 'xor sigmoid']) {
  const { command } = moduleCall('net_create', JSON.stringify(configs[name]));
  const words = command.match(/'[^']*'|[^\s']+/g).map((w) => w.replaceAll("'", ''));
  assert.equal(words.shift(), 'tapegrad', command);
  assert.ok(!/[*?[]/.test(command.replace(/'[^']*'/g, '')), `unquoted glob in ${command}`);
  const out = execFileSync(tapegrad, [...words, '--json'], { encoding: 'utf8' });
  assertSame(moduleCall('train', JSON.stringify(configs[name])),
             JSON.parse(out.trim().split('\n').pop()), `${name}: ${command}`);
}

// A point's pass (net_point): the graph lab's object, its gradients those of the point's loss.
{
  moduleCall('net_create', JSON.stringify({ ...moons, loss: 'bce_logits' }));
  moduleCall('net_train', 3);
  const point = moduleCall('net_point', 0.5, 0.25);
  assert.deepEqual(point.point, { x1: 0.5, x2: 0.25, label: point.point.label, label_from: 'prediction',
                                  loss: 'bce_logits', epoch: 3 });
  assert.equal(point.label, 'L');
  assert.equal(point.inputs.length, 2 + 24 + 72 + 9);
  assert.ok(point.plan.steps.length > 0 && !point.plan.refused);
  for (const name of point.inputs) {  // each gradient beside its central difference
    assert.ok(Math.abs(point.result.grad[name] - point.fd[name]) <= 1e-6 * Math.max(1, Math.abs(point.fd[name])),
              `${name}: ${point.result.grad[name]} vs ${point.fd[name]}`);
  }
  assert.match(moduleCall('net_point', NaN, 0).error, /^error: net_point nan, 0: /);
}

// The download (net_safetensors_base64): a checkpoint the native command reads, holding the
// session's weights.
{
  const snapshot = moduleCall('net_snapshot');
  const file = path.join(outDir, 'netlab-download.safetensors');
  fs.writeFileSync(file, Buffer.from(engine.net_safetensors_base64(), 'base64'));
  assert.match(execFileSync(tapegrad, ['graph', file], { encoding: 'utf8' }), /^digraph/);
  const bytes = fs.readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'));
  const [begin, end] = header['layers.2.weight'].data_offsets;
  const stored = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 8 + length + begin,
                                                     bytes.byteOffset + 8 + length + end));
  assert.deepEqual(Array.from(stored), snapshot.weights[1].flat());
}

// Speed: moons 2-8-8-1 in batches of 10, 200 epochs of 30 steps, fit's own seconds in both,
// alternated for a fixed number of rounds after one untimed module run (V8 compiles hot wasm
// functions again, optimized, after their first calls); the figures are the medians, with the
// load they were measured at (bench/playground_speed.mjs takes more rounds and other modules).
const bench = { data: 'moons', hidden: [8, 8], act: 'relu', loss: 'bce_logits', batch: 10,
                epochs: 200, lr: 0.03, seed: 1 };
const steps = 200 * 30;
const rounds = 3;
moduleCall('train', JSON.stringify(bench));
const wasmSeconds = [], nativeSeconds = [];
for (let round = 0; round < rounds; ++round) {
  wasmSeconds.push(moduleCall('train', JSON.stringify(bench)).seconds);
  nativeSeconds.push(nativeSummary(bench).seconds);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const figures = {
  compared_numbers: compared,
  exactly_equal: exact,
  rounds,
  module_steps_per_second: Math.round(steps / median(wasmSeconds)),
  native_steps_per_second: Math.round(steps / median(nativeSeconds)),
  module_to_native: +median(wasmSeconds.map((s, i) => nativeSeconds[i] / s)).toFixed(3),
  load_average: os.loadavg().map((x) => +x.toFixed(2)),
};
fs.writeFileSync(path.join(outDir, 'netlab-figures.json'), JSON.stringify(figures, null, 2));
console.log(JSON.stringify(figures));
