// Desktop benchmark: the demo's Xvnc viewed through our path (desktop
// page → portal → embedded gateway → Xvnc, Guacamole protocol) and through
// stock noVNC with websockify, in the same headless Chromium at 1920×1080,
// one after the other, twice each (A B A B). For each: frames per second
// reaching the canvas and bytes per second over the WebSocket while an
// xterm scrolls without pause, CPU of the server-side process (portal with
// its gateway, or websockify) and of the browser, the server process's
// memory, and input-to-pixel latency (a key pressed in the page until the
// canvas changes). Run with `make bench`; prints a Markdown table.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { once } from 'node:events';
import net from 'node:net';
import * as esbuild from 'esbuild';
import { startDemo, launchBrowser, newPage, signIn, waitFor } from '../harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const viewport = { width: 1920, height: 1080 };
const seconds = Number(process.env.BENCH_SECONDS || 8);
const keystrokes = Number(process.env.BENCH_KEYS || 40);
const rounds = Number(process.env.BENCH_ROUNDS || 2);

// browserPids lists Chromium's processes.
function browserPids() {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try { return readFileSync(`/proc/${d}/cmdline`, 'utf8').startsWith('/usr/lib/chromium/chromium'); } catch { return false; }
  }).map(Number);
}

// cpuSeconds is the CPU time processes and their descendants have used.
function cpuSeconds(pids) {
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
    for (const [c, st] of stats) if (st.ppid === p) walk(c);
  };
  // Count each process once, even if it descends from another listed.
  const roots = pids.filter((p) => !pids.includes(stats.get(p)?.ppid));
  roots.forEach(walk);
  return total;
}

function rssMB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : 0;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on('error', reject);
  });
}

// X clients on the demo's display, stopped by process group.
function startX(display, args) {
  const p = spawn('xterm', args, { env: { ...process.env, DISPLAY: `:${display}` }, detached: true, stdio: 'ignore' });
  return { stop: () => { try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ } } };
}

