// The playground page's script: the graph lab (an editor, a field and a slider per input, the
// live lecture graph, stepping, finite differences, presets, the URL's state) and the scripting
// API window.tapegrad. The engine and Graphviz run in a worker (worker.js), so the page never
// waits on them.
'use strict';
(function () {
  const byId = (id) => document.getElementById(id);

  // ---- the worker ------------------------------------------------------------------------------
  // Its sources are one base64 string in the page (Note [One file], assemble.py).
  const bytes = Uint8Array.from(atob(byId('worker-source').textContent.trim()), (c) => c.charCodeAt(0));
  const worker = new Worker(URL.createObjectURL(new Blob([bytes], { type: 'text/javascript' })));
  const waiting = new Map();  // request id -> resolve
  let nextId = 0;
  let lastTimes = { engineMs: 0, layoutMs: 0 };  // the worker's, for the status line and tests
  worker.onmessage = (event) => {
    lastTimes = { engineMs: event.data.engineMs, layoutMs: event.data.layoutMs };
    const resolve = waiting.get(event.data.id);
    waiting.delete(event.data.id);
    resolve(event.data.reply);
  };
  // A worker that cannot start (or dies) would leave the page waiting: say so instead.
  worker.onerror = (event) => {
    event.preventDefault();
    const error = byId('error');
    error.textContent = `error: the engine stopped: ${event.message}; reload the page`;
    error.hidden = false;
    setStatus('the engine stopped');
  };
  function request(kind, program, assignments) {
    return new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      worker.postMessage({ id, kind, program, assignments });
    });
  }

  // Inputs as the command line takes them: {x: -2, y: 5} (a number's shortest text reads back
  // as the same double) or ['x=-2', 'y=5'].
  function assignmentText(inputs) {
    if (Array.isArray(inputs)) return inputs.join('\n');
    return Object.entries(inputs || {}).map(([name, value]) => `${name}=${String(value)}`).join('\n');
  }
  function orThrow(reply) {
    if (reply.error) throw new Error(reply.error);
    return reply;
  }

  // ---- the scripting API (README.md: "The playground") -----------------------------------------
  window.tapegrad = {
    // The object `tapegrad grad --json PROGRAM NAME=VALUE...` prints: {value, grad: {x: ...}}.
    grad: async (program, inputs) => orThrow(await request('grad', program, assignmentText(inputs))),
    // The lines `tapegrad step PROGRAM NAME=VALUE...` prints.
    step: async (program, inputs) =>
      orThrow(await request('step', program, assignmentText(inputs))).lines,
  };

  // ---- presets -----------------------------------------------------------------------------------
  const presets = [
    { name: 'CS231n: the circuit f = (x + y) z', program: 'q = x + y\nf = q * z',
      values: { x: -2, y: 5, z: -4 } },
    { name: 'CS231n: a sigmoid neuron', program: 'f = sigmoid(w0*x0 + w1*x1 + w2)',
      values: { w0: 2, x0: -1, w1: -3, x1: -2, w2: -3 } },
    { name: "micrograd's README example",
      program: '# micrograd: c += c + 1 is written c = c + c + 1\nc = a + b\nd = a * b + b^3\n' +
          'c = c + c + 1\nc = c + 1 + c + (-a)\nd = d + d * 2 + relu(b + a)\n' +
          'd = d + 3 * d + relu(b - a)\ne = c - d\nf = e^2\ng = f / 2\ng = g + 10 / f',
      values: { a: -4, b: 2 } },
    { name: "The lecture's wx + b", program: 'y = w * x + b', values: { w: 2, x: -3, b: 4 } },
  ];
  const presetSelect = byId('preset');
  presets.forEach((p, i) => presetSelect.append(new Option(p.name, String(i))));

  // ---- state ----------------------------------------------------------------------------------
  const editor = byId('program');
  let values = {};    // every input's value by name, kept across edits that keep the name
  let names = [];     // the current program's inputs, in order
  let shown = null;   // the last good analysis
  let at = 0;         // the step shown: 0 before the first, steps.length after the last
  let timer = null;   // Play's
  let busy = false;   // a request is with the worker
  let again = false;  // an edit came while it was: run once more with the latest

  function setStatus(text) { byId('status').textContent = text; }

  // The URL's fragment holds the program and the inputs' values, so a link opens the same graph:
  // #program=...&in.x=-2&in.y=5
  function saveState() {
    const state = new URLSearchParams();
    state.set('program', editor.value);
    names.forEach((name) => state.set(`in.${name}`, String(values[name])));
    history.replaceState(null, '', `#${state.toString()}`);
  }
  function loadState() {
    const state = new URLSearchParams(location.hash.slice(1));
    if (!state.has('program')) return false;
    editor.value = state.get('program');
    for (const [key, value] of state) {
      if (key.startsWith('in.') && Number.isFinite(Number(value))) values[key.slice(3)] = Number(value);
    }
    return true;
  }

  // ---- inputs ---------------------------------------------------------------------------------
  // One row per input: its name, a field and a slider over a range around its value.
  function sliderRange(v) {
    const reach = Math.max(5, Math.ceil(Math.abs(v) * 2));
    return [-reach, reach];
  }
  function renderInputs() {
    const box = byId('inputs');
    if (box.dataset.names === names.join('\n')) {
      names.forEach((name, i) => {
        const field = box.children[i].querySelector('input[type="number"]');
        if (Number(field.value) !== values[name] && document.activeElement !== field) field.value = values[name];
      });
      return;
    }
    box.dataset.names = names.join('\n');
    box.replaceChildren();
    names.forEach((name) => {
      const row = document.createElement('div');
      row.className = 'input';
      const label = document.createElement('span');
      label.className = 'name';
      label.textContent = name;
      label.title = name;
      const field = document.createElement('input');
      field.type = 'number';
      field.step = 'any';
      field.value = values[name];
      field.setAttribute('aria-label', name);
      field.dataset.input = name;
      const slider = document.createElement('input');
      slider.type = 'range';
      slider.step = '0.1';
      [slider.min, slider.max] = sliderRange(values[name]);
      slider.value = values[name];
      slider.setAttribute('aria-label', `${name} (slider)`);
      field.addEventListener('input', () => {
        if (field.value === '' || !Number.isFinite(Number(field.value))) return;
        values[name] = Number(field.value);
        const [lo, hi] = sliderRange(values[name]);
        if (values[name] < Number(slider.min) || values[name] > Number(slider.max)) [slider.min, slider.max] = [lo, hi];
        slider.value = values[name];
        update();
      });
      slider.addEventListener('input', () => {
        values[name] = Number(slider.value);
        field.value = slider.value;
        update();
      });
      row.append(label, field, slider);
      box.append(row);
    });
  }

  // ---- one edit -----------------------------------------------------------------------------
  // The worker is asked for everything the lab shows, in one round trip (worker.js, edit). An
  // edit made meanwhile is not queued one by one: once the worker is free, the latest text runs.
  async function update() {
    document.body.dataset.idle = 'false';  // the tests wait for 'true'
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    const started = performance.now();
    const reply = await request('edit', editor.value, values);
    if (!reply.error) {
      names = reply.inputs;
      Object.assign(values, reply.values);
    }
    busy = false;
    if (again) {
      again = false;
      update();
      return;
    }
    if (reply.error) showError(reply.error);
    else showAnalysis(reply, performance.now() - started);
    document.body.dataset.idle = 'true';
  }

  function showError(message) {
    const error = byId('error');
    error.textContent = message;
    error.hidden = false;
    byId('graph').classList.add('stale');  // the last good graph stays, dimmed
    setStatus('the last good graph is shown');
  }

  function showAnalysis(reply, ms) {
    byId('error').hidden = true;
    byId('graph').classList.remove('stale');
    const warning = byId('warning');
    warning.textContent = reply.warning;
    warning.hidden = reply.warning === '';
    shown = reply;
    renderInputs();
    renderGradients();
    const graph = byId('graph');
    graph.innerHTML = reply.svg;
    const svg = graph.querySelector('svg');
    svg.querySelectorAll('title').forEach((t) => t.remove());  // they would say n0, n1, ...
    // Without a plan (Note [The step plan]: too large to step through) every label stays shown.
    if (!reply.plan.refused) svg.querySelectorAll('g.edge text').forEach((t) => {
      const fill = t.getAttribute('fill');
      if (fill === reply.plan.colours[0]) t.classList.add('value');
      else if (fill === reply.plan.colours[1]) t.classList.add('grad');
    });
    fit();
    buildLog();
    stop();
    show(reply.plan.steps.length);  // an edit shows the whole pass; Reset goes to its start
    saveState();
    if (!document.body.dataset.firstGraphMs) document.body.dataset.firstGraphMs = performance.now().toFixed(0);
    document.body.dataset.graphs = String(Number(document.body.dataset.graphs || 0) + 1);
    document.body.dataset.lastUpdateMs = ms.toFixed(1);
    document.body.dataset.engineMs = lastTimes.engineMs.toFixed(1);
    document.body.dataset.layoutMs = lastTimes.layoutMs.toFixed(1);
    setStatus(`${reply.nodes} nodes \u00b7 drawn in ${ms.toFixed(0)} ms`);
  }

  // Graphviz measures in points. The graph is drawn as large as fits, up to 1.6 CSS pixels a point
  // and no smaller than half a pixel: a larger graph scrolls rather than shrinking out of sight.
  function fit() {
    const graph = byId('graph');
    const svg = graph.querySelector('svg');
    if (!svg) return;
    const box = svg.viewBox.baseVal;
    const room = Math.min((graph.clientWidth - 32) / box.width, (graph.clientHeight - 32) / box.height);
    const scale = Math.max(0.5, Math.min(1.6, room));
    svg.setAttribute('width', (box.width * scale).toFixed(1));
    svg.setAttribute('height', (box.height * scale).toFixed(1));
  }
  window.addEventListener('resize', fit);

  // The output's value and each input's gradient, as `tapegrad grad` prints them; with the toggle,
  // each gradient's central difference beside it (Note [Central differences in the playground],
  // bindings.cpp).
  function number(x) { return x === null ? 'NaN or \u00b1inf' : String(x); }
  function renderGradients() {
    const table = byId('gradients');
    table.replaceChildren();
    if (!shown) return;
    const withFd = byId('show-fd').checked;
    const row = (cells, tag) => {
      const tr = document.createElement('tr');
      cells.forEach(([text, className]) => {
        const cell = document.createElement(tag);
        cell.textContent = text;
        if (className) cell.className = className;
        tr.append(cell);
      });
      table.append(tr);
      return tr;
    };
    row([['', ''], ['gradient', ''], ...(withFd ? [['central difference', '']] : [])], 'th');
    row([[shown.label, ''], [number(shown.result.value), 'value']], 'td');
    names.forEach((name) => {
      const g = shown.result.grad[name];
      const fd = shown.fd[name];
      const cells = [[`d${shown.label}/d${name}`, ''], [number(g), 'grad']];
      if (withFd) cells.push([number(fd), 'fd']);
      const tr = row(cells, 'td');
      tr.dataset.input = name;
      if (withFd && g !== null && fd !== null) tr.title = `gradient - central difference = ${(g - fd).toExponential(1)}`;
    });
  }
  byId('show-fd').addEventListener('change', renderGradients);

  // ---- stepping (Note [The step plan]) ---------------------------------------------------------
  function div(className, text) {
    const d = document.createElement('div');
    d.className = className;
    if (text !== undefined) d.textContent = text;
    return d;
  }
  let blocks = [];
  function buildLog() {
    const log = byId('log');
    log.replaceChildren();
    blocks = [];
    const steps = shown.plan.steps;
    if (shown.plan.refused) {
      shown.lines.forEach((line) => log.append(div('line', line)));
      return;
    }
    steps.forEach((s, i) => {
      if (i === 0 || steps[i - 1].phase !== s.phase) log.append(div('section', s.phase));
      const block = div(`block ${s.phase}`);
      if (s.phase === 'backward') block.append(div('line', `  ${s.heading}`));
      s.lines.forEach((line) => block.append(div('line', s.phase === 'forward' ? `  ${line}` : `    ${line}`)));
      blocks.push(block);
      log.append(block);
    });
    log.append(div('section', 'gradients'));
    shown.plan.gradients.forEach((line) => log.append(div('line', `  ${line}`)));
  }
  function mark(id, className) {
    const element = id ? byId(id) : null;
    if (element) element.classList.add(className);
  }
  function show(i) {
    if (!shown) return;
    const steps = shown.plan.steps;
    const forwardSteps = steps.filter((s) => s.phase === 'forward').length;
    at = Math.max(0, Math.min(steps.length, i));
    const svg = byId('graph').querySelector('svg');
    ['has-value', 'has-grad', 'current'].forEach((c) => {
      svg.querySelectorAll(`.${c}`).forEach((e) => e.classList.remove(c));
    });
    shown.plan.known.forEach((id) => mark(id, 'has-value'));
    for (let k = 0; k < at; ++k) {
      const c = steps[k].phase === 'forward' ? 'has-value' : 'has-grad';
      steps[k].shows.forEach((id) => mark(id, c));
    }
    const now = byId('now');
    now.replaceChildren();
    if (shown.plan.refused) {
      now.className = '';
      now.append(div('hint', shown.plan.refused));
      byId('phase').textContent = 'the whole pass';
    } else if (at === 0) {
      now.className = '';
      now.append(div('hint', 'Step runs the forward pass, the inputs first and then one node at a ' +
          'time; then the backward pass applies the chain rule at each node, from the output back.'));
      byId('phase').textContent = 'start';
    } else {
      const s = steps[at - 1];
      if (at < steps.length) {
        s.nodes.forEach((id) => mark(id, 'current'));
        s.edges.forEach((id) => mark(id, 'current'));
      }
      now.className = s.phase;
      now.append(div('heading', s.heading || 'forward'));
      s.lines.forEach((line) => now.append(div('line', line)));
      byId('phase').textContent = s.phase === 'forward'
          ? `forward pass \u00b7 step ${at} of ${forwardSteps}`
          : `backward pass \u00b7 step ${at - forwardSteps} of ${steps.length - forwardSteps}`;
    }
    blocks.forEach((b, k) => {
      b.querySelectorAll('.line').forEach((line) => {
        line.classList.toggle('current', k === at - 1 && at < steps.length);
        line.classList.toggle('later', k >= at);
      });
    });
    byId('counter').textContent = `step ${at} / ${steps.length}`;
    document.body.dataset.step = String(at);
    byId('reset').disabled = at === 0;
    byId('back').disabled = at === 0;
    byId('next').disabled = at === steps.length;
    byId('play').disabled = steps.length === 0;
  }
  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    byId('play').textContent = '\u25b6 Play';
    byId('play').setAttribute('aria-pressed', 'false');
  }
  function play() {
    if (!shown) return;
    if (at === shown.plan.steps.length) show(0);
    timer = setInterval(() => {
      show(at + 1);
      if (at === shown.plan.steps.length) stop();
    }, 900);
    byId('play').textContent = '\u275a\u275a Pause';
    byId('play').setAttribute('aria-pressed', 'true');
  }
  const actions = {
    next: () => { stop(); show(at + 1); },
    back: () => { stop(); show(at - 1); },
    reset: () => { stop(); show(0); },
    play: () => { if (timer === null) play(); else stop(); },
  };
  Object.keys(actions).forEach((name) => byId(name).addEventListener('click', actions[name]));
  document.addEventListener('keydown', (e) => {
    const typing = e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement ||
        e.target instanceof HTMLSelectElement;
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = { ArrowRight: 'next', ArrowLeft: 'back', Home: 'reset' }[e.key];
    if (!key) return;
    e.preventDefault();
    actions[key]();
  });

  // ---- tabs, presets, editing ------------------------------------------------------------------
  ['graph', 'network'].forEach((lab) => {
    byId(`tab-${lab}`).addEventListener('click', () => {
      ['graph', 'network'].forEach((other) => {
        byId(`tab-${other}`).setAttribute('aria-selected', String(other === lab));
        byId(`${other}-lab`).hidden = other !== lab;
      });
    });
  });
  function usePreset(i) {
    const p = presets[i];
    editor.value = p.program;
    Object.assign(values, p.values);
    update();
  }
  presetSelect.addEventListener('change', () => { if (presetSelect.value !== '') usePreset(Number(presetSelect.value)); });
  editor.addEventListener('input', () => {
    presetSelect.value = '';
    update();
  });

  if (loadState()) {
    update();
  } else {
    presetSelect.value = '0';
    usePreset(0);
  }
})();
