// Shared by the desktop benchmarks: process CPU and memory from /proc, X
// clients on a display, and the in-page frame counter and latency probe.
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { waitFor } from '../harness.mjs';

export const seconds = Number(process.env.BENCH_SECONDS || 8);
export const keystrokes = Number(process.env.BENCH_KEYS || 40);
export const rounds = Number(process.env.BENCH_ROUNDS || 2);

// browserPids lists Chromium's processes.
export function browserPids() {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try { return readFileSync(`/proc/${d}/cmdline`, 'utf8').startsWith('/usr/lib/chromium/chromium'); } catch { return false; }
  }).map(Number);
}

// cpuSeconds is the CPU time processes and their descendants have used;
// with own, that of the processes alone (the demo portal's children are
// the servers being viewed, whose CPU is not the viewer's).
export function cpuSeconds(pids, { own = false } = {}) {
  pids = [pids].flat();
  const tick = 100; // USER_HZ on Linux
  const stats = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(d), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / tick });
    } catch { /* gone */ }
  }
  let total = 0;
  const walk = (p) => {
    total += stats.get(p)?.cpu ?? 0;
    if (own) return;
    for (const [c, st] of stats) if (st.ppid === p) walk(c);
  };
  // Count each process once, even if it descends from another listed.
  const roots = pids.filter((p) => !pids.includes(stats.get(p)?.ppid));
  roots.forEach(walk);
  return total;
}

// tcpSent returns, per connection accepted on port, the bytes the kernel
// has sent on it (TCP_INFO's bytes_sent, through ss): what crossed the
// wire, after any WebSocket compression, with TLS and framing included.
export function tcpSent(port) {
  const out = execFileSync('ss', ['-tinH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  const sent = new Map();
  let peer = null;
  for (const line of out.split('\n')) {
    const head = line.trim().split(/\s+/);
    if (!/^\s/.test(line) && head.length >= 4) { peer = head[3]; continue; }
    const m = /bytes_sent:(\d+)/.exec(line);
    if (m && peer) sent.set(peer, Number(m[1]));
  }
  return sent;
}

// sentSince sums what the connections sent since the before sample.
export function sentSince(before, after) {
  let n = 0;
  for (const [peer, b] of after) n += b - (before.get(peer) ?? 0);
  return n;
}

export function rssMB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : 0;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on('error', reject);
  });
}

// X clients on the demo's display, stopped by process group.
export function startX(display, args) {
  const p = spawn('xterm', args, { env: { ...process.env, DISPLAY: `:${display}` }, detached: true, stdio: 'ignore' });
  return { stop: () => { try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ } } };
}

export function viewableXterms(display) {
  const env = { ...process.env, DISPLAY: `:${display}` };
  const tree = execFileSync('xwininfo', ['-root', '-tree'], { env }).toString();
  let n = 0;
  for (const m of tree.matchAll(/^\s*(0x[0-9a-f]+) .*\("xterm" "XTerm"\)/gm)) {
    if (execFileSync('xwininfo', ['-id', m[1]], { env }).toString().includes('IsViewable')) n++;
  }
  return n;
}

// In-page helpers: the canvas each viewer draws the remote screen on, a
// frame counter that samples a column of it at every animation frame, and
// a latency probe.
export const pageHelpers = () => {
  window.benchCanvas = () => (window.keywayDesktop
    ? window.keywayDesktop.getDisplay().getDefaultLayer().getCanvas()
    : document.querySelector('#screen canvas'));
  const sample = (x, y, w, h) => {
    const c = window.benchCanvas();
    return c.getContext('2d', { willReadFrequently: true }).getImageData(x, y, w, h).data;
  };
  const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  window.countFrames = (ms) => new Promise((resolve) => {
    let last = null; let changes = 0; const end = performance.now() + ms;
    const tick = () => {
      const col = sample(300, 0, 1, 700);
      if (last && !same(col, last)) changes++;
      last = col;
      if (performance.now() < end) requestAnimationFrame(tick); else resolve(changes / (ms / 1000));
    };
    requestAnimationFrame(tick);
  });
  window.addEventListener('keydown', () => { window.keyAt = performance.now(); }, true);
  window.armProbe = () => { window.probeBefore = sample(0, 0, 500, 40); };
  // waitChange resolves with the time from the last keydown until the
  // region differs, polling between tasks (MessageChannel, not timers).
  window.waitChange = () => new Promise((resolve) => {
    const ch = new MessageChannel(); const end = performance.now() + 3000;
    ch.port1.onmessage = () => {
      if (!same(sample(0, 0, 500, 40), window.probeBefore)) resolve(performance.now() - window.keyAt);
      else if (performance.now() > end) resolve(null);
      else ch.port2.postMessage(0);
    };
    ch.port2.postMessage(0);
  });
};

