// The playground's module against the native command on the workload (moons 2-8-8-1,
// batches of 10: issue 14, item 7): the same config, alternated round by round, fit's own seconds.
// Usage: node bench/playground_speed.mjs PATH/TO/tapegrad MODULE.js [MODULE.js...] [--rounds N]
// Each module is a build of playground/tapegrad-module.js (say, with and without -msimd128): all
// run in one process, so their figures are side by side with the same load (bench/README.md).
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
let rounds = 5;
const roundsAt = args.indexOf('--rounds');
if (roundsAt >= 0) rounds = Number(args.splice(roundsAt, 2)[1]);
const [tapegrad, ...modulePaths] = args.map((p) => path.resolve(p));
if (!tapegrad || modulePaths.length === 0 || !(rounds >= 1)) {
  console.error('usage: node playground_speed.mjs PATH/TO/tapegrad MODULE.js... [--rounds N]');
  process.exit(2);
}

// The netlab_module test's speed config: 200 epochs of 30 steps (moons' 300 training rows in
// batches of 10).
const config = { data: 'moons', hidden: [8, 8], act: 'relu', loss: 'bce_logits', batch: 10,
                 epochs: 200, lr: 0.03, seed: 1 };
const steps = 200 * 30;
const nativeArgs = ['train', '--data', 'moons', '--hidden', '8,8', '--act', 'relu', '--loss',
                    'bce_logits', '--batch', '10', '--epochs', '200', '--lr', '0.03', '--seed',
                    '1', '--json'];

function nativeSeconds() {
  const out = execFileSync(tapegrad, nativeArgs, { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()).seconds;
}

const require = createRequire(import.meta.url);
const engines = [];
for (const modulePath of modulePaths) engines.push(await require(modulePath)());
const moduleSeconds = (engine) => JSON.parse(engine.train(JSON.stringify(config))).seconds;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const native = [];
const modules = engines.map(() => []);
moduleSeconds(engines[0]);  // one warm-up run each, not counted (V8 tiers the wasm up)
engines.slice(1).forEach(moduleSeconds);
for (let round = 0; round < rounds; ++round) {
  native.push(nativeSeconds());
  engines.forEach((engine, i) => modules[i].push(moduleSeconds(engine)));
}
const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(`${rounds} rounds, load average ${load} (1, 5, 15 min), node ${process.version}`);
console.log(`native            ${Math.round(steps / median(native))} steps/s (median)`);
modulePaths.forEach((p, i) => {
  const ratios = modules[i].map((s, r) => native[r] / s);
  console.log(`${path.relative(process.cwd(), p).padEnd(17)} ${Math.round(steps / median(modules[i]))} ` +
              `steps/s, ${median(ratios).toFixed(3)}x native (median of the rounds' ratios; ` +
              `${Math.min(...ratios).toFixed(3)} to ${Math.max(...ratios).toFixed(3)})`);
});
