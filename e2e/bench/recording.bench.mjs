// Desktop recording benchmark, against `portal demo` in a headless
// Chromium (run with `node e2e/bench/recording.bench.mjs`, part of
// `make bench`):
//
// 1. Overhead: the demo's VNC desktop at 1920×1080 with an xterm
//    scrolling random hex, measured as desktop.bench.mjs does, with the
//    resource's recording off and on, alternately (A B A B).
// 2. Size: the recordings of the "on" runs (a busy screen), and of a
//    minute of typical work (commands typed at a person's pace into an
//    xterm, their output, pauses), per hour.
// 3. Seek: a one-hour recording written by synthrec (the gateway's own
//    display pipeline and key frames over a simulated hour of terminal
//    work) is put in the embedded gateway's spool, uploaded, and opened
//    in the player; the time from a seek (what a click on the timeline
//    does) until the frame is on screen, through key frames and, in the
//    same run, replaying from the start as a player without them must.
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync, cpSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDemo, launchBrowser, newPage, signIn, waitFor } from '../harness.mjs';
import { rounds, pageHelpers, measure, startX, viewableXterms } from './lib.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const viewport = { width: 1920, height: 1080 };
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };

// guacBytes sums the stored desktop recordings' sizes.
function guacBytes(dir) {
  let n = 0;
  for (const e of readdirSync(dir, { recursive: true })) {
    if (String(e).endsWith('.guac')) n += statSync(join(dir, String(e))).size;
  }
  return n;
}

async function setRecording(admin, mode) {
  await admin.goto('/admin/resources');
  await admin.getByRole('link', { name: 'demo-vnc', exact: true }).click();
  await admin.getByLabel('Recording', { exact: true }).selectOption(mode);
  await admin.getByRole('button', { name: /save changes/i }).click();
  await admin.locator('.flash').first().waitFor();
}

async function openDesktop(browser, info) {
  const page = await newPage(browser, info.url, viewport);
  await signIn(page, info.user.name, info.user.password);
  await page.addInitScript(pageHelpers);
  page.on('websocket', (ws) => ws.on('framereceived', (f) => page.bytesHook?.(f.payload.length)));
  await page.locator('[data-resource="demo-vnc"]').getByRole('button').click();
  await page.waitForURL('**/connect/*');
  return page;
}


function report(results, perHourBusy, typicalBytes, typicalSecs, seek) {
  const min = 60000;
  if (results.off.length === 0) return reportSeek(seek);
  const row = (label, key, digits) => {
    const a = med(results.off.map((x) => x[key])); const b = med(results.on.map((x) => x[key]));
    return `| ${label} | ${a.toFixed(digits)} | ${b.toFixed(digits)} | ${(b / a).toFixed(2)} |`;
  };
  console.log(`Desktop recording overhead: 1920x1080 VNC, scrolling xterm, ${rounds} runs each (medians):\n`);
  console.log('| | recording off | recording on | on / off |');
  console.log('|---|---|---|---|');
  console.log(row('frames per second at the canvas', 'fps', 1));
  console.log(row('MB/s over the WebSocket', 'mbps', 2));
  console.log(row('input-to-pixel latency, p50 (ms)', 'latencyP50', 1));
  console.log(row('server-side CPU (cores)', 'serverCPU', 2));
  console.log(`\nRecording size per hour: busy screen ${perHourBusy.map((x) => x.toFixed(0)).join(', ')} MB/h; typical work ${(typicalBytes / 1e6).toFixed(2)} MB in ${typicalSecs.toFixed(0)} s = ${(typicalBytes / typicalSecs * 3600 / 1e6).toFixed(1)} MB/h\n`);
  reportSeek(seek);
}

function reportSeek(seek) {
  const min = 60000;
  if (!seek) return;
  const { targets, withKeyFrames, fromStart } = seek;
  console.log('Seek in a one-hour recording (ms from seek to frame on screen):\n');
  console.log(`| through key frames | ${targets.map((t) => `${(t / min).toFixed(1)} min`).join(' | ')} | median |`);
  console.log(`| | ${withKeyFrames.map((x) => x == null ? 'failed' : x.toFixed(0)).join(' | ')} | ${med(withKeyFrames.filter((x) => x != null)).toFixed(0)} |`);
  console.log(`\nReplaying from the start (no key frames): to 5 min ${fromStart[0] == null ? 'over 600 s' : fromStart[0].toFixed(0) + ' ms'}, to 55 min ${fromStart[1] == null ? 'over 600 s' : fromStart[1].toFixed(0) + ' ms'}`);
}

