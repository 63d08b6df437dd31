// The playground's worker: the tapegrad module (bindings.cpp) and Graphviz (viz-global.js)
// run here, off the page's thread, so that a large program or a slow layout never freezes it.
// Messages: {id, kind, program, assignments} in, {id, reply, engineMs, layoutMs} out (Note [The playground's
// JSON], bindings.cpp); kind is inputs, grad, step or analyse. analyse's reply carries the
// graph drawn as SVG by Graphviz from the graph model, in place of the model.
'use strict';

const engineReady = Promise.all([createTapegrad(), Viz.instance()]);
const kinds = new Set(['inputs', 'grad', 'step', 'analyse']);

self.onmessage = async (event) => {
  const { id, kind, program, assignments } = event.data;
  let reply;
  let engineMs = 0;
  let layoutMs = 0;
  try {
    if (!kinds.has(kind)) throw new Error(`unknown request ${kind}`);
    const [engine, viz] = await engineReady;
    const started = performance.now();
    reply = JSON.parse(engine[kind](program, assignments));
    engineMs = performance.now() - started;
    if (kind === 'analyse' && !reply.error) {
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
