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
  function send(kind, fields) {
    return new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      worker.postMessage(Object.assign({ id, kind }, fields));
    });
  }
  function request(kind, program, assignments) { return send(kind, { program, assignments }); }

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
    // A fresh network-lab session trained for config.epochs epochs: the summary keys of the last
    // line `tapegrad train --json` prints for the same options ({data: 'moons', hidden: [8, 8]}).
    train: async (config) => orThrow(await send('train', { config })),
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
  let pointMode = false;  // the graph shown is a network lab point's (net_point), not the program's

  function setStatus(text) { byId('status').textContent = text; }

  // Note [The URL's state]
  // ~~~~~~~~~~~~~~~~~~~~~~~
  // The URL's fragment holds both labs' state, so a link opens the same graph and the same
  // network: the graph lab's program and inputs (#program=...&in.x=-2&in.y=5), the network lab's
  // setup under net. (net.data=moons&net.hidden=8,8...) and the lab shown (lab=network). Each lab
  // rewrites its own keys only, through writeState, and keeps the other's.
  function writeState(owns, entries) {
    const state = new URLSearchParams(location.hash.slice(1));
    Array.from(state.keys()).filter(owns).forEach((key) => state.delete(key));
    entries.forEach(([key, value]) => state.append(key, value));
    history.replaceState(null, '', `#${state.toString()}`);
  }
  function saveState() {
    writeState((key) => key === 'program' || key.startsWith('in.'), [['program', editor.value],
      ...names.map((name) => [`in.${name}`, String(values[name])])]);
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
    pointMode = false;
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
    byId('point-note').hidden = !pointMode;
    [editor, byId('inputs'), presetSelect.parentElement].forEach((e) => { e.hidden = pointMode; });
    if (!pointMode) renderInputs();  // a point's leaves are its weights: nothing to edit
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
    if (!pointMode) saveState();
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
    if (!byId('network-lab').hidden) {
      if (e.key !== ' ' || e.target instanceof HTMLButtonElement) return;
      e.preventDefault();
      byId('net-play').click();
      return;
    }
    const key = { ArrowRight: 'next', ArrowLeft: 'back', Home: 'reset' }[e.key];
    if (!key) return;
    e.preventDefault();
    actions[key]();
  });

  // ---- the network lab (README.md: "The network lab") ------------------------------------------
  // TensorFlow Playground's controls around tapegrad's own training: the page keeps the setup
  // (netState), the worker's engine owns the data and the model (net_create) and trains them in
  // slices of a few epochs (net_train), each answered with a snapshot the page draws.

  // Note [Network lab limits]
  // ~~~~~~~~~~~~~~~~~~~~~~~~~~
  // The + buttons stop where TensorFlow Playground's do: 6 hidden layers of 8 neurons. A link or a
  // lecture preset may ask for deeper (the 11-layer deep XOR net has 10 hidden layers), up to
  // kMaxLayers; the columns then draw closer together. − still removes them one by one.
  const kButtonLayers = 6;
  const kMaxLayers = 10;
  const kMaxNeurons = 8;
  // TensorFlow Playground's sets per problem type, in its order, then the lecture's extras: moons,
  // and CS231n's three-arm spiral (spirals), kept for its third class (softmax over three
  // logits, which TF Playground's one output never shows); two-spirals is TF's own two arms.
  const netSets = [['circles', 'circle'], ['xor', 'exclusive or'], ['gaussian', 'two Gaussians'],
    ['two-spirals', 'spiral'], ['moons', 'moons'], ['spirals', "three-arm spiral (CS231n's)"]];
  const netRegressionSets = [['plane', 'plane'], ['multi-gaussian', 'multi Gaussian']];
  const setsOf = (problem) => (problem === 'regression' ? netRegressionSets : netSets);
  const netFeatures = [['x1', 'x\u2081', (a, b) => a], ['x2', 'x\u2082', (a, b) => b],
    ['x1^2', 'x\u2081\u00b2', (a, b) => a * a], ['x2^2', 'x\u2082\u00b2', (a, b) => b * b],
    ['x1*x2', 'x\u2081x\u2082', (a, b) => a * b], ['sin_x1', 'sin x\u2081', (a, b) => Math.sin(a)],
    ['sin_x2', 'sin x\u2082', (a, b) => Math.sin(b)]];
  const learningRates = [0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
  const regularizationRates = [0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
  // TensorFlow Playground's defaults, but for its data set: moons, which tapegrad's lecture uses.
  const netDefaults = {
    data: 'circles', hidden: [4, 2], act: 'tanh', lr: 0.03, batch: 10, seed: 1, noise: 0,
    ratio: 50, features: ['x1', 'x2'], opt: 'sgd', reg: 'none', reg_rate: 0, init: '', n: 300,
    show_test: false, discretize: false, problem: 'classification',
  };
  // nn's xor is the four unit corners blurred by the noise (Note [TensorFlow Playground's data
  // sets], nn/src/data.cpp): its presets blur them, or every point would sit on a corner. The
  // noise is the control's percentage (Note [The noise in percent], tools/train_setup.cpp).
  const netPresets = [
    { name: "TensorFlow Playground's first screen: circle, 4-2 tanh", setup: {} },
    { name: 'Moons, 8-8 ReLU, Adam: trains in seconds',
      setup: { data: 'moons', hidden: [8, 8], act: 'relu', opt: 'adam', lr: 0.01, noise: 15 } },
    { name: 'Spiral: every feature, 8-8-6 tanh', setup: { data: 'two-spirals', hidden: [8, 8, 6],
      features: netFeatures.map(([name]) => name), noise: 0, lr: 0.03 } },
    { name: 'Deep XOR, 11 layers of sigmoid: the gradient vanishes',
      setup: { data: 'xor', noise: 35, hidden: Array(10).fill(8), act: 'sigmoid', lr: 0.3 } },
    { name: 'Deep XOR, 11 layers of ReLU: the gradient gets through',
      setup: { data: 'xor', noise: 35, hidden: Array(10).fill(8), act: 'relu', lr: 0.03 } },
    { name: 'Zero initialisation: every unit of a layer the same',
      setup: { data: 'xor', noise: 35, hidden: [4, 4], act: 'sigmoid', init: 'zeros', lr: 0.3 } },
    { name: 'A learning rate of 3: ReLUs die', setup: { data: 'moons', hidden: [8, 8], act: 'relu',
      lr: 3, noise: 15 } },
  ];

  const net = {
    state: structuredClone(netDefaults),
    started: false,     // the lab's first net_create is sent when its tab is first shown
    abilities: {},      // net_abilities: which network functions this engine has
    session: null,      // net_create's reply: layers, inputs, command, domain, train, test
    snapshot: null,     // the latest snapshot
    history: [],        // [epoch, train loss, test loss] per snapshot, for the curve
    generation: 0,      // bumped by each net_create: replies for an older session are dropped
    playing: false,
    busy: false,        // a net_train is with the worker
    sliceEpochs: 1,     // epochs per net_train, sized to kSliceMs (Note [Training slices])
    framePending: false, // netFrame is asked for: one chain of frames, never two
    drawn: true,        // the snapshot shown is the latest
  };

  // ---- the network lab: its state in the URL (Note [The URL's state]) ----------------------------
  function saveNetState() {
    const s = net.state;
    const entries = [['net.data', s.data], ['net.hidden', s.hidden.join(',')], ['net.act', s.act],
      ['net.lr', s.lr], ['net.batch', s.batch], ['net.seed', s.seed], ['net.noise', s.noise],
      ['net.ratio', s.ratio], ['net.features', s.features.join(',')], ['net.opt', s.opt],
      ['net.reg', s.reg], ['net.reg_rate', s.reg_rate], ['net.init', s.init], ['net.n', s.n],
      ['net.show_test', s.show_test ? 1 : 0], ['net.discretize', s.discretize ? 1 : 0],
      ['net.problem', s.problem]];
    writeState((key) => key.startsWith('net.'), entries.map(([k, v]) => [k, String(v)]));
  }
  // Reads what it understands and keeps the default for anything else (a hand-edited link).
  function loadNetState() {
    const state = new URLSearchParams(location.hash.slice(1));
    const s = net.state;
    const text = (key, allowed) => {
      const v = state.get(`net.${key}`);
      if (v !== null && allowed.includes(v)) s[key] = v;
    };
    const number = (key, lo, hi) => {
      const v = Number(state.get(`net.${key}`));
      if (state.has(`net.${key}`) && Number.isFinite(v) && v >= lo && v <= hi) s[key] = v;
    };
    text('data', [...netSets, ...netRegressionSets].map(([name]) => name));
    text('act', Array.from(byId('net-act').options).map((o) => o.value));
    text('opt', ['sgd', 'adam']);
    text('reg', ['none', 'l1', 'l2']);
    text('init', Array.from(byId('net-init').options).map((o) => o.value));
    text('problem', ['classification', 'regression']);
    number('lr', 0, 100);
    number('batch', 1, 1000);
    number('seed', 0, 2 ** 31);
    number('noise', 0, 50);  // percent, as TensorFlow Playground's control
    number('ratio', 10, 90);
    number('reg_rate', 0, 100);
    number('n', 12, 5000);
    if (state.has('net.hidden')) {
      const sizes = state.get('net.hidden').split(',').filter((t) => t !== '').map(Number);
      if (sizes.length <= kMaxLayers && sizes.every((n) => Number.isInteger(n) && n >= 1 && n <= kMaxNeurons)) {
        s.hidden = sizes;
      }
    }
    if (state.has('net.features')) {
      const names = state.get('net.features').split(',');
      if (names.every((n) => netFeatures.some(([name]) => name === n)) && names.length > 0) s.features = names;
    }
    if (state.has('net.show_test')) s.show_test = state.get('net.show_test') === '1';
    if (state.has('net.discretize')) s.discretize = state.get('net.discretize') === '1';
    // A data set of the other problem type (a hand-edited link): the problem's first set.
    if (!setsOf(s.problem).some(([name]) => name === s.data)) s.data = setsOf(s.problem)[0][0];
    return state.get('lab') === 'network';
  }

  // The config net_create takes: tapegrad train's long option names (README.md).
  function engineConfig() {
    const s = net.state;
    const config = {
      data: s.data, task: s.problem, hidden: s.hidden, act: s.act, lr: s.lr, batch: s.batch,
      seed: s.seed, noise_percent: s.noise, n: s.n, features: s.features, opt: s.opt,
      test_fraction: Math.round(100 - s.ratio) / 100,
    };
    // One output and its sigmoid, as TensorFlow Playground has, for the sets of two classes;
    // spirals (CS231n's three arms) keeps train's default, one output per class and softmax, and
    // a regression train's, MSE on one linear output (TF Playground's square error and linear
    // output node).
    if (s.problem === 'classification' && s.data !== 'spirals') config.loss = 'bce_logits';
    if (s.reg !== 'none') config[s.reg] = s.reg_rate;
    if (s.init) config.init = s.init;
    return config;
  }

  // ---- the network lab: drawing ------------------------------------------------------------------
  // TensorFlow Playground's diverging scale: -1 orange, 0 near white, +1 blue.
  const negative = [245, 147, 34];
  const middle = [232, 234, 235];
  const positive = [8, 119, 189];
  const classColours = [negative, positive, [46, 160, 67]];  // spirals' third arm in green
  function colour(v) {
    const t = Math.max(-1, Math.min(1, Number.isFinite(v) ? v : 0));
    const end = t < 0 ? negative : positive;
    const a = Math.abs(t);
    return [0, 1, 2].map((i) => Math.round(middle[i] + (end[i] - middle[i]) * a));
  }
  // The scale in 201 steps, looked up per pixel: a map is repainted at every frame of training.
  const scale = Array.from({ length: 201 }, (_, i) => colour(i / 100 - 1));
  // A grid of values (row-major, first row at the top) into a canvas of that many pixels.
  function paintGrid(canvas, grid, size, toSigned) {
    if (canvas.width !== size) {
      canvas.width = size;
      canvas.height = size;
    }
    const context = canvas.getContext('2d');
    const image = context.createImageData(size, size);
    for (let i = 0; i < size * size; ++i) {
      const v = toSigned(grid[i]);
      const [r, g, b] = scale[Number.isFinite(v) ? Math.round(100 * Math.max(-1, Math.min(1, v))) + 100 : 100];
      image.data[4 * i] = r;
      image.data[4 * i + 1] = g;
      image.data[4 * i + 2] = b;
      image.data[4 * i + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  }

  // The output map's value on the -1..1 scale: a classifier's probability of class 1 as 2p - 1, a
  // regression's predicted value as it is, on the targets' own scale (TF Playground's);
  // discretized, its sign (p >= 0.5, or a value >= 0).
  function outputToSigned(discretize) {
    if (net.session && net.session.task === 'regression') {
      return (v) => (discretize ? (v >= 0 ? 1 : -1) : v);
    }
    return (p) => (discretize ? (p >= 0.5 ? 1 : -1) : 2 * p - 1);
  }
  // A data point's colour: its class's, or for a regression its target on the map's scale.
  function pointColour(label) {
    if (net.session && net.session.task === 'regression') return colour(label);
    return classColours[label] || positive;
  }

  const mapPixels = document.createElement('canvas');  // the output map at its own size
  function drawMap() {
    const canvas = byId('net-map');
    const context = canvas.getContext('2d');
    context.fillStyle = '#fff';
    context.fillRect(0, 0, canvas.width, canvas.height);
    const snapshot = net.snapshot;
    const session = net.session;
    if (!snapshot || !session) return;
    const discretize = net.state.discretize;
    const toSigned = outputToSigned(discretize);
    paintGrid(mapPixels, snapshot.output_map, snapshot.map_size, (p) => 0.8 * toSigned(p));
    context.imageSmoothingEnabled = !discretize;
    context.drawImage(mapPixels, 0, 0, canvas.width, canvas.height);
    const [x1lo, x1hi] = session.domain.x1;
    const [x2lo, x2hi] = session.domain.x2;
    const toX = (x) => ((x - x1lo) / (x1hi - x1lo)) * canvas.width;
    const toY = (y) => ((x2hi - y) / (x2hi - x2lo)) * canvas.height;
    const dot = (points, stroke) => points.forEach(([x, y, label]) => {
      context.beginPath();
      context.arc(toX(x), toY(y), 3, 0, 2 * Math.PI);
      context.fillStyle = `rgb(${pointColour(label).join(',')})`;
      context.fill();
      context.lineWidth = 1;
      context.strokeStyle = stroke;
      context.stroke();
    });
    dot(session.train, '#fff');
    if (net.state.show_test) dot(session.test, '#000');
  }

  function drawCurve() {
    const canvas = byId('net-curve');
    const context = canvas.getContext('2d');
    context.clearRect(0, 0, canvas.width, canvas.height);
    const points = net.history;
    if (points.length < 2) return;
    const finite = points.flatMap(([, a, b]) => [a, b]).filter(Number.isFinite);
    const top = Math.max(1e-9, ...finite);
    const lastEpoch = Math.max(1, points.at(-1)[0]);
    [[1, '#9aa3ad'], [2, '#1d232b']].forEach(([column, stroke]) => {
      context.beginPath();
      points.forEach((p, i) => {
        const x = (p[0] / lastEpoch) * (canvas.width - 2) + 1;
        const y = canvas.height - 2 - (Math.min(p[column], top) / top) * (canvas.height - 6);
        if (i === 0) context.moveTo(x, y);
        else context.lineTo(x, y);
      });
      context.strokeStyle = stroke;
      context.lineWidth = 1.5;
      context.stroke();
    });
  }

  // The network's columns (features, hidden layers, output) are rebuilt when its shape changes;
  // each snapshot then only repaints the neurons and restyles the edges.
  function buildNetwork() {
    const s = net.state;
    const features = byId('net-features');
    features.replaceChildren();
    const [lo, hi] = net.session ? net.session.domain.x1 : [-1.5, 1.5];
    const reach = Math.max(Math.abs(lo), Math.abs(hi));
    netFeatures.forEach(([name, label, f]) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'feature';
      button.dataset.feature = name;
      button.setAttribute('aria-pressed', String(s.features.includes(name)));
      button.title = `${name}: click to ${s.features.includes(name) ? 'leave it out' : 'use it'}`;
      const text = document.createElement('span');
      text.className = 'name';
      text.textContent = label;
      const canvas = document.createElement('canvas');
      canvas.className = 'neuron';
      const size = 16;
      const grid = [];
      const scale = Math.max(...[f(reach, reach), f(-reach, -reach), f(reach, -reach), 1e-9].map(Math.abs));
      for (let r = 0; r < size; ++r) {
        for (let c = 0; c < size; ++c) {
          grid.push(f(lo + ((hi - lo) * (c + 0.5)) / size, hi - ((hi - lo) * (r + 0.5)) / size) / scale);
        }
      }
      paintGrid(canvas, grid, size, (v) => v);
      button.append(text, canvas);
      button.addEventListener('click', () => {
        const on = s.features.includes(name);
        if (on && s.features.length === 1) return;  // a network needs an input
        s.features = on ? s.features.filter((n) => n !== name)
                        : netFeatures.map(([n]) => n).filter((n) => n === name || s.features.includes(n));
        netChanged();
      });
      features.append(button);
    });
    const layers = byId('net-layers');
    layers.replaceChildren();
    s.hidden.forEach((width, k) => {
      const column = document.createElement('div');
      column.className = 'column';
      column.dataset.layer = String(k);
      const buttons = document.createElement('div');
      buttons.className = 'buttons';
      const plus = document.createElement('button');
      plus.type = 'button';
      plus.textContent = '+';
      plus.setAttribute('aria-label', `add a neuron to layer ${k + 1}`);
      plus.disabled = width >= kMaxNeurons;
      plus.addEventListener('click', () => { s.hidden[k] += 1; netChanged(); });
      const minus = document.createElement('button');
      minus.type = 'button';
      minus.textContent = '\u2212';
      minus.setAttribute('aria-label', `remove a neuron from layer ${k + 1}`);
      minus.disabled = width <= 1;
      minus.addEventListener('click', () => { s.hidden[k] -= 1; netChanged(); });
      buttons.append(plus, minus);
      const count = document.createElement('div');
      count.className = 'count';
      count.textContent = s.hidden.length > kButtonLayers - 2 ? String(width) : `${width} neuron${width === 1 ? '' : 's'}`;
      column.append(buttons, count);
      for (let j = 0; j < width; ++j) {
        const canvas = document.createElement('canvas');
        canvas.className = 'neuron';
        canvas.dataset.neuron = `${k}.${j}`;
        column.append(canvas);
      }
      layers.append(column);
    });
    const output = document.createElement('div');
    output.className = 'column';
    output.dataset.layer = 'output';
    const label = document.createElement('div');
    label.className = 'count';
    label.textContent = s.hidden.length > kButtonLayers - 2 ? 'out' : 'output';
    const spacer = document.createElement('div');
    spacer.className = 'buttons';
    const canvas = document.createElement('canvas');
    canvas.className = 'neuron';
    canvas.dataset.neuron = 'output';
    output.append(spacer, label, canvas);
    layers.append(output);
    byId('net-columns').classList.toggle('deep', s.hidden.length > kButtonLayers - 2);
    byId('net-layer-count').textContent = `${s.hidden.length} hidden layer${s.hidden.length === 1 ? '' : 's'}`;
    byId('net-add-layer').disabled = s.hidden.length >= kButtonLayers;
    byId('net-remove-layer').disabled = s.hidden.length === 0;
    buildEdges();
  }

  // One path per weight, from the right side of its input's square to the left of its neuron's,
  // in layer order: weights[k][out][in] is path k's (out, in).
  function buildEdges() {
    const svg = byId('net-edges');
    svg.replaceChildren();
    const box = byId('net-columns').getBoundingClientRect();
    const centre = (element, side) => {
      const r = element.getBoundingClientRect();
      return [(side === 'right' ? r.right : r.left) - box.left, r.top + r.height / 2 - box.top];
    };
    const columns = [
      net.state.features.map((name) => byId('net-features').querySelector(`[data-feature="${name}"] canvas`)),
      ...Array.from(byId('net-layers').children).map((c) => Array.from(c.querySelectorAll('canvas'))),
    ];
    for (let k = 0; k + 1 < columns.length; ++k) {
      columns[k + 1].forEach((to, out) => {
        columns[k].forEach((from, input) => {
          const [x0, y0] = centre(from, 'right');
          const [x1, y1] = centre(to, 'left');
          const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
          const mid = (x0 + x1) / 2;
          path.setAttribute('d', `M${x0},${y0} C${mid},${y0} ${mid},${y1} ${x1},${y1}`);
          path.dataset.weight = `${k}.${out}.${input}`;
          svg.append(path);
        });
      });
    }
  }

  function drawNetwork() {
    const snapshot = net.snapshot;
    if (!snapshot) return;
    const size = snapshot.neuron_map_size;
    snapshot.neuron_maps.forEach((layer, k) => layer.forEach((grid, j) => {
      const canvas = byId('net-layers').querySelector(`[data-neuron="${k}.${j}"]`);
      if (canvas) paintGrid(canvas, grid, size, (v) => v);
    }));
    const output = byId('net-layers').querySelector('[data-neuron="output"]');
    if (output) paintGrid(output, snapshot.output_map, snapshot.map_size, outputToSigned(false));
    byId('net-edges').querySelectorAll('path').forEach((path) => {
      const [k, out, input] = path.dataset.weight.split('.').map(Number);
      const w = snapshot.weights[k]?.[out]?.[input] ?? 0;
      path.setAttribute('stroke', `rgb(${(w < 0 ? negative : positive).join(',')})`);
      path.setAttribute('stroke-width', Math.min(6, 0.4 + 1.6 * Math.abs(w)).toFixed(2));
      path.setAttribute('stroke-opacity', Math.min(1, 0.25 + 0.5 * Math.abs(w)).toFixed(2));
    });
  }

  // Per Linear layer, the gradient's 2-norm on a log scale, and per hidden layer the fraction of
  // units that output 0 for every training row (the snapshot's grad_norms and dead_fraction).
  function drawHealth() {
    const table = byId('net-health');
    const snapshot = net.snapshot;
    table.replaceChildren();
    if (!snapshot) return;
    const head = document.createElement('tr');
    ['layer', '\u2016\u2202L/\u2202W\u2016 at the last step', 'dead units'].forEach((t) => {
      const th = document.createElement('th');
      th.textContent = t;
      head.append(th);
    });
    table.append(head);
    const sizes = net.session.layers;
    snapshot.grad_norms.forEach((norm, k) => {
      const tr = document.createElement('tr');
      const name = document.createElement('td');
      name.textContent = `${k + 1}: ${sizes[k]}\u2192${sizes[k + 1]}`;
      const grad = document.createElement('td');
      const bar = document.createElement('span');
      bar.className = 'bar';
      // 1e-8 .. 10 on a log scale over 120 pixels
      const width = Number.isFinite(norm) && norm > 0 ? Math.max(1, Math.min(120, (Math.log10(norm) + 8) * 13.3)) : 0;
      bar.style.width = `${width.toFixed(0)}px`;
      grad.append(bar, ` ${Number.isFinite(norm) ? norm.toExponential(1) : 'not finite'}`);
      const dead = document.createElement('td');
      const fraction = snapshot.dead_fraction[k];
      if (fraction !== undefined) {
        dead.className = 'dead';
        const deadBar = document.createElement('span');
        deadBar.className = 'bar';
        deadBar.style.width = `${Math.round(40 * fraction)}px`;
        dead.append(deadBar, ` ${Math.round(100 * fraction)}%`);
      }
      tr.append(name, grad, dead);
      table.append(tr);
    });
  }

  function lossText(x) { return Number.isFinite(x) ? x.toFixed(3) : 'not finite'; }
  function drawNumbers() {
    const snapshot = net.snapshot;
    if (!snapshot) return;
    byId('net-epoch').textContent = String(snapshot.epoch).padStart(6, '0').replace(/(\d{3})$/, ',$1');
    byId('net-test-loss').textContent = lossText(snapshot.test_loss);
    byId('net-train-loss').textContent = lossText(snapshot.train_loss);
    // A regression's score is R² on the test rows (tapegrad train --json's r2) where a
    // classifier's is its accuracy.
    const regression = net.session && net.session.task === 'regression';
    byId('net-score-name').textContent = regression ? 'Test R\u00b2' : 'Test accuracy';
    byId('net-legend-low').textContent = regression ? '-1' : 'class 0';
    byId('net-legend-high').textContent = regression ? '1' : 'class 1';
    if (regression) {
      byId('net-test-accuracy').textContent = Number.isFinite(snapshot.test_r2)
          ? snapshot.test_r2.toFixed(3) : '\u2013';
    } else {
      byId('net-test-accuracy').textContent = Number.isFinite(snapshot.test_accuracy)
          ? `${(100 * snapshot.test_accuracy).toFixed(1)}%` : '\u2013';
    }
    document.body.dataset.netEpoch = String(snapshot.epoch);
    document.body.dataset.netTestAccuracy = String(snapshot.test_accuracy);
    document.body.dataset.netTestLoss = String(snapshot.test_loss);
  }

  // One animation frame: the latest snapshot, if it is not on the screen yet.
  function netFrame() {
    net.framePending = false;
    if (!net.drawn) {
      net.drawn = true;
      const started = performance.now();
      drawMap();
      drawNetwork();
      drawCurve();
      drawHealth();
      drawNumbers();
      document.body.dataset.netDraws = String(Number(document.body.dataset.netDraws || 0) + 1);
      document.body.dataset.netDrawMs = (performance.now() - started).toFixed(1);
    }
    if (net.playing) netRequestFrame();
  }
  function netRequestFrame() {
    if (net.framePending) return;
    net.framePending = true;
    requestAnimationFrame(netFrame);
  }
  function netShow() {
    net.drawn = false;
    netRequestFrame();
  }

  function netMessage(text) {
    const box = byId('net-message');
    box.textContent = text || '';
    box.hidden = !text;
  }

  function accept(snapshot) {
    net.snapshot = snapshot;
    // For the tests: what the engine trains, as it said (the weights' rows x columns), set with
    // the snapshot rather than at its next frame, so it is current once netIdle says so.
    document.body.dataset.netWeights = snapshot.weights.map((w) => `${w.length}x${w[0].length}`).join(',');
    net.history.push([snapshot.epoch, snapshot.train_loss, snapshot.test_loss]);
    if (net.history.length > 600) net.history = net.history.filter((p, i) => i % 2 === 0 || i === net.history.length - 1);
    if (snapshot.diverged) {
      netPause();
      netMessage(snapshot.message || 'error: training diverged: lower the learning rate');
    }
    byId('net-play').disabled = snapshot.diverged;
    byId('net-step').disabled = snapshot.diverged;
    netShow();
  }

  // ---- the network lab: the engine ---------------------------------------------------------------
  async function netCreate() {
    netPause();
    const generation = ++net.generation;
    document.body.dataset.netIdle = 'false';
    saveNetState();
    const reply = await send('net_create', { config: engineConfig() });
    if (generation !== net.generation) return;
    net.history = [];
    if (reply.error) {
      net.session = null;
      net.snapshot = null;
      netMessage(reply.error);
      byId('net-play').disabled = true;
      byId('net-step').disabled = true;
      byId('net-command').textContent = '';
      buildNetwork();
      netShow();
    } else {
      netMessage('');
      byId('net-download').hidden = !net.abilities.net_safetensors;
      // A regression's point is refused by the engine (a click still says why): no hint for it.
      const pointable = Boolean(net.abilities.net_point) && reply.task !== 'regression';
      byId('net-point-hint').hidden = !pointable;
      byId('net-map').classList.toggle('clickable', pointable);
      net.session = reply;
      document.body.dataset.netLayers = reply.layers.join(',');
      byId('net-command').textContent = reply.command;
      buildNetwork();
      accept(reply);
    }
    net.sliceEpochs = 1;
    document.body.dataset.netIdle = 'true';
  }

  // Note [Training slices]
  // ~~~~~~~~~~~~~~~~~~~~~~~
  // Play trains as a chain of net_train requests, one at a time, each answered with a snapshot
  // that carries the maps; the page draws the latest at the next animation frame, so drawing never
  // waits on training, and Pause answers at once (the slice with the worker is the last one). A
  // slice is sized so that the engine answers it in about kSliceMs, half a 60 Hz frame: with the
  // messages' way there and back, a new snapshot is ready for every frame. (Slices of 12 to 30 ms
  // gave one for every second frame or so: 24 map redraws a second.) A slice has at least one
  // epoch, so a network whose epoch takes longer redraws once an epoch.
  const kSliceMs = 8;
  const kMaxSliceEpochs = 64;
  async function netTrain(epochs) {
    if (net.busy || !net.session) return;
    net.busy = true;
    const generation = net.generation;
    const reply = await send('net_train', { epochs });
    net.busy = false;
    if (generation !== net.generation) {
      // A new session came meanwhile; Play may have been pressed on it while this was away.
      if (net.playing) netTrain(net.sliceEpochs);
      return;
    }
    if (reply.error) {
      netPause();
      netMessage(reply.error);
      return;
    }
    document.body.dataset.netEngineMs = lastTimes.engineMs.toFixed(1);  // the tests' figures
    document.body.dataset.netSliceEpochs = String(epochs);
    // The epochs that would have taken kSliceMs at this slice's pace, at most doubled or halved.
    const ratio = kSliceMs / Math.max(lastTimes.engineMs, 0.1);
    net.sliceEpochs = Math.min(kMaxSliceEpochs,
        Math.max(1, Math.round(epochs * Math.min(2, Math.max(0.5, ratio)))));
    accept(reply);
    if (net.playing) netTrain(net.sliceEpochs);
  }
  function netPlay() {
    if (!net.session || (net.snapshot && net.snapshot.diverged)) return;
    net.playing = true;
    byId('net-play').textContent = '\u275a\u275a Pause';
    byId('net-play').setAttribute('aria-pressed', 'true');
    netRequestFrame();
    netTrain(net.sliceEpochs);
  }
  function netPause() {
    net.playing = false;
    byId('net-play').textContent = '\u25b6 Play';
    byId('net-play').setAttribute('aria-pressed', 'false');
  }

  // The learning rate changed: the engine's session takes it in place, weights and epoch kept. A
  // session that diverged (its weights are not finite) or is missing starts again instead, as
  // does an engine without net_set_rates.
  async function netRatesChanged() {
    byId('net-preset').value = '';
    if (!net.session || !net.abilities.net_rates || (net.snapshot && net.snapshot.diverged)) {
      netChanged();
      return;
    }
    saveNetState();
    const generation = net.generation;
    const reply = await send('net_rates', { rates: { lr: net.state.lr } });
    if (generation !== net.generation) return;  // a new session has the rate from its config
    if (reply.error) {
      netMessage(reply.error);
      return;
    }
    byId('net-command').textContent = reply.command;
  }

  // Any other change of setup starts again from epoch 0, as TensorFlow Playground does.
  function netChanged() {
    byId('net-preset').value = '';
    showNetControls();
    buildNetwork();  // the new shape at once (its + and - buttons too); the engine's maps follow
    netCreate();
  }

  // ---- the network lab: controls -----------------------------------------------------------------
  function showNetControls() {
    const s = net.state;
    byId('net-sets').querySelectorAll('button').forEach((b) => {
      b.setAttribute('aria-checked', String(b.dataset.set === s.data));
      b.hidden = b.dataset.problem !== s.problem;  // the problem type's sets, as TF Playground
    });
    byId('net-lr').value = String(s.lr);
    byId('net-act').value = s.act;
    byId('net-reg').value = s.reg;
    byId('net-reg-rate').value = String(s.reg_rate);
    byId('net-reg-rate').disabled = s.reg === 'none';
    byId('net-problem').value = s.problem;
    byId('net-ratio').value = String(s.ratio);
    byId('net-ratio-out').textContent = `${s.ratio}%`;
    byId('net-noise').value = String(s.noise);
    byId('net-noise-out').textContent = `${s.noise}%`;
    byId('net-batch').value = String(s.batch);
    byId('net-batch-out').textContent = String(s.batch);
    byId('net-opt').value = s.opt;
    byId('net-init').value = s.init;
    byId('net-seed').textContent = String(s.seed);
    byId('net-show-test').checked = s.show_test;
    byId('net-discretize').checked = s.discretize;
  }

  // A rate missing from the list (from a link) is added to it, so the select can show it.
  function fillRates(select, rates, current) {
    const all = Array.from(new Set([...rates, current])).sort((a, b) => a - b);
    select.replaceChildren(...all.map((r) => new Option(String(r), String(r))));
  }

  // The data set thumbnails: a few points of each set's shape, drawn once.
  function thumbnail(name) {
    const canvas = document.createElement('canvas');
    canvas.width = 48;
    canvas.height = 48;
    const context = canvas.getContext('2d');
    context.fillStyle = '#f2f3f4';
    context.fillRect(0, 0, 48, 48);
    let seed = 7;
    const random = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
    for (let i = 0; i < 90; ++i) {
      const label = name === 'spirals' ? i % 3 : i % 2;  // spirals: CS231n's three arms
      let x;
      let y;
      let fill = classColours[label];
      const t = random();
      if (name === 'plane' || name === 'multi-gaussian') {
        // TF Playground's regression sets, coloured by their target (nn/src/data.cpp's formulas).
        [x, y] = [random() * 2 - 1, random() * 2 - 1];
        const [x1, x2] = [6 * x, 6 * y];
        let target = (x1 + x2) / 10;
        if (name === 'multi-gaussian') {
          target = 0;
          [[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]]
              .forEach(([cx, cy, sign]) => {
                const v = sign * Math.max(0, 1 - Math.hypot(x1 - cx, x2 - cy) / 2);
                if (Math.abs(v) > Math.abs(target)) target = v;
              });
        }
        fill = colour(target);
      } else if (name === 'two-spirals') {
        // TF Playground's two arms, 1.75 turns each, the second turned by pi.
        const a = t * 1.75 * 2 * Math.PI + label * Math.PI;
        [x, y] = [0.9 * t * Math.sin(a), 0.9 * t * Math.cos(a)];
      } else if (name === 'circles') {
        const r = label ? 0.45 * t : 0.7 + 0.25 * t;
        const a = 2 * Math.PI * random();
        [x, y] = [r * Math.cos(a), r * Math.sin(a)];
      } else if (name === 'xor') {
        [x, y] = [random() * 2 - 1, random() * 2 - 1];
        if ((x * y > 0) !== (label === 1)) x = -x;
      } else if (name === 'gaussian') {
        const d = label ? 0.45 : -0.45;
        [x, y] = [d + (t - 0.5) * 0.6, d + (random() - 0.5) * 0.6];
      } else if (name === 'spirals') {
        const a = t * 1.75 * 2 * Math.PI + (label * 2 * Math.PI) / 3;
        [x, y] = [0.9 * t * Math.sin(a), 0.9 * t * Math.cos(a)];
      } else {
        const a = Math.PI * t;
        [x, y] = label ? [(1 - Math.cos(a)) * 0.6 - 0.3, (0.5 - Math.sin(a)) * 0.6 - 0.05]
                       : [Math.cos(a) * 0.6 - 0.3, Math.sin(a) * 0.6 - 0.05];
      }
      context.fillStyle = `rgb(${fill.join(',')})`;
      context.beginPath();
      context.arc(24 + x * 21, 24 - y * 21, 1.8, 0, 2 * Math.PI);
      context.fill();
    }
    return canvas;
  }

  function setUpNetworkLab() {
    const s = net.state;
    [...netSets.map((set) => [...set, 'classification']),
      ...netRegressionSets.map((set) => [...set, 'regression'])].forEach(([name, label, problem]) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.set = name;
      button.dataset.problem = problem;
      button.setAttribute('role', 'radio');
      button.setAttribute('aria-label', label);
      button.title = label;
      button.append(thumbnail(name));
      button.addEventListener('click', () => { s.data = name; netChanged(); });
      byId('net-sets').append(button);
    });
    fillRates(byId('net-lr'), learningRates, s.lr);
    fillRates(byId('net-reg-rate'), regularizationRates, s.reg_rate);
    netPresets.forEach((p, i) => byId('net-preset').append(new Option(p.name, String(i))));
    const onChange = (id, apply) => byId(id).addEventListener('change', (e) => { apply(e.target); netChanged(); });
    // Note [What a change resets]
    // ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    // As TensorFlow Playground's src/playground.ts, control by control: the learning rate keeps
    // the weights and training goes on (net_rates, Note [Rates changed in place] in
    // tools/network_lab.hpp); the regularization and its rate, the activation, the batch size,
    // the problem type, the layers and neurons and the features build a new network (net_create,
    // epoch 0), and the data set, noise and ratio new data too. Showing the test data and
    // discretizing only redraw. Optimizer, initialisation and seed (not TF's) start again too.
    byId('net-lr').addEventListener('change', (e) => {
      s.lr = Number(e.target.value);
      netRatesChanged();
    });
    onChange('net-act', (t) => { s.act = t.value; });
    onChange('net-problem', (t) => {
      s.problem = t.value;
      if (!setsOf(s.problem).some(([name]) => name === s.data)) s.data = setsOf(s.problem)[0][0];
    });
    onChange('net-reg', (t) => { s.reg = t.value; });
    onChange('net-reg-rate', (t) => { s.reg_rate = Number(t.value); });
    onChange('net-opt', (t) => { s.opt = t.value; });
    onChange('net-init', (t) => { s.init = t.value; });
    onChange('net-ratio', (t) => { s.ratio = Number(t.value); });
    onChange('net-noise', (t) => { s.noise = Number(t.value); });
    onChange('net-batch', (t) => { s.batch = Number(t.value); });
    // Sliders show their value while dragged; the network restarts when they are let go.
    [['net-ratio', (v) => `${v}%`], ['net-noise', (v) => `${v}%`], ['net-batch', String]]
        .forEach(([id, show]) => byId(id).addEventListener('input', (e) => {
          byId(`${id}-out`).textContent = show(e.target.value);
        }));
    // Showing test data and discretizing change the drawing only.
    byId('net-show-test').addEventListener('change', (e) => {
      s.show_test = e.target.checked;
      saveNetState();
      netShow();
    });
    byId('net-discretize').addEventListener('change', (e) => {
      s.discretize = e.target.checked;
      saveNetState();
      netShow();
    });
    byId('net-preset').addEventListener('change', (e) => {
      if (e.target.value === '') return;
      net.state = Object.assign(structuredClone(netDefaults), structuredClone(netPresets[Number(e.target.value)].setup));
      fillRates(byId('net-lr'), learningRates, net.state.lr);
      showNetControls();
      netCreate();
    });
    byId('net-regenerate').addEventListener('click', () => { s.seed += 1; netChanged(); });
    byId('net-add-layer').addEventListener('click', () => {
      if (s.hidden.length < kButtonLayers) s.hidden.push(s.hidden.length ? s.hidden.at(-1) : 4);
      netChanged();
    });
    byId('net-remove-layer').addEventListener('click', () => { s.hidden.pop(); netChanged(); });
    byId('net-reset').addEventListener('click', netCreate);
    byId('net-play').addEventListener('click', () => { if (net.playing) netPause(); else netPlay(); });
    byId('net-step').addEventListener('click', () => { netPause(); netTrain(1); });
    byId('net-copy').addEventListener('click', async () => {
      const text = byId('net-command').textContent;
      try {
        await navigator.clipboard.writeText(text);
        setStatus('the command line is copied');
      } catch (e) {
        // Without the clipboard (a browser's policy), the text is selected for Ctrl+C.
        getSelection().selectAllChildren(byId('net-command'));
        setStatus('the command line is selected: Ctrl+C copies it');
      }
    });
    // A click on the map: the forward and backward pass of the data point under it (or of the
    // place clicked, away from the points) through the current weights, in the graph lab.
    byId('net-map').addEventListener('click', async (e) => {
      if (!net.abilities.net_point || !net.session) return;
      const canvas = e.currentTarget;
      // The map is drawn inside the canvas's border: measure from its content box.
      const box = canvas.getBoundingClientRect();
      const [width, height] = [canvas.clientWidth, canvas.clientHeight];
      const [x1lo, x1hi] = net.session.domain.x1;
      const [x2lo, x2hi] = net.session.domain.x2;
      const toX = (x) => ((x - x1lo) / (x1hi - x1lo)) * width;
      const toY = (y) => ((x2hi - y) / (x2hi - x2lo)) * height;
      const [px, py] = [e.clientX - box.left - canvas.clientLeft, e.clientY - box.top - canvas.clientTop];
      const candidates = net.state.show_test ? net.session.train.concat(net.session.test) : net.session.train;
      let nearest = null;
      let nearestDistance = 8;  // pixels
      candidates.forEach((p) => {
        const d = Math.hypot(toX(p[0]) - px, toY(p[1]) - py);
        if (d < nearestDistance) [nearest, nearestDistance] = [p, d];
      });
      const x1 = nearest ? nearest[0] : x1lo + (px / width) * (x1hi - x1lo);
      const x2 = nearest ? nearest[1] : x2hi - (py / height) * (x2hi - x2lo);
      netPause();
      const started = performance.now();
      const reply = await send('net_point', { x1, x2 });
      if (reply.error) {  // e.g. a network whose graph is past the drawing budget: say so here
        netMessage(reply.error);
        document.body.dataset.netPoint = 'refused';
        return;
      }
      // The engine says whose label the loss takes: the data point's, or the network's own answer.
      const { point } = reply;
      const where = `(x1, x2) = (${x1.toFixed(3)}, ${x2.toFixed(3)})`;
      byId('point-caption').textContent = point.label_from === 'prediction'
          ? `The place ${where} on the map, through the network's weights at epoch ${point.epoch}; ` +
            `no data point is here, so the loss (${point.loss}) takes the class the network predicts, ${point.label}.`
          : `The ${point.label_from} point ${where}, of class ${point.label}, through the network's ` +
            `weights at epoch ${point.epoch}, with its ${point.loss} loss L.`;
      names = reply.inputs;
      pointMode = true;
      showLab('graph');
      showAnalysis(reply, performance.now() - started);
      document.body.dataset.netPoint = 'shown';
    });
    // The weights as `tapegrad train --save` writes them (safetensors, PyTorch's names), made in
    // the worker and handed over as base64; the link is shown when the engine can do it.
    byId('net-download').addEventListener('click', async (e) => {
      e.preventDefault();
      const reply = await send('net_safetensors', {});
      if (reply.error) {
        netMessage(reply.error);
        return;
      }
      const bytes = Uint8Array.from(atob(reply.base64), (c) => c.charCodeAt(0));
      const link = document.createElement('a');
      link.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
      link.download = `tapegrad-${net.state.data}-epoch-${net.snapshot ? net.snapshot.epoch : 0}.safetensors`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);  // the download has long begun
    });
    window.addEventListener('resize', () => {
      if (!byId('network-lab').hidden && net.session) {
        buildEdges();
        netShow();
      }
    });
    showNetControls();
  }

  // The lab starts its engine session the first time it is shown.
  async function startNetworkLab() {
    if (net.started) return;
    net.started = true;
    net.abilities = await send('net_abilities', {});
    if (!net.abilities.net_create) {
      netMessage('This build of the engine has no network lab (net_create is missing).');
      byId('net-play').disabled = true;
      byId('net-step').disabled = true;
      document.body.dataset.netIdle = 'true';
      return;
    }
    netCreate();
  }

  // ---- tabs, presets, editing ------------------------------------------------------------------
  function showLab(lab) {
    ['graph', 'network'].forEach((other) => {
      byId(`tab-${other}`).setAttribute('aria-selected', String(other === lab));
      byId(`${other}-lab`).hidden = other !== lab;
    });
    writeState((key) => key === 'lab', lab === 'network' ? [['lab', 'network']] : []);
    if (lab === 'network') {
      startNetworkLab();
      if (net.session) {
        buildEdges();  // laid out while hidden, the squares had no place yet
        netShow();
      }
    } else {
      netPause();
    }
  }
  ['graph', 'network'].forEach((lab) => byId(`tab-${lab}`).addEventListener('click', () => showLab(lab)));
  function usePreset(i) {
    const p = presets[i];
    editor.value = p.program;
    Object.assign(values, p.values);
    update();
  }
  presetSelect.addEventListener('change', () => { if (presetSelect.value !== '') usePreset(Number(presetSelect.value)); });
  byId('point-leave').addEventListener('click', update);
  editor.addEventListener('input', () => {
    presetSelect.value = '';
    update();
  });

  setUpNetworkLab();
  const networkShown = loadNetState();
  showNetControls();
  if (loadState()) {
    update();
  } else {
    presetSelect.value = '0';
    usePreset(0);
  }
  if (networkShown) showLab('network');
})();
