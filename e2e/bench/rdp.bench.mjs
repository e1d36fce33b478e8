// RDP benchmark: the demo's RDP desktop (freerdp-shadow-cli sharing a
// 1920x1080 Xvfb) viewed through our path (desktop page → portal →
// embedded gateway → FreeRDP → display pipeline → Guacamole protocol) in
// headless Chromium at 1920x1080, while an xterm covering the whole screen
// scrolls random text without pause. It reports frames per second at the
// canvas, bytes per second to the browser against bytes per second of RDP
// from the server (read from the kernel's socket counters), the portal
// process's CPU (gateway, FreeRDP and portal; the browser's apart) and
// peak memory over its idle size, and input-to-pixel latency. Run with
// `make bench`; prints a Markdown table.
import { execFileSync } from 'node:child_process';
import { startDemo, launchBrowser, newPage, signIn } from '../harness.mjs';
import { seconds, keystrokes, rounds, rssMB, pageHelpers, measure } from './lib.mjs';

const viewport = { width: 1920, height: 1080 };

// serverBytesSent is what the RDP server's sockets on port have sent, from
// ss's TCP info (bytes_sent).
function serverBytesSent(port) {
  const out = execFileSync('ss', ['-Htin', 'state', 'established', `( sport = :${port} )`]).toString();
  let n = 0;
  for (const m of out.matchAll(/bytes_sent:(\d+)/g)) n += Number(m[1]);
  return n;
}

async function main() {
  const demo = await startDemo(['--desktop-size', '1920x1080']);
  const browser = await launchBrowser();
  const { info } = demo;
  const rdp = info.rdp_target;
  const results = [];
  try {
    for (let r = 0; r < rounds; r++) {
      const page = await newPage(browser, info.url, viewport);
      await signIn(page, info.user.name, info.user.password);
      // After signing in, whose password hash takes 64 MiB for a moment.
      const rssBefore = rssMB(demo.pid);
      page.on('websocket', (ws) => ws.on('framereceived', (f) => page.bytesHook?.(f.payload.length)));
      await page.addInitScript(pageHelpers);
      await page.locator('[data-resource="demo-rdp"]').getByRole('button').click();
      await page.waitForURL('**/connect/*');
      let sent0 = 0;
      const counter = {
        start() { sent0 = serverBytesSent(rdp.port); },
        stop(dt) { return { rdpMBps: (serverBytesSent(rdp.port) - sent0) / dt / 1e6 }; },
      };
      // The full screen: 320 columns by 83 rows of the default 6x13 font.
      const res = await measure('ours', page, rdp.display, demo.pid, { scrollGeometry: '320x83+0+0', counter });
      res.serverRSSDelta = res.serverRSS - rssBefore;
      results.push(res);
      await page.context().close();
      console.error(`round ${r + 1}:`, JSON.stringify(res));
    }
    const med = (key) => { const s = results.map((x) => x[key]).sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
    console.log(`RDP desktop, 1920x1080, ${seconds} s of full-screen scrolling and ${keystrokes} keystrokes per run, ${rounds} runs (medians):\n`);
    console.log('| | value | goal |');
    console.log('|---|---|---|');
    console.log(`| frames per second at the canvas | ${med('fps').toFixed(1)} | ≥ 30 |`);
    console.log(`| MB/s to the browser (WebSocket) | ${med('mbps').toFixed(2)} | |`);
    console.log(`| MB/s of RDP from the server | ${med('rdpMBps').toFixed(2)} | |`);
    console.log(`| portal + gateway CPU (cores) | ${med('serverCPU').toFixed(2)} | < 0.5 |`);
    console.log(`| browser CPU (cores) | ${med('browserCPU').toFixed(2)} | |`);
    console.log(`| portal + gateway peak RSS over the idle process (MB) | ${med('serverRSSDelta').toFixed(1)} | < 64 |`);
    console.log(`| input-to-pixel latency, p50 | ${med('latencyP50').toFixed(1)} ms | |`);
    console.log(`| input-to-pixel latency, p90 | ${med('latencyP90').toFixed(1)} ms | |`);
  } finally {
    await browser.close();
    await demo.stop();
  }
}

await main();
