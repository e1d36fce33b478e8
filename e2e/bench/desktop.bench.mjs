// Desktop benchmark: the demo's Xvnc viewed through our path (desktop
// page → portal → embedded gateway → Xvnc, Guacamole protocol) and through
// stock noVNC with websockify, in the same headless Chromium at 1920×1080,
// one after the other, twice each (A B A B). For each: frames per second
// reaching the canvas and bytes per second over the WebSocket while an
// xterm scrolls without pause, CPU of the server-side process (portal with
// its gateway, or websockify) and of the browser, the server process's
// memory, and input-to-pixel latency (a key pressed in the page until the
// canvas changes). Run with `make bench`; prints a Markdown table.
import { spawn } from 'node:child_process';
import { mkdtempSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { once } from 'node:events';
import net from 'node:net';
import * as esbuild from 'esbuild';
import { startDemo, launchBrowser, newPage, signIn, waitFor } from '../harness.mjs';
import { seconds, keystrokes, rounds, rssMB, freePort, pageHelpers, measure } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const viewport = { width: 1920, height: 1080 };

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

    // prepare readies a page up to the connection; connect opens the
    // session. The server's memory is measured in between, so signing in
    // (whose password hash takes 64 MiB for a moment) is not counted as
    // the session's.
    const prepare = {
      async ours() {
        const page = await newPage(browser, info.url, viewport);
        await signIn(page, info.user.name, info.user.password);
        return page;
      },
      async noVNC() {
        return newPage(browser, `http://127.0.0.1:${wskPort}`, viewport);
      },
    };
    const connect = {
      async ours(page) {
        page.on('websocket', (ws) => ws.on('framereceived', (f) => page.bytesHook?.(f.payload.length)));
        await page.addInitScript(pageHelpers);
        await page.locator('[data-resource="demo-vnc"]').getByRole('button').click();
        await page.waitForURL('**/connect/*');
      },
      async noVNC(page) {
        page.on('websocket', (ws) => ws.on('framereceived', (f) => page.bytesHook?.(f.payload.length)));
        await page.addInitScript(pageHelpers);
        await page.goto(`/index.html?password=${encodeURIComponent(info.vnc_target.password)}`);
        await waitFor('noVNC to connect', () => page.evaluate(() => window.rfbConnected === true));
      },
    };
    const results = { ours: [], noVNC: [] };
    for (let r = 0; r < rounds; r++) {
      for (const name of ['ours', 'noVNC']) {
        const page = await prepare[name]();
        const rssBefore = rssMB(name === 'ours' ? demo.pid : wsk.pid);
        await connect[name](page);
        const port = name === 'ours' ? Number(new URL(info.url).port) : wskPort;
        const res = await measure(name, page, display, name === 'ours' ? demo.pid : wsk.pid, { port });
        // What the session added at its peak over the process before it.
        res.serverRSSDelta = res.serverRSS - rssBefore;
        results[name].push(res);
        await page.context().close();
        console.error(`${name} round ${r + 1}:`, JSON.stringify(res));
      }
    }
    const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
    // The ratio column is the median of each round's ratio: the two
    // viewers of a round run back to back, so a drift of the machine's
    // speed over the run (both slow down or speed up together) cancels.
    const row = (label, key, digits, unit = '') => {
      const a = med(results.ours.map((x) => x[key])); const b = med(results.noVNC.map((x) => x[key]));
      const paired = med(results.ours.map((x, i) => x[key] / results.noVNC[i][key]));
      return `| ${label} | ${a.toFixed(digits)}${unit} | ${b.toFixed(digits)}${unit} | ${paired.toFixed(2)} |`;
    };
    console.log(`Desktop, 1920x1080, ${seconds} s of scrolling and ${keystrokes} keystrokes per run, ${rounds} runs each (medians):\n`);
    console.log('| | ours (Guacamole protocol via portal + gateway) | noVNC + websockify | ratio (median of rounds) |');
    console.log('|---|---|---|---|');
    console.log(row('frames per second at the canvas', 'fps', 1));
    console.log(row('MB/s of WebSocket messages', 'mbps', 2));
    console.log(row('MB/s on the wire (TCP, after compression)', 'wireMbps', 2));
    console.log(row('kB on the wire per frame drawn', 'wireKBPerFrame', 1));
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
