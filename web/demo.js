/* demo.js - drives web/bdense_web.c (compiled to bdense_web.js) and draws.
   No framework, nothing fetched.  docs/web.md describes the page.

   Query string (all optional): data, K, weights, nfe, tsteps, dsteps, seed
   preset the controls; hidden sets the teacher's width (128);
   auto=1 starts at once and runs fixed-size chunks from timers (for
   headless Chromium: screenshots); test=1 is auto=1 with a short run
   (tsteps 300, dsteps 120, hidden 64 unless given) that ends by writing
   one line "TEST done ..." into #test (tests/web/run.sh reads it). */
'use strict';
(function () {
  const Q = new URLSearchParams(window.location.search);
  const TEST = Q.get('test') === '1';
  const AUTO = TEST || Q.get('auto') === '1';
  const $ = (id) => document.getElementById(id);
  const WEIGHT_NAMES = ['uniform', 'final', 'linear', 'aux', 'anneal', 'adaptive'];
  const BRANCH_COLORS = ['#1b9e77', '#d95f02', '#7570b3', '#e7298a',
                         '#66a61e', '#e6ab02', '#a6761d', '#1f78b4'];
  const SPARSE_COLOR = '#e7298a';
  const HALF = 2.2;          /* panels show [-HALF, HALF]^2 */

  let M = null;              /* the wasm module */
  let run = null;            /* the current run's state */
  let paused = false;

  for (const id of ['data', 'K', 'weights', 'nfe', 'tsteps', 'dsteps', 'seed']) {
    if (Q.has(id)) $(id).value = Q.get(id);
  }
  if (TEST) {
    if (!Q.has('tsteps')) $('tsteps').value = 300;
    if (!Q.has('dsteps')) $('dsteps').value = 120;
  }
  const HIDDEN = parseInt(Q.get('hidden') || (TEST ? '64' : '128'), 10);

  function status(text) { $('status').textContent = text; }
  function sub(n) {  /* subscript digits */
    return String(n).replace(/[0-9]/g, (d) => String.fromCharCode(0x2080 + +d));
  }
  function fmt(x) { return Number.isFinite(x) ? x.toExponential(2) : '–'; }
  function floats(ptr, n) {  /* a copy: the heap may grow and move */
    return new Float32Array(M.HEAPF32.buffer, ptr, n).slice();
  }
  function check(ok, what) {
    if (!ok) throw new Error(what + ': ' + M.UTF8ToString(M._bdw_message()));
  }

  /* ---- drawing ---------------------------------------------------------- */
  const plot = $('plot'), ctx = plot.getContext('2d');
  const curves = $('curves'), cctx = curves.getContext('2d');
  const PANEL = 370, TOP = 40, LEFT = [55, 480, 905];

  function panelMap(p) {
    const x0 = LEFT[p];
    return {
      x: (x) => x0 + (x + HALF) / (2 * HALF) * PANEL,
      y: (y) => TOP + (HALF - y) / (2 * HALF) * PANEL,
    };
  }
  function dot(m, x, y, r, color) {
    ctx.fillStyle = color;
    ctx.beginPath(); ctx.arc(m.x(x), m.y(y), r, 0, 2 * Math.PI); ctx.fill();
  }
  function ring(m, x, y, r, color) {
    ctx.strokeStyle = color; ctx.lineWidth = 1.2; ctx.setLineDash([]);
    ctx.beginPath(); ctx.arc(m.x(x), m.y(y), r, 0, 2 * Math.PI); ctx.stroke();
  }
  function line(m, x0, y0, x1, y1, color, width, dashed) {
    ctx.strokeStyle = color; ctx.lineWidth = width; ctx.setLineDash(dashed ? [4, 3] : []);
    ctx.beginPath(); ctx.moveTo(m.x(x0), m.y(y0)); ctx.lineTo(m.x(x1), m.y(y1)); ctx.stroke();
    ctx.setLineDash([]);
  }
  /* a polyline through n points of a (.., 2) array starting at float `off` */
  function path(m, a, off, n, color, width) {
    ctx.strokeStyle = color; ctx.lineWidth = width; ctx.setLineDash([]);
    ctx.beginPath();
    for (let i = 0; i < n; i++) {
      const X = m.x(a[off + 2 * i]), Y = m.y(a[off + 2 * i + 1]);
      if (i === 0) ctx.moveTo(X, Y); else ctx.lineTo(X, Y);
    }
    ctx.stroke();
  }
  function frame(p, title) {
    const m = panelMap(p), x0 = LEFT[p];
    ctx.save();
    ctx.beginPath(); ctx.rect(x0, TOP, PANEL, PANEL); ctx.clip();
    ctx.fillStyle = '#fff'; ctx.fillRect(x0, TOP, PANEL, PANEL);
    ctx.strokeStyle = '#eee'; ctx.lineWidth = 1;
    for (let v = -2; v <= 2; v++) {
      line(m, v, -HALF, v, HALF, '#eee', 1, false);
      line(m, -HALF, v, HALF, v, '#eee', 1, false);
    }
    ctx.restore();
    ctx.strokeStyle = '#999'; ctx.lineWidth = 1; ctx.strokeRect(x0, TOP, PANEL, PANEL);
    ctx.fillStyle = '#222'; ctx.font = '14px sans-serif'; ctx.textAlign = 'left';
    ctx.fillText(title, x0, TOP - 10);
    ctx.font = '11px sans-serif'; ctx.fillStyle = '#555'; ctx.textAlign = 'center';
    for (let v = -2; v <= 2; v++) {
      ctx.fillText(String(v), m.x(v), TOP + PANEL + 13);
      ctx.textAlign = 'right'; ctx.fillText(String(v), x0 - 4, m.y(v) + 4); ctx.textAlign = 'center';
    }
    ctx.fillText('x\u2081', x0 + PANEL / 2, TOP + PANEL + 28);
    ctx.save(); ctx.translate(x0 - 26, TOP + PANEL / 2); ctx.rotate(-Math.PI / 2);
    ctx.fillText('x\u2082', 0, 0); ctx.restore();
    return m;
  }
  function clipPanel(p) {
    ctx.save(); ctx.beginPath(); ctx.rect(LEFT[p], TOP, PANEL, PANEL); ctx.clip();
  }
  function legend(p, rows) {   /* rows: [kind, color, text]; kind dot|ring|line|dash|path */
    const x0 = LEFT[p];
    let y = TOP + PANEL + 46;
    ctx.font = '12px sans-serif'; ctx.textAlign = 'left';
    for (const [kind, color, text] of rows) {
      ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = kind === 'line' ? 2 : 1.2;
      ctx.setLineDash(kind === 'dash' ? [4, 3] : []);
      ctx.beginPath();
      if (kind === 'dot') { ctx.arc(x0 + 10, y - 4, 3.5, 0, 2 * Math.PI); ctx.fill(); }
      else if (kind === 'ring') { ctx.arc(x0 + 10, y - 4, 4, 0, 2 * Math.PI); ctx.stroke(); }
      else { ctx.moveTo(x0, y - 4); ctx.lineTo(x0 + 20, y - 4); ctx.stroke(); }
      ctx.setLineDash([]);
      ctx.fillStyle = '#222'; ctx.fillText(text, x0 + 26, y);
      y += 16;
    }
  }

  function drawTeacher() {
    const m = frame(0, 'Teacher: data and ODE trajectories (step ' + run.tsteps + ')');
    clipPanel(0);
    const data = run.data;
    for (let i = 0; i < data.length / 2; i++) dot(m, data[2 * i], data[2 * i + 1], 1.3, 'rgba(150,150,150,0.5)');
    const p = run.paths, S1 = run.odeSteps + 1;
    if (p) {
      for (let j = 0; j < run.nTraj; j++) path(m, p, j * S1 * 2, S1, 'rgba(60,60,60,0.75)', 1.1);
      for (let j = 0; j < run.nTraj; j++) {
        dot(m, p[j * S1 * 2], p[j * S1 * 2 + 1], 2.4, '#000');
        dot(m, p[(j * S1 + S1 - 1) * 2], p[(j * S1 + S1 - 1) * 2 + 1], 3, '#1f5fbf');
      }
    }
    ctx.restore();
    legend(0, [['dot', '#999', 'data'],
               ['path', '#444', 'teacher ODE (DPM-Solver++, ' + run.odeSteps + ' steps)'],
               ['dot', '#000', 'starting noise'], ['dot', '#1f5fbf', 'teacher sample']]);
  }

  function drawStudent(which) {
    const p = which + 1;
    const K = which === 0 ? 1 : run.K;
    const title = which === 0 ? 'Sparse student (K = 1, final)'
      : 'B-DENSE student (K = ' + run.K + ', ' + WEIGHT_NAMES[run.weights] + ')';
    const steps = run.students ? run.dsteps[which] : 0;
    const m = frame(p, title + (run.students ? ', step ' + steps : ''));
    clipPanel(p);
    const data = run.data;
    for (let i = 0; i < data.length / 2; i++) dot(m, data[2 * i], data[2 * i + 1], 1.2, 'rgba(190,190,190,0.45)');
    if (!run.students) {
      ctx.fillStyle = '#888'; ctx.font = '14px sans-serif'; ctx.textAlign = 'center';
      ctx.fillText('waits for the teacher', LEFT[p] + PANEL / 2, TOP + PANEL / 2);
      ctx.restore();
      return;
    }
    const g = run.gtraj, S1 = run.S + 1, J = run.jumps[which], NS = run.nStud;
    for (let j = 0; j < NS; j++) path(m, g, j * S1 * 2, S1, 'rgba(40,40,40,0.8)', 0.9);
    /* the sampling branch's jumps first, the dense branches' dashed jumps
       on top (they run along it), then every landing */
    const color = (k) => which === 0 ? SPARSE_COLOR : BRANCH_COLORS[k % BRANCH_COLORS.length];
    const order = [K - 1];
    for (let k = 0; k < K - 1; k++) order.push(k);
    for (let i = 0; i < run.N; i++) {
      for (const k of order) {
        for (let j = 0; j < NS; j++) {
          const e = ((i * K + k) * NS + j) * 6;
          ring(m, J[e + 4], J[e + 5], 4, '#444');
          line(m, J[e], J[e + 1], J[e + 2], J[e + 3], color(k), k === K - 1 ? 2 : 1.2, k !== K - 1);
        }
      }
    }
    for (let i = 0; i < run.N; i++) {
      for (const k of order) {
        for (let j = 0; j < NS; j++) {
          const e = ((i * K + k) * NS + j) * 6;
          dot(m, J[e + 2], J[e + 3], 2.8, color(k));
        }
      }
    }
    for (let j = 0; j < NS; j++) dot(m, g[j * S1 * 2], g[j * S1 * 2 + 1], 2.4, '#000');
    ctx.restore();
    const rows = [['path', '#333', 'teacher trajectory (' + run.Kt + ' sub-steps per student step)'],
                  ['ring', '#444', 'teacher states = branch targets']];
    if (which === 0) rows.push(['line', SPARSE_COLOR, 'student jump (its only branch), ' + run.N + ' in all']);
    else {
      const shown = Math.min(K, 4);
      for (let k = 0; k < shown; k++) {
        const kk = k === shown - 1 ? K - 1 : k;
        rows.push([kk === K - 1 ? 'line' : 'dash', BRANCH_COLORS[kk % BRANCH_COLORS.length],
                   'branch ' + kk + ': DDIM jump to s' + sub(kk + 1) +
                   (kk === K - 1 ? ' (samples)' : (k === shown - 2 && K > 4 ? ' … ' : ''))]);
      }
    }
    legend(p, rows);
  }

  function drawCurves() {
    const W = curves.width, H = curves.height;
    cctx.fillStyle = '#fff'; cctx.fillRect(0, 0, W, H);
    const charts = [
      { x0: 60, title: 'teacher loss (per chunk)', series: [[run.hist.teacher, '#333']] },
      { x0: 690, title: 'students: distillation loss (lines), trajectory MSE at NFE (dots)',
        series: [[run.hist.loss[0], SPARSE_COLOR], [run.hist.loss[1], '#1b9e77']],
        dots: [[run.hist.mse[0], SPARSE_COLOR], [run.hist.mse[1], '#1b9e77']],
        hline: run.ddim },
    ];
    const cw = 540, ch = 130, top = 28;
    for (const c of charts) {
      let lo = Infinity, hi = -Infinity, xmax = 1;
      const all = c.series.concat(c.dots || []);
      for (const [s] of all) for (const [x, y] of s) {
        if (y > 0 && Number.isFinite(y)) { lo = Math.min(lo, y); hi = Math.max(hi, y); }
        xmax = Math.max(xmax, x);
      }
      if (c.hline > 0) { lo = Math.min(lo, c.hline); hi = Math.max(hi, c.hline); }
      cctx.strokeStyle = '#999'; cctx.lineWidth = 1; cctx.strokeRect(c.x0, top, cw, ch);
      cctx.fillStyle = '#222'; cctx.font = '13px sans-serif'; cctx.textAlign = 'left';
      cctx.fillText(c.title, c.x0, top - 8);
      cctx.font = '11px sans-serif'; cctx.fillStyle = '#555'; cctx.textAlign = 'center';
      cctx.fillText('step', c.x0 + cw / 2, top + ch + 26);
      cctx.fillText('0', c.x0, top + ch + 13); cctx.fillText(String(xmax), c.x0 + cw, top + ch + 13);
      if (!(lo < hi)) { if (lo === hi) { lo /= 2; hi *= 2; } else continue; }
      const l0 = Math.floor(Math.log10(lo)), l1 = Math.ceil(Math.log10(hi));
      const X = (x) => c.x0 + x / xmax * cw;
      const Y = (y) => top + ch - (Math.log10(y) - l0) / Math.max(l1 - l0, 1) * ch;
      cctx.textAlign = 'right';
      for (let e = l0; e <= l1; e++) {
        cctx.fillStyle = '#555'; cctx.fillText('1e' + e, c.x0 - 4, Y(Math.pow(10, e)) + 4);
        cctx.strokeStyle = '#eee'; cctx.beginPath();
        cctx.moveTo(c.x0, Y(Math.pow(10, e))); cctx.lineTo(c.x0 + cw, Y(Math.pow(10, e))); cctx.stroke();
      }
      if (c.hline > 0) {
        cctx.strokeStyle = '#999'; cctx.setLineDash([5, 4]); cctx.beginPath();
        cctx.moveTo(c.x0, Y(c.hline)); cctx.lineTo(c.x0 + cw, Y(c.hline)); cctx.stroke();
        cctx.setLineDash([]); cctx.fillStyle = '#666'; cctx.textAlign = 'right';
        cctx.fillText('teacher with ' + run.N + ' DDIM steps', c.x0 + cw - 4, Y(c.hline) - 4);
      }
      for (const [s, col] of c.series) {
        cctx.strokeStyle = col; cctx.lineWidth = 1.4; cctx.beginPath();
        s.forEach(([x, y], i) => { if (i === 0) cctx.moveTo(X(x), Y(y)); else cctx.lineTo(X(x), Y(y)); });
        cctx.stroke();
      }
      for (const [s, col] of (c.dots || [])) {
        cctx.fillStyle = col;
        for (const [x, y] of s) { cctx.beginPath(); cctx.arc(X(x), Y(y), 3, 0, 2 * Math.PI); cctx.fill(); }
      }
    }
    cctx.textAlign = 'left'; cctx.font = '12px sans-serif';
    cctx.fillStyle = SPARSE_COLOR; cctx.fillText('\u25A0 sparse', 700, top + ch + 42);
    cctx.fillStyle = '#1b9e77'; cctx.fillText('\u25A0 B-DENSE', 780, top + ch + 42);
  }

  function draw() {
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, plot.width, plot.height);
    drawTeacher();
    drawStudent(0);
    drawStudent(1);
    drawCurves();
    $('t_steps').textContent = run.tsteps;
    $('t_loss').textContent = fmt(run.tloss);
    $('t_mse').textContent = run.students ? fmt(run.ddim) + ' (DDIM, ' + run.N + ' steps)' : '–';
    for (let s = 0; s < 2; s++) {
      $('s' + s + '_steps').textContent = run.students ? run.dsteps[s] : 0;
      $('s' + s + '_loss').textContent = fmt(run.dloss[s]);
      $('s' + s + '_mse').textContent = fmt(run.mse[s]);
      $('s' + s + '_w').textContent = run.students ? run.w[s].map((w) => w.toFixed(2)).join(' ') : '–';
    }
  }

  function canvasHash() {   /* FNV-1a over the plot's pixels */
    const d = ctx.getImageData(0, 0, plot.width, plot.height).data;
    let h = 0x811c9dc5;
    for (let i = 0; i < d.length; i++) { h ^= d[i]; h = Math.imul(h, 0x01000193) >>> 0; }
    return h.toString(16);
  }

  /* ---- the run ---------------------------------------------------------- */
  function readTeacher() {
    const ptr = M._bdw_teacher_paths();
    check(ptr, 'bdw_teacher_paths');
    run.paths = floats(ptr, run.nTraj * (run.odeSteps + 1) * 2);
  }
  function readStudents() {
    for (let s = 0; s < 2; s++) {
      const K = s === 0 ? 1 : run.K;
      const ptr = M._bdw_jumps(s);
      check(ptr, 'bdw_jumps');
      run.jumps[s] = floats(ptr, run.N * K * run.nStud * 6);
      run.dsteps[s] = M._bdw_distill_steps(s);
      run.w[s] = [];
      for (let k = 0; k < K; k++) run.w[s].push(M._bdw_weight(s, k));
    }
  }
  function evalStudents() {
    for (let s = 0; s < 2; s++) {
      run.mse[s] = M._bdw_eval(s);
      check(Number.isFinite(run.mse[s]), 'bdw_eval');
      run.hist.mse[s].push([M._bdw_distill_steps(s), run.mse[s]]);
    }
  }

  function start() {
    const cfg = {
      data: +$('data').value, K: +$('K').value, weights: +$('weights').value,
      nfe: +$('nfe').value, tTotal: Math.max(50, +$('tsteps').value | 0),
      dTotal: Math.max(10, +$('dsteps').value | 0), seed: +$('seed').value | 0,
    };
    check(M._bdw_init(cfg.data, cfg.seed, HIDDEN, cfg.tTotal) === 0, 'bdw_init');
    run = {
      cfg, phase: 'teacher', K: cfg.K, weights: cfg.weights, N: cfg.nfe,
      tsteps: 0, tloss: NaN, students: false, dsteps: [0, 0], dloss: [NaN, NaN],
      mse: [NaN, NaN], w: [[], []], jumps: [null, null], ddim: NaN,
      nStud: M._bdw_info(4), nTraj: M._bdw_info(5), odeSteps: M._bdw_info(6),
      data: floats(M._bdw_data(), M._bdw_info(7) * 2),
      hist: { teacher: [], loss: [[], []], mse: [[], []] },
      sinceEval: 0, ddone: 0, test: { tloss: [], dloss: [[], []] }, frames: 0,
    };
    readTeacher();
    draw();
    run.hash0 = canvasHash();
    paused = false;
    $('pause').disabled = false; $('pause').textContent = 'Pause';
    $('start').textContent = 'Reset';
    status('training the teacher…');
    schedule();
  }

  /* One chunk of work.  Interactive: as many small steps as fit in ~30 ms
     (at most 200 teacher or 60 distillation steps: a stopped clock, e.g.
     headless Chromium's virtual time, cannot turn it into the whole run);
     auto/test: a fixed number, so a run is the same every time. */
  function work() {
    const t0 = performance.now();
    const budget = 30, c = run.cfg;
    if (run.phase === 'teacher') {
      let n = 0;
      do {
        const k = Math.min(AUTO ? 25 : 5, c.tTotal - run.tsteps);
        if (k <= 0) break;
        const l = M._bdw_train(k);
        check(Number.isFinite(l), 'bdw_train');
        run.tsteps += k; run.tloss = l; n += k;
        run.hist.teacher.push([run.tsteps, l]);
        if (TEST) run.test.tloss.push(l);
      } while (!AUTO && n < 200 && performance.now() - t0 < budget);
      readTeacher();
      if (run.tsteps >= c.tTotal) {
        status('solving ' + 'the teacher\u2019s trajectories for distillation…');
        check(M._bdw_distill_init(c.K, c.weights, c.nfe, c.dTotal) === 0, 'bdw_distill_init');
        run.Kt = M._bdw_info(2); run.S = M._bdw_info(3);
        run.gtraj = floats(M._bdw_gtraj(), run.nStud * (run.S + 1) * 2);
        run.ddim = M._bdw_ddim_mse();
        run.students = true;
        run.phase = 'distill';
        readStudents();
        evalStudents();
        status('distilling both students…');
      } else {
        status('training the teacher: step ' + run.tsteps + ' / ' + c.tTotal);
      }
    } else if (run.phase === 'distill') {
      let n = 0;
      do {
        const k = Math.min(AUTO ? 10 : 2, c.dTotal - run.ddone);
        if (k <= 0) break;
        for (let s = 0; s < 2; s++) {
          const l = M._bdw_distill(s, k);
          check(Number.isFinite(l), 'bdw_distill');
          run.dloss[s] = l;
          run.hist.loss[s].push([run.ddone + k, l]);
          if (TEST) run.test.dloss[s].push(l);
        }
        run.sinceEval += k;
        run.ddone += k;
        n += k;
      } while (!AUTO && n < 60 && performance.now() - t0 < budget);
      readStudents();
      if (run.sinceEval >= Math.max(20, c.dTotal / 15) || run.ddone >= c.dTotal) {
        evalStudents();
        run.sinceEval = 0;
      }
      if (run.ddone >= c.dTotal) {
        run.phase = 'done';
        status('done: ' + run.tsteps + ' teacher steps, ' + run.dsteps[0] +
               ' distillation steps per student. Change a control and press Reset to run again.');
        $('pause').disabled = true;
      } else {
        status('distilling both students: step ' + run.ddone + ' / ' + c.dTotal);
      }
    }
    draw();
    run.frames++;
    if (run.phase === 'done' && TEST) finishTest();
  }

  function mean(a) { return a.reduce((x, y) => x + y, 0) / a.length; }
  function finishTest() {
    const T = run.test, n = 3;
    const f = (x) => x.toExponential(4);
    $('test').textContent = 'TEST done' +
      ' teacher_steps=' + M._bdw_teacher_steps() +
      ' distill_steps=' + Math.min(M._bdw_distill_steps(0), M._bdw_distill_steps(1)) +
      ' teacher_loss0=' + f(mean(T.tloss.slice(0, n))) +
      ' teacher_loss1=' + f(mean(T.tloss.slice(-n))) +
      ' sparse_loss0=' + f(mean(T.dloss[0].slice(0, n))) +
      ' sparse_loss1=' + f(mean(T.dloss[0].slice(-n))) +
      ' bdense_loss0=' + f(mean(T.dloss[1].slice(0, n))) +
      ' bdense_loss1=' + f(mean(T.dloss[1].slice(-n))) +
      ' ddim_mse=' + f(run.ddim) + ' sparse_mse=' + f(run.mse[0]) + ' bdense_mse=' + f(run.mse[1]) +
      ' frames=' + run.frames + ' hash0=' + run.hash0 + ' hash1=' + canvasHash();
  }

  function schedule() {
    const tick = () => {
      if (!run || paused || run.phase === 'done') return;
      try { work(); } catch (e) { fatal(e); return; }
      schedule();
    };
    if (AUTO) setTimeout(tick, 0); else requestAnimationFrame(tick);
  }

  function fatal(e) {
    status('error: ' + e.message);
    if (run) run.phase = 'done';
    if (TEST) $('test').textContent = 'TEST error ' + e.message;
  }

  $('start').addEventListener('click', () => { try { start(); } catch (e) { fatal(e); } });
  $('pause').addEventListener('click', () => {
    if (!run || run.phase === 'done') return;
    paused = !paused;
    $('pause').textContent = paused ? 'Resume' : 'Pause';
    if (!paused) schedule();
  });

  /* with -sWASM_ASYNC_COMPILATION=0 (the Makefile) the factory returns the
     module, ready at once, with a `ready` promise; async builds return a
     promise */
  const made = createBdense();
  const ready = typeof made.then === 'function' ? made : made.ready;
  ready.then((mod) => {
    M = mod;
    status('ready: choose the settings and press Start.');
    if (AUTO) { try { start(); } catch (e) { fatal(e); } }
  }, (e) => fatal(e instanceof Error ? e : new Error(String(e))));
})();
