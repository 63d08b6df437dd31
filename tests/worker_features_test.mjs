// The playground's worker (playground/worker.js) in a browser without WebAssembly SIMD or
// exception handling: it does not start the module, and every request is answered with a message
// naming what is missing (Note [What the module needs of the browser]). Run by node in a vm
// context whose WebAssembly.validate refuses the feature; the real validate must accept both
// probe modules, or every browser would be told it lacks them.
// Usage: node worker_features_test.mjs PATH/TO/playground/worker.js
import assert from 'node:assert/strict';
import fs from 'node:fs';
import vm from 'node:vm';

const source = fs.readFileSync(process.argv[2], 'utf8');

// The worker's script run with a fake module and Graphviz; `refuses(bytes)` says which probe
// modules this browser's WebAssembly.validate turns down. Returns the reply to one request and
// whether the module was started.
async function runWorker(refuses) {
  let started = false;
  const replies = [];
  const self = { postMessage: (message) => replies.push(message) };
  const context = vm.createContext({
    self,
    performance,
    WebAssembly: { validate: (bytes) => WebAssembly.validate(bytes) && !refuses(bytes) },
    createTapegrad: async () => {
      started = true;
      return { inputs: () => JSON.stringify({ inputs: [] }),
               analyse: () => JSON.stringify({ error: 'error: no graph in this fake' }) };
    },
    Viz: { instance: async () => ({}) },
  });
  vm.runInContext(source, context);
  await self.onmessage({ data: { id: 7, kind: 'edit', program: 'f = 1', assignments: {} } });
  assert.equal(replies.length, 1);
  assert.equal(replies[0].id, 7);
  return { reply: replies[0].reply, started };
}

// SIMD's probe holds the SIMD prefix 0xfd; exception handling's holds `try` (0x06 0x40).
const hasSimd = (bytes) => bytes.includes(0xfd);
const hasTry = (bytes) => bytes.some((b, i) => b === 0x06 && bytes[i + 1] === 0x40);

const everything = await runWorker(() => false);
assert.ok(everything.started);
assert.equal(everything.reply.error, 'error: no graph in this fake');  // the module answered

const noSimd = await runWorker(hasSimd);
assert.ok(!noSimd.started);
assert.equal(noSimd.reply.error,
             "error: the engine cannot start: this browser's WebAssembly has no SIMD (Chrome 91, " +
             'Firefox 89, Safari 16.4 and later have it): open the page in a newer browser');

const noTry = await runWorker(hasTry);
assert.ok(!noTry.started);
assert.match(noTry.reply.error, /has no exception handling \(Chrome 95, Firefox 100, Safari 15\.2/);

const neither = await runWorker((bytes) => hasSimd(bytes) || hasTry(bytes));
assert.ok(!neither.started);
assert.match(neither.reply.error, /has no SIMD \(.*\) and no exception handling \(/);
console.log('worker feature checks: ok');