// measure runs the workloads on display, viewed in page, and returns the
// figures. opts.scrollGeometry sizes the scrolling xterm (default 200x60
// at the top left); opts.counter, if given, has start() and stop(seconds)
// around the throughput window, and what stop returns joins the result.
export async function measure(name, page, display, serverPid, opts = {}) {
  // The remote screen is ready.
  await waitFor(`${name}: the remote screen`, () => page.evaluate(() => {
    try { const c = window.benchCanvas(); return c && c.width >= 1000; } catch { return false; }
  }), 30000);
  const box = await page.evaluate(() => { const r = window.benchCanvas().getBoundingClientRect(); return [r.x, r.y, window.benchCanvas().width, r.width]; });
  const scale = box[3] / box[2];
  const before = viewableXterms(display);

  // Throughput: an xterm scrolling numbers without pause.
  // Random hex: every line new, as on a busy screen.
  const geometry = opts.scrollGeometry ?? '200x60+0+0';
  const width = Math.floor(Number(geometry.split('x')[0]) / 3);
  const scroll = startX(display, ['-geometry', geometry, '-e', 'od', '-An', '-tx1', `-w${width}`, '-v', '/dev/urandom']);
  await waitFor(`${name}: the scrolling xterm`, () => viewableXterms(display) > before, 15000);
  await new Promise((r) => setTimeout(r, 1000)); // past the first full screens
  if (process.env.BENCH_SHOTS) await page.screenshot({ path: `/tmp/bench-${name}-1.png` });
  let bytes = 0;
  page.bytesHook = (n) => { bytes += n; };
  const wire0 = opts.port ? tcpSent(opts.port) : null;
  const browser = browserPids();
  // The server process's peak memory while the screen is busiest.
  let peakRSS = rssMB(serverPid);
  const sampler = setInterval(() => { peakRSS = Math.max(peakRSS, rssMB(serverPid)); }, 50);
  opts.counter?.start();
  const cpu0 = cpuSeconds(serverPid, { own: true }); const bcpu0 = cpuSeconds(browser); const t0 = Date.now();
  const fps = await page.evaluate((ms) => window.countFrames(ms), seconds * 1000);
  const dt = (Date.now() - t0) / 1000;
  const wire = wire0 ? sentSince(wire0, tcpSent(opts.port)) : NaN;
  clearInterval(sampler);
  const extra = opts.counter?.stop(dt) ?? {};
  if (process.env.BENCH_SHOTS) await page.screenshot({ path: `/tmp/bench-${name}-2.png` });
  const result = {
    fps,
    mbps: bytes / dt / 1e6,
    wireMbps: wire / dt / 1e6,
    // Bytes per frame drawn: the encodings' cost, whatever the frame rate
    // (a viewer that draws fewer frames of a scrolling screen also sends
    // fewer bytes a second).
    wireKBPerFrame: wire / (fps * dt) / 1e3,
    serverCPU: (cpuSeconds(serverPid, { own: true }) - cpu0) / dt,
    browserCPU: (cpuSeconds(browser) - bcpu0) / dt,
    serverRSS: peakRSS,
    ...extra,
  };
  page.bytesHook = null;
  scroll.stop();
  await waitFor(`${name}: the scrolling xterm to close`, () => viewableXterms(display) === before, 15000);

  // Latency: characters typed into `cat` in a fresh xterm at the top left.
  const typing = startX(display, ['-geometry', '80x5+0+0', '-e', 'cat']);
  await waitFor(`${name}: the typing xterm`, () => viewableXterms(display) > before, 15000);
  await page.mouse.move(box[0] + 100 * scale, box[1] + 20 * scale);
  await page.mouse.move(box[0] + 110 * scale, box[1] + 25 * scale);
  await page.evaluate(() => window.rfb?.focus()); // noVNC takes keys when its canvas has focus
  await new Promise((r) => setTimeout(r, 500)); // the pointer reached the server
  const lat = [];
  for (let i = 0; i < keystrokes; i++) {
    await page.evaluate(() => window.armProbe());
    const waiting = page.evaluate(() => window.waitChange());
    await page.keyboard.press(i % 2 ? 'b' : 'a');
    const ms = await waiting;
    if (ms != null) lat.push(ms);
  }
  typing.stop();
  await waitFor(`${name}: the typing xterm to close`, () => viewableXterms(display) === before, 15000);
  lat.sort((a, b) => a - b);
  result.latencyP50 = lat[Math.floor(lat.length / 2)];
  result.latencyP90 = lat[Math.floor(lat.length * 0.9)];
  result.keysSeen = lat.length;
  return result;
}

