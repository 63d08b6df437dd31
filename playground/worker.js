// The playground's worker: the tapegrad module (bindings.cpp) and Graphviz (viz-global.js)
// run here, off the page's thread, so that a large program or a slow layout never freezes it.
// Messages: {id, kind, program, assignments} in, {id, reply, engineMs, layoutMs} out (Note [The
// playground's JSON], bindings.cpp); kind is inputs, grad, step, analyse or edit. edit is the
// graph lab's: its assignments are the values the page knows by name ({x: -2}), an input without
// one gets 1, and the reply is analyse's with the values used, in one round trip. analyse's and
// edit's replies carry the graph drawn as SVG by Graphviz from the graph model, in its place.
'use strict';

const engineReady = Promise.all([createTapegrad(), Viz.instance()]);
const kinds = new Set(['inputs', 'grad', 'step', 'analyse', 'edit']);

// The edit request: the program's inputs, then analyse with a value for each.
function edit(engine, program, known) {
  const found = JSON.parse(engine.inputs(program, ''));
  if (found.error) return found;
  const values = Object.fromEntries(found.inputs.map((name) => [name, name in known ? known[name] : 1]));
  const assignments = found.inputs.map((name) => `${name}=${String(values[name])}`).join('\n');
  return Object.assign(JSON.parse(engine.analyse(program, assignments)), { values });
}

self.onmessage = async (event) => {
  const { id, kind, program, assignments } = event.data;
  let reply;
  let engineMs = 0;
  let layoutMs = 0;
  try {
    if (!kinds.has(kind)) throw new Error(`unknown request ${kind}`);
    const [engine, viz] = await engineReady;
    const started = performance.now();
    reply = kind === 'edit' ? edit(engine, program, assignments)
                            : JSON.parse(engine[kind](program, assignments));
    engineMs = performance.now() - started;
    if ((kind === 'analyse' || kind === 'edit') && !reply.error) {
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
