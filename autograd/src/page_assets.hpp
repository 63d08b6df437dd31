// The step-through page's HTML, stylesheet and script (page.cpp fills in the rest). Hand-written
// and self-contained: no library, no font or file from elsewhere, so the page works from file://.

#pragma once

namespace ag {

// {{name}} is filled in by page.cpp: the title (escaped), the lecture's colours, the stylesheet,
// the graph's SVG, the steps as JSON and the script.
inline constexpr const char* kPageHtml = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tapegrad">
<title>{{title}}</title>
<style>
:root { --value: {{value}}; --grad: {{grad}}; --step: {{step}}; --step-fill: {{step_fill}}; --step-pen: {{step_pen}}px; }
{{style}}</style>
</head>
<body>
<header>
  <h1 id="title" title="{{title}}">{{title}}</h1>
  <div class="controls">
    <button id="reset" type="button" title="Back to the start (Home)">&#x21BA; Reset</button>
    <button id="back" type="button" title="One step back (&#x2190;)">&#x25C0; Back</button>
    <button id="play" type="button" title="Play or pause (space)" aria-pressed="false">&#x25B6; Play</button>
    <button id="next" type="button" class="primary" title="One step on (&#x2192;)">Next &#x25B6;</button>
    <span id="counter" aria-live="polite"></span>
  </div>
</header>
<main>
  <section id="graph" aria-label="computation graph">
{{svg}}  </section>
  <div id="zoom" role="group" aria-label="zoom">
    <button id="zoom-out" type="button" title="Smaller (-)">&#x2212;</button>
    <button id="zoom-fit" type="button" title="The whole graph in view (0)">fit</button>
    <button id="zoom-in" type="button" title="Larger (+)">+</button>
  </div>
  <aside id="panel">
    <div id="phase"></div>
    <div id="now" aria-live="polite"></div>
    <p class="legend">On each edge: its <span class="value">value</span> from the forward pass
      over the <span class="grad">gradient</span> that flowed back along it; the
      <span class="step">current step</span> is highlighted. At a fork the gradients add up
      (<code>+=</code>).</p>
    <div id="log" aria-label="every step so far, as tapegrad step prints it"></div>
    <p class="keys"><kbd>&#x2192;</kbd> next &#xB7; <kbd>&#x2190;</kbd> back &#xB7;
      <kbd>space</kbd> play/pause &#xB7; <kbd>Home</kbd> reset &#xB7; <kbd>+</kbd> <kbd>-</kbd>
      <kbd>0</kbd> zoom</p>
  </aside>
</main>
<script type="application/json" id="page-data">{{data}}</script>
<script>
{{script}}</script>
</body>
</html>
)html";

