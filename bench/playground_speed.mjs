// The playground's module against the native command on the workload (moons 2-8-8-1,
// batches of 10: issue 14, item 7): the same config, alternated round by round, fit's own seconds.
// Usage: node bench/playground_speed.mjs PATH/TO/tapegrad MODULE.js [MODULE.js...] [--rounds N]
//        [--epochs N]
// Each module is a build of playground/tapegrad-module.js (say, with and without -msimd128): all
// run in one process, so their figures are side by side with the same load. Two ratios: fit's own
// wall-clock seconds, as the netlab_module test reports them, and the CPU time each run took
// (the native process's from /usr/bin/time, the module's from process.cpuUsage: both include
// making the data and the model), which a machine shared by other work disturbs far less.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
function option(name, fallback) {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args.splice(at, 2)[1]) : fallback;
}
const rounds = option('--rounds', 5);
const epochs = option('--epochs', 200);
const [tapegrad, ...modulePaths] = args.map((p) => path.resolve(p));
if (!tapegrad || modulePaths.length === 0 || !(rounds >= 1) || !(epochs >= 1)) {
  console.error('usage: node playground_speed.mjs PATH/TO/tapegrad MODULE.js... [--rounds N] ' +
                '[--epochs N]');
  process.exit(2);
}

// The netlab_module test's speed config: epochs of 30 steps (moons' 300 training rows in batches
// of 10), 200 of them unless --epochs says otherwise.
const config = { data: 'moons', hidden: [8, 8], act: 'relu', loss: 'bce_logits', batch: 10,
                 epochs, lr: 0.03, seed: 1 };
const steps = epochs * 30;
const nativeArgs = ['train', '--data', 'moons', '--hidden', '8,8', '--act', 'relu', '--loss',
                    'bce_logits', '--batch', '10', '--epochs', String(epochs), '--lr', '0.03',
                    '--seed', '1', '--json'];

// Each run as [fit's seconds, CPU seconds].
function nativeRun() {
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', tapegrad, ...nativeArgs],
                      { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${tapegrad} failed: ${r.stderr}`);
  const [user, system] = r.stderr.trim().split('\n').pop().split(' ').map(Number);
  return [JSON.parse(r.stdout.trim().split('\n').pop()).seconds, user + system];
}

const require = createRequire(import.meta.url);
const engines = [];
for (const modulePath of modulePaths) engines.push(await require(modulePath)());
function moduleRun(engine) {
  const cpu = process.cpuUsage();
  const { seconds } = JSON.parse(engine.train(JSON.stringify(config)));
  const used = process.cpuUsage(cpu);
  return [seconds, (used.user + used.system) / 1e6];
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const native = [];
const modules = engines.map(() => []);
engines.forEach(moduleRun);  // one warm-up run each, not counted (V8 tiers the wasm up)
for (let round = 0; round < rounds; ++round) {
  native.push(nativeRun());
  engines.forEach((engine, i) => modules[i].push(moduleRun(engine)));
}
const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(`${rounds} rounds of ${epochs} epochs, load average ${load} (1, 5, 15 min), ` +
            `node ${process.version}`);
const line = (name, runs, ratios) => {
  const range = (xs) => `${Math.min(...xs).toFixed(3)} to ${Math.max(...xs).toFixed(3)}`;
  const rate = (k) => String(Math.round(steps / median(runs.map((r) => r[k])))).padStart(6);
  let text = `${name.padEnd(24)} ${rate(0)} steps/s wall, ${rate(1)} per CPU second`;
  if (ratios) {
    text += `; to native: ${median(ratios.map((r) => r[0])).toFixed(3)} wall ` +
            `(${range(ratios.map((r) => r[0]))}), ${median(ratios.map((r) => r[1])).toFixed(3)} ` +
            `CPU (${range(ratios.map((r) => r[1]))})`;
  }
  console.log(text);
};
line('native', native);
modulePaths.forEach((p, i) => {
  // Each round's ratio: the module's steps per second over the native command's.
  const ratios = modules[i].map(([wall, cpu], r) => [native[r][0] / wall, native[r][1] / cpu]);
  line(path.basename(p), modules[i], ratios);
});