function viewableXterms(display) {
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
const pageHelpers = () => {
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

async function measure(name, page, display, serverPid) {
  // The remote screen is ready.
  await waitFor(`${name}: the remote screen`, () => page.evaluate(() => {
    try { const c = window.benchCanvas(); return c && c.width >= 1000; } catch { return false; }
  }), 30000);
  const box = await page.evaluate(() => { const r = window.benchCanvas().getBoundingClientRect(); return [r.x, r.y, window.benchCanvas().width, r.width]; });
  const scale = box[3] / box[2];
  const before = viewableXterms(display);

  // Throughput: an xterm scrolling numbers without pause.
  // Random hex, 180 columns wide: every line new, as on a busy screen.
  const scroll = startX(display, ['-geometry', '200x60+0+0', '-e', 'od', '-An', '-tx1', '-w60', '-v', '/dev/urandom']);
  await waitFor(`${name}: the scrolling xterm`, () => viewableXterms(display) > before, 15000);
  await new Promise((r) => setTimeout(r, 1000)); // past the first full screens
  if (process.env.BENCH_SHOTS) await page.screenshot({ path: `/tmp/bench-${name}-1.png` });
  let bytes = 0;
  page.bytesHook = (n) => { bytes += n; };
  const browser = browserPids();
  // The server process's peak memory while the screen is busiest.
  let peakRSS = rssMB(serverPid);
  const sampler = setInterval(() => { peakRSS = Math.max(peakRSS, rssMB(serverPid)); }, 50);
  const cpu0 = cpuSeconds(serverPid); const bcpu0 = cpuSeconds(browser); const t0 = Date.now();
  const fps = await page.evaluate((ms) => window.countFrames(ms), seconds * 1000);
  const dt = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  if (process.env.BENCH_SHOTS) await page.screenshot({ path: `/tmp/bench-${name}-2.png` });
  const result = {
    fps,
    mbps: bytes / dt / 1e6,
    serverCPU: (cpuSeconds(serverPid) - cpu0) / dt,
    browserCPU: (cpuSeconds(browser) - bcpu0) / dt,
    serverRSS: peakRSS,
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

async function main() {
  const demo = await startDemo();
  const browser = await launchBrowser();
  const { info } = demo;
  const display = info.vnc_target.display;
  const web = mkdtempSync(join(tmpdir(), 'keyway-novnc-'));
  let wsk;
  try {
    // The peer: noVNC bundled as-is, served with websockify from npm.
    await esbuild.build({ entryPoints: [join(here, 'novnc', 'viewer.js')], bundle: true, format: 'esm', outfile: join(web, 'viewer.js'), logLevel: 'error' });
    copyFileSync(join(here, 'novnc', 'index.html'), join(web, 'index.html'));
    const wskPort = await freePort();
    const require = createRequire(import.meta.url);
    const wskMain = require.resolve('@maximegris/node-websockify');
    wsk = spawn(process.execPath, ['-e', `require(${JSON.stringify(wskMain)})({source: '127.0.0.1:${wskPort}', target: '${info.vnc_target.host}:${info.vnc_target.port}', web: ${JSON.stringify(web)}})`],
      { stdio: 'ignore' });
    await waitFor('websockify', () => new Promise((r) => { const s = net.connect(wskPort, '127.0.0.1', () => { s.end(); r(true); }); s.on('error', () => r(false)); }));

    const open = {
      async ours() {
        const page = await newPage(browser, info.url, viewport);
        await signIn(page, info.user.name, info.user.password);
        page.on('websocket', (ws) => ws.on('framereceived', (f) => page.bytesHook?.(f.payload.length)));
        await page.addInitScript(pageHelpers);
        await page.locator('[data-resource="demo-vnc"]').getByRole('button').click();
        await page.waitForURL('**/connect/*');
        return page;
      },
      async noVNC() {
        const page = await newPage(browser, `http://127.0.0.1:${wskPort}`, viewport);
        page.on('websocket', (ws) => ws.on('framereceived', (f) => page.bytesHook?.(f.payload.length)));
        await page.addInitScript(pageHelpers);
        await page.goto(`/index.html?password=${encodeURIComponent(info.vnc_target.password)}`);
        await waitFor('noVNC to connect', () => page.evaluate(() => window.rfbConnected === true));
        return page;
      },
    };
    const results = { ours: [], noVNC: [] };
    for (let r = 0; r < rounds; r++) {
      for (const name of ['ours', 'noVNC']) {
        const rssBefore = rssMB(name === 'ours' ? demo.pid : wsk.pid);
        const page = await open[name]();
        const res = await measure(name, page, display, name === 'ours' ? demo.pid : wsk.pid);
        // What the session added at its peak over the process before it.
        res.serverRSSDelta = res.serverRSS - rssBefore;
        results[name].push(res);
        await page.context().close();
        console.error(`${name} round ${r + 1}:`, JSON.stringify(res));
      }
    }
    const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
    const row = (label, key, digits, unit = '') => {
      const a = med(results.ours.map((x) => x[key])); const b = med(results.noVNC.map((x) => x[key]));
      return `| ${label} | ${a.toFixed(digits)}${unit} | ${b.toFixed(digits)}${unit} | ${(a / b).toFixed(2)} |`;
    };
    console.log(`Desktop, 1920x1080, ${seconds} s of scrolling and ${keystrokes} keystrokes per run, ${rounds} runs each (medians):\n`);
    console.log('| | ours (Guacamole protocol via portal + gateway) | noVNC + websockify | ratio |');
    console.log('|---|---|---|---|');
    console.log(row('frames per second at the canvas', 'fps', 1));
    console.log(row('MB/s over the WebSocket', 'mbps', 2));
    console.log(row('input-to-pixel latency, p50', 'latencyP50', 1, ' ms'));
    console.log(row('input-to-pixel latency, p90', 'latencyP90', 1, ' ms'));
    console.log(row('server-side CPU (cores)', 'serverCPU', 2));
    console.log(row('browser CPU (cores)', 'browserCPU', 2));
    console.log(row('server-side peak RSS over the idle process (MB)', 'serverRSSDelta', 1));
    console.log(row('server-side peak RSS (MB)', 'serverRSS', 1));
  } finally {
    wsk?.kill('SIGTERM');
    if (wsk) await once(wsk, 'exit').catch(() => {});
    await browser.close();
    await demo.stop();
    rmSync(web, { recursive: true, force: true });
  }
}

await main();
