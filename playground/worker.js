// The playground's worker: the tapegrad module (bindings.cpp) and Graphviz (viz-global.js)
// run here, off the page's thread, so that a large program or a slow layout never freezes it.
// Messages: {id, kind, ...} in, {id, reply, engineMs, layoutMs} out (Note [The playground's
// JSON], bindings.cpp). The graph lab's kinds (inputs, grad, step, analyse, edit) carry {program,
// assignments}; edit is the graph lab's: its assignments are the values the page knows by name
// ({x: -2}), an input without one gets 1, and the reply is analyse's with the values used, in one
// round trip. analyse's, edit's and net_point's replies carry the graph drawn as SVG by Graphviz
// from the graph model, in its place. The network lab's kinds are the engine's (README.md,
// "The network lab"): net_create {config}, net_train {epochs}, net_snapshot,
// net_point {x1, x2}, net_safetensors, train {config}, net_rates {rates}; and net_abilities, which says which of the
// module's network functions this build has, so the page offers only what the engine can do.
'use strict';

// Note [What the module needs of the browser]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The module is compiled with WebAssembly SIMD (-msimd128: the product loops in 4-wide vectors)
// and WebAssembly exception handling (-fwasm-exceptions: an ag::Error is caught without a call
// through JavaScript per function that may throw); both made training faster, figures in
// README.md. A browser without either cannot compile the module at all, so each is checked here
// with the smallest module that uses it, and every request is answered with a message that says
// which is missing, and from which versions the browsers have it, instead of a CompileError.
const wasmFeatures = [
  // (func (result v128) (i32x4.splat (i32.const 0)))
  ['SIMD', 'Chrome 91, Firefox 89, Safari 16.4', [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1,
    0x7b, 3, 2, 1, 0, 10, 8, 1, 6, 0, 0x41, 0, 0xfd, 0x11, 0x0b]],
  // (func (try (do) (catch_all)))
  ['exception handling', 'Chrome 95, Firefox 100, Safari 15.2', [0, 97, 115, 109, 1, 0, 0, 0, 1, 4,
    1, 0x60, 0, 0, 3, 2, 1, 0, 10, 8, 1, 6, 0, 6, 0x40, 0x19, 0x0b, 0x0b]],
];
const missingFeatures =
    wasmFeatures.filter(([, , bytes]) => !WebAssembly.validate(new Uint8Array(bytes)));
const missingText =
    missingFeatures.map(([name, since]) => `${name} (${since} and later have it)`).join(' and no ');
const engineReady = missingFeatures.length === 0
  ? Promise.all([createTapegrad(), Viz.instance()])
  : Promise.reject(new Error("the engine cannot start: this browser's WebAssembly has no " +
      `${missingText}: open the page in a newer browser`));
engineReady.catch(() => {});  // reported to each request, not as an unhandled rejection
const programKinds = new Set(['inputs', 'grad', 'step', 'analyse', 'edit']);
// Each network kind and the module function that answers it, with its arguments from the message.
const networkCalls = {
  net_create: (engine, m) => engine.net_create(JSON.stringify(m.config)),
  net_train: (engine, m) => engine.net_train(m.epochs),
  net_snapshot: (engine) => engine.net_snapshot(),
  net_point: (engine, m) => engine.net_point(m.x1, m.x2),
  // Base64 text, or the {"error": ...} object of bad input (which no base64 text starts with).
  net_safetensors: (engine) => {
    const text = engine.net_safetensors_base64();
    return text.startsWith('{') ? text : JSON.stringify({ base64: text });
  },
  train: (engine, m) => engine.train(JSON.stringify(m.config)),
  net_rates: (engine, m) => engine.net_set_rates(JSON.stringify(m.rates)),
};
const networkFunctions = {
  net_create: 'net_create', net_train: 'net_train', net_snapshot: 'net_snapshot',
  net_point: 'net_point', net_safetensors: 'net_safetensors_base64', train: 'train',
  net_rates: 'net_set_rates',
};

// The edit request: the program's inputs, then analyse with a value for each.
function edit(engine, program, known) {
  const found = JSON.parse(engine.inputs(program, ''));
  if (found.error) return found;
  const values = Object.fromEntries(found.inputs.map((name) => [name, name in known ? known[name] : 1]));
  const assignments = found.inputs.map((name) => `${name}=${String(values[name])}`).join('\n');
  return Object.assign(JSON.parse(engine.analyse(program, assignments)), { values });
}

function answer(engine, message) {
  const { kind, program, assignments } = message;
  if (kind === 'edit') return edit(engine, program, assignments);
  if (programKinds.has(kind)) return JSON.parse(engine[kind](program, assignments));
  if (kind === 'net_abilities') {
    return Object.fromEntries(Object.entries(networkFunctions)
        .map(([name, fn]) => [name, typeof engine[fn] === 'function']));
  }
  if (!(kind in networkCalls)) throw new Error(`unknown request ${kind}`);
  if (typeof engine[networkFunctions[kind]] !== 'function') {
    throw new Error(`this build of the engine has no ${networkFunctions[kind]}`);
  }
  return JSON.parse(networkCalls[kind](engine, message));
}

self.onmessage = async (event) => {
  const { id, kind } = event.data;
  let reply;
  let engineMs = 0;
  let layoutMs = 0;
  try {
    const [engine, viz] = await engineReady;
    const started = performance.now();
    reply = answer(engine, event.data);
    engineMs = performance.now() - started;
    if ((kind === 'analyse' || kind === 'edit' || kind === 'net_point') && !reply.error) {
      const layoutStarted = performance.now();
      const svg = viz.renderString(reply.graph, { format: 'svg' });
      reply.svg = svg.slice(svg.indexOf('<svg'));  // no XML prolog or doctype inside HTML
      layoutMs = performance.now() - layoutStarted;
      delete reply.graph;
    }
  } catch (e) {
    reply = { error: `error: ${e.message}` };
  }
  self.postMessage({ id, reply, engineMs, layoutMs });
};