// The look: the lecture graph's colours (set in :root by kPageHtml) for values, gradients and the
// current step; the graph on white, the chain rule beside it in a monospace font.
inline constexpr const char* kPageStyle = R"css(
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body {
  display: flex; flex-direction: column;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1d232b; background: #f4f5f7;
}
code, kbd, #now, #log, h1 { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
header {
  display: flex; flex-wrap: wrap; align-items: center; gap: 10px 24px;
  padding: 10px 20px; background: #fff; border-bottom: 1px solid #dde1e6;
}
h1 {
  flex: 1 1 24em; min-width: 0; margin: 0; font-size: 16px; font-weight: 600;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
.controls { display: flex; align-items: center; gap: 6px; }
button {
  font: inherit; font-size: 14px; padding: 5px 12px; min-width: 6.2em;
  color: #1d232b; background: #fff; border: 1px solid #c4cad2; border-radius: 6px; cursor: pointer;
}
button:hover:enabled { background: #eef1f5; }
button:focus-visible { outline: 2px solid #2458a6; outline-offset: 1px; }
button:disabled { opacity: 0.45; cursor: default; }
button.primary { color: #fff; background: #2458a6; border-color: #2458a6; }
button.primary:hover:enabled { background: #1d4a8c; }
#counter { min-width: 8.5em; text-align: right; color: #56606b; font-variant-numeric: tabular-nums; }
main { flex: 1; display: flex; min-height: 0; position: relative; }
#graph { flex: 1; min-width: 0; overflow: auto; padding: 24px; display: flex; background: #fff; }
#graph svg { flex: none; margin: auto; }  /* centred while it fits, scrollable when not */
#zoom { position: absolute; left: 12px; bottom: 12px; display: flex; gap: 4px; }
#zoom button { min-width: 2.4em; padding: 3px 8px; background: rgba(255, 255, 255, 0.9); }
#panel {
  flex: none; width: 430px; display: flex; flex-direction: column; min-height: 0;
  padding: 16px 18px 10px; gap: 10px; border-left: 1px solid #dde1e6; background: #f8f9fa;
}
#phase { font-size: 12px; letter-spacing: 0.08em; text-transform: uppercase; color: #56606b; }
#now {
  min-height: 5.2em; padding: 12px 14px; font-size: 15px; white-space: pre-wrap;
  overflow-wrap: anywhere; background: #fff; border: 1px solid #dde1e6;
  border-left: 5px solid #b8bec6; border-radius: 6px;
}
#now.forward { border-left-color: var(--value); }
#now.backward { border-left-color: var(--grad); }
#now .heading { margin-bottom: 4px; font-size: 13px; color: #56606b; }
#now .hint { font-family: system-ui, sans-serif; color: #56606b; }
.legend, .keys { margin: 0; font-size: 13px; color: #56606b; }
.legend .value { color: var(--value); font-weight: 600; }
.legend .grad { color: var(--grad); font-weight: 600; }
.legend .step { color: var(--step); font-weight: 600; }
kbd {
  padding: 0 5px; font-size: 12px; background: #fff; border: 1px solid #c4cad2;
  border-bottom-width: 2px; border-radius: 4px;
}
#log {
  flex: 1; min-height: 6em; overflow: auto; padding: 8px 10px; font-size: 12.5px;
  white-space: pre-wrap; overflow-wrap: anywhere; background: #fff;
  border: 1px solid #e1e4e8; border-radius: 6px;
}
#log .section { margin-top: 4px; font-weight: 600; }
#log .block { margin-left: 1.2em; padding: 0 6px; border-radius: 4px; }
#log .block .line { padding-left: 1.6em; text-indent: -1.6em; }
#log .block.backward .line { margin-left: 1.6em; }
#log .block.current { background: var(--step-fill); }
[hidden] { display: none !important; }

/* The graph: every value and gradient is in the SVG from the start (the layout never moves); a
   step only shows them, and highlights its node and the edges it writes. */
#graph g.edge text.value, #graph g.edge text.grad { visibility: hidden; opacity: 0; }
#graph g.edge.has-value text.value, #graph g.edge.has-grad text.grad {
  visibility: visible; opacity: 1; transition: opacity 0.3s;
}
#graph g.edge.current text { font-weight: bold; }
#graph g.node.current ellipse, #graph g.node.current polygon {
  stroke: var(--step); stroke-width: var(--step-pen); fill: var(--step-fill);
}
#graph g.edge.current path { stroke: var(--step); stroke-width: var(--step-pen); }
#graph g.edge.current polygon { stroke: var(--step); fill: var(--step); }

@media (max-width: 1500px) { #panel { width: 360px; } }  /* more room for a wide graph */
@media (max-width: 900px) {
  main { flex-direction: column; }
  #panel { width: auto; border-left: 0; border-top: 1px solid #dde1e6; }
}
)css";

// Reads the steps (Note [The step-through page]) and shows step `at`: state is a function of the
// step alone, recomputed from the start each time, so Back is as exact as Next.
inline constexpr const char* kPageScript = R"js('use strict';
(function () {
  const data = JSON.parse(document.getElementById('page-data').textContent);
  const steps = data.steps;
  const forwardSteps = steps.filter(function (s) { return s.phase === 'forward'; }).length;
  const byId = function (id) { return document.getElementById(id); };
  const graph = byId('graph');
  const svg = graph.querySelector('svg');

  // Graphviz's tooltips would name the nodes n0, n1, ...: the page says what they are instead.
  svg.querySelectorAll('title').forEach(function (t) { t.remove(); });
  // An edge's label is its value in one colour over its gradient in another: classes by colour
  // let the stylesheet show one without the other.
  svg.querySelectorAll('g.edge text').forEach(function (t) {
    const fill = t.getAttribute('fill');
    if (fill === data.colours[0]) t.classList.add('value');
    else if (fill === data.colours[1]) t.classList.add('grad');
  });

  // Graphviz measures in points. The whole graph is drawn as large as fits, up to 2 CSS pixels a
  // point, and no smaller than half a pixel (an MLP at 1280x800 fits at about 0.7; a larger one
  // scrolls, and the current node is scrolled into view). The zoom buttons scale from there;
  // "fit" (or 0) goes back to following the window.
  const box = svg.viewBox.baseVal;
  let zoom = null;  // null: fit to the window
  function fitted() {
    const room = Math.min((graph.clientWidth - 48) / box.width, (graph.clientHeight - 48) / box.height);
    return Math.max(0.5, Math.min(2, room));
  }
  function draw() {
    const scale = zoom === null ? fitted() : zoom;
    svg.setAttribute('width', (box.width * scale).toFixed(1));
    svg.setAttribute('height', (box.height * scale).toFixed(1));
    document.body.dataset.zoom = scale.toFixed(3);
  }
  function rezoom(factor) {
    zoom = factor === null ? null : Math.max(0.25, Math.min(4, (zoom === null ? fitted() : zoom) * factor));
    draw();
  }
  window.addEventListener('resize', draw);
  draw();

  // Scrolls a large graph to centre `element` once it comes near an edge of the view.
  function reveal(element) {
    const view = graph.getBoundingClientRect();
    const r = element.getBoundingClientRect();
    const margin = 80;
    if (r.left >= view.left + margin && r.right <= view.right - margin &&
        r.top >= view.top + margin && r.bottom <= view.bottom - margin) return;
    graph.scrollBy((r.left + r.right - view.left - view.right) / 2,
                   (r.top + r.bottom - view.top - view.bottom) / 2);
  }

  function div(className, text) {
    const d = document.createElement('div');
    d.className = className;
    if (text !== undefined) d.textContent = text;
    return d;
  }

  // The transcript: what `tapegrad step` prints, revealed a step at a time.
  const log = byId('log');
  const blocks = [];
  const sections = [];
  steps.forEach(function (s, i) {
    if (i === 0 || steps[i - 1].phase !== s.phase) {
      const head = div('section', s.phase);
      head.dataset.from = i;
      sections.push(head);
      log.append(head);
    }
    const block = div('block ' + s.phase);
    if (s.heading) block.append(div('heading', s.heading));
    s.lines.forEach(function (line) { block.append(div('line', line)); });
    blocks.push(block);
    log.append(block);
  });
  const gradients = div('gradients');
  gradients.append(div('section', 'gradients'));
  const gradientLines = div('block');
  data.gradients.forEach(function (line) { gradientLines.append(div('line', line)); });
  gradients.append(gradientLines);
  log.append(gradients);

  let at = 0;
  let timer = null;

  function mark(id, className) {
    const element = id ? byId(id) : null;
    if (element) element.classList.add(className);
  }

  function show(i) {
    at = Math.max(0, Math.min(steps.length, i));
    ['has-value', 'has-grad', 'current'].forEach(function (c) {
      svg.querySelectorAll('.' + c).forEach(function (e) { e.classList.remove(c); });
    });
    data.known.forEach(function (id) { mark(id, 'has-value'); });
    for (let k = 0; k < at; ++k) {
      const c = steps[k].phase === 'forward' ? 'has-value' : 'has-grad';
      steps[k].shows.forEach(function (id) { mark(id, c); });
    }

    const now = byId('now');
    now.replaceChildren();
    if (at === 0) {
      now.className = '';
      now.append(div('hint', steps.length === 0
          ? 'Nothing to step through.'
          : 'Next (\u2192) runs the forward pass: the inputs, then one node at a time; then the ' +
            'backward pass applies the chain rule at each node, from the output back to the ' +
            'inputs.'));
      byId('phase').textContent = 'start';
    } else {
      const s = steps[at - 1];
      s.nodes.forEach(function (id) { mark(id, 'current'); });
      if (s.nodes.length === 1 && byId(s.nodes[0])) reveal(byId(s.nodes[0]));
      s.edges.forEach(function (id) { mark(id, 'current'); });
      now.className = s.phase;
      now.append(div('heading', s.heading || 'forward'));
      s.lines.forEach(function (line) { now.append(div('line', line)); });
      byId('phase').textContent = s.phase === 'forward'
          ? 'forward pass \u00b7 step ' + at + ' of ' + forwardSteps
          : 'backward pass \u00b7 step ' + (at - forwardSteps) + ' of ' + (steps.length - forwardSteps);
    }

    blocks.forEach(function (b, k) {
      b.hidden = k >= at;
      b.classList.toggle('current', k === at - 1);
    });
    sections.forEach(function (h) { h.hidden = Number(h.dataset.from) >= at; });
    gradients.hidden = at < steps.length || data.gradients.length === 0;
    const current = at > 0 ? blocks[at - 1] : null;
    if (at === steps.length) log.scrollTop = log.scrollHeight;
    else if (current) log.scrollTop = Math.max(0, current.offsetTop - log.offsetTop - log.clientHeight / 2);

    byId('counter').textContent = 'step ' + at + ' / ' + steps.length;
    document.body.dataset.step = at;
    byId('reset').disabled = at === 0;
    byId('back').disabled = at === 0;
    byId('next').disabled = at === steps.length;
  }

  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    byId('play').textContent = '\u25b6 Play';
    byId('play').setAttribute('aria-pressed', 'false');
  }
  function play() {
    if (at === steps.length) show(0);
    timer = setInterval(function () {
      show(at + 1);
      if (at === steps.length) stop();
    }, 1000);
    byId('play').textContent = '\u275a\u275a Pause';
    byId('play').setAttribute('aria-pressed', 'true');
  }
  const actions = {
    next: function () { stop(); show(at + 1); },
    back: function () { stop(); show(at - 1); },
    reset: function () { stop(); show(0); },
    end: function () { stop(); show(steps.length); },
    play: function () { if (timer === null && steps.length > 0) play(); else stop(); },
  };
  actions['zoom-in'] = function () { rezoom(1.25); };
  actions['zoom-out'] = function () { rezoom(0.8); };
  actions['zoom-fit'] = function () { rezoom(null); };
  ['next', 'back', 'reset', 'play', 'zoom-in', 'zoom-out', 'zoom-fit'].forEach(function (name) {
    byId(name).addEventListener('click', actions[name]);
  });
  const keys = { ArrowRight: 'next', ArrowLeft: 'back', ' ': 'play', Home: 'reset', End: 'end',
                 '+': 'zoom-in', '=': 'zoom-in', '-': 'zoom-out', '0': 'zoom-fit' };
  document.addEventListener('keydown', function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || !(e.key in keys)) return;
    e.preventDefault();  // no scrolling, and no click on a focused button as well
    actions[keys[e.key]]();
  });
  // A focused button would take the space's keyup as a click: the keydown above has acted.
  document.addEventListener('keyup', function (e) { if (e.key === ' ') e.preventDefault(); });

  show(0);
})();
)js";

}  // namespace ag