async function main() {
  const demo = await startDemo();
  const browser = await launchBrowser();
  const { info } = demo;
  const display = info.vnc_target.display;
  const stored = join(demo.data, 'recordings');
  try {
    const admin = await newPage(browser, info.url);
    await signIn(admin, info.admin.name, info.admin.password);

    // 1 and 2: overhead, and the size of a busy screen's recording.
    const results = { off: [], on: [] };
    const perHourBusy = [];
    // BENCH_ONLY_SEEK=1 measures the seek alone.
    const only = process.env.BENCH_ONLY_SEEK;
    for (let r = 0; r < (only ? 0 : rounds); r++) {
      for (const mode of ['off', 'on']) {
        await setRecording(admin, mode);
        const before = guacBytes(stored);
        const t0 = Date.now();
        const page = await openDesktop(browser, info);
        const res = await measure(`recording ${mode}`, page, display, demo.pid);
        await page.context().close();
        const secs = (Date.now() - t0) / 1000;
        results[mode].push(res);
        if (mode === 'on') {
          const bytes = await waitFor('the recording to be stored', () => { const b = guacBytes(stored) - before; return b > 0 && b; }, 60000);
          perHourBusy.push(bytes / secs * 3600 / 1e6);
        }
        console.error(`recording ${mode}, round ${r + 1}:`, JSON.stringify(res));
      }
    }

    // A minute of typical work, recorded.
    await setRecording(admin, 'on');
    const before = guacBytes(stored);
    const t0 = Date.now();
    const page = await openDesktop(browser, info);
    if (only) await page.context().close();
    else {
    await waitFor('the remote screen', () => page.evaluate(() => { try { return window.benchCanvas().width >= 1000; } catch { return false; } }), 30000);
    const xterms = viewableXterms(display);
    const term = startX(display, ['-geometry', '120x40+100+100']);
    await waitFor('the xterm', () => viewableXterms(display) > xterms, 15000);
    const box = await page.evaluate(() => { const r = window.benchCanvas().getBoundingClientRect(); return [r.x, r.y, r.width / window.benchCanvas().width]; });
    await page.mouse.move(box[0] + 300 * box[2], box[1] + 300 * box[2]);
    const commands = ['ls -l /usr/bin | head -30', 'uptime', 'df -h', 'ps aux | head -20', 'cat /etc/os-release', 'free -m', 'ls /etc | head -40', 'date'];
    for (let i = 0; Date.now() - t0 < 60000; i++) {
      await page.keyboard.type(commands[i % commands.length], { delay: 200 });
      await page.keyboard.press('Enter');
      await new Promise((r) => setTimeout(r, 3000)); // reading the output
    }
    term.stop();
    await page.context().close();
    }
    const typicalSecs = (Date.now() - t0) / 1000;
    const typicalBytes = only ? 0 : await waitFor('the recording to be stored', () => { const b = guacBytes(stored) - before; return b > 0 && b; }, 60000);

    // 3: seek in a one-hour recording.
    if (process.env.BENCH_SKIP_SEEK) {
      report(results, perHourBusy, typicalBytes, typicalSecs, null);
      return;
    }
    const spoolDir = join(demo.data, 'gateway', 'spool');
    mkdirSync(spoolDir, { recursive: true });
    const synth = process.env.BENCH_SYNTH_DIR;
    if (synth) cpSync(synth, spoolDir, { recursive: true });
    else execFileSync('go', ['run', './e2e/bench/synthrec', '-spool', spoolDir, '-session', 'synthetic-hour', '-minutes', '60'], { cwd: root, stdio: 'inherit' });
    // The uploader looks through the spool when a recording finishes, or
    // every minute: a short session makes it look now.
    const nudge = await openDesktop(browser, info);
    await waitFor('the remote screen', () => nudge.evaluate(() => { try { return window.benchCanvas().width >= 1000; } catch { return false; } }), 30000);
    await nudge.context().close();
    const auditor = await newPage(browser, info.url, viewport);
    await signIn(auditor, info.auditor.name, info.auditor.password);
    const id = await waitFor('the hour-long recording to be stored', async () => {
      await auditor.goto('/recordings?user=demo');
      const href = await auditor.locator('tr[data-recording] a', { hasText: /play/i }).first().getAttribute('href').catch(() => null);
      return href;
    }, 180000);
    const seekTimes = async (query, targets, timeoutMs) => {
      const p = await newPage(browser, info.url, viewport);
      await signIn(p, info.auditor.name, info.auditor.password);
      await p.goto(id + query);
      await waitFor('the player', () => p.evaluate(() => window.keywayReplay?.duration > 0));
      await p.locator('#player-status', { hasText: /paused at/i }).waitFor({ timeout: timeoutMs });
      const out = [];
      for (const t of targets) {
        const ms = await p.evaluate(([t, limit]) => {
          const t0 = performance.now();
          return Promise.race([
            window.keywayReplay.seek(t).then(() => performance.now() - t0),
            new Promise((resolve) => setTimeout(() => resolve(null), limit)),
          ]);
        }, [t, timeoutMs]).catch(() => null);
        console.error(`seek${query} to ${(t / 60000).toFixed(2)} min: ${ms == null ? 'failed' : ms.toFixed(0) + ' ms'}`);
        out.push(ms);
      }
      await p.context().close();
      return out;
    };
    const min = 60000;
    const targets = [55 * min, 30 * min + 7000, 10 * min + 3000, 58 * min + 20000, 5 * min + 9000, 42 * min + 1000];
    const withKeyFrames = await seekTimes('', targets, 60000);
    // From the start, each on a fresh page, as a first click would be.
    const fromStart = [...await seekTimes('?keyframes=off', [5 * min], 600000),
      ...(process.env.BENCH_SEEK_LONG ? await seekTimes('?keyframes=off', [55 * min], 600000) : [null])];

    report(results, perHourBusy, typicalBytes, typicalSecs, { targets, withKeyFrames, fromStart });
  } finally {
    await browser.close();
    await demo.stop();
  }
}

await main();
