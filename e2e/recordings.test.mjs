// Session recording, end to end in a real Chromium against `portal demo`:
// a user works in a terminal; the embedded gateway records the session and
// uploads it; an auditor finds it on the Recordings page by a word typed in
// it, seeks to the middle before playing, and sees what the terminal
// showed at that moment, then plays, changes speed, pauses and seeks with
// the control bar both players share. The same for a VNC desktop, which
// shows its first picture before Play, whose recording the player seeks
// in through the gateway's key frames, and which the auditor then
// exports as a video file (ffmpeg is a test dependency: without it the
// test fails).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { startDemo, launchBrowser, newPage, signIn, terminalText, waitFor } from './harness.mjs';

let demo;
let browser;

before(async () => {
  // Key frames every 2 s, so a short desktop session has several.
  demo = await startDemo(['--recording-keyframes', '2s']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

// clickTimeline clicks the player's timeline at fraction f of its width,
// as a person does.
async function clickTimeline(page, f) {
  const timeline = page.getByLabel('Position in the recording');
  await timeline.scrollIntoViewIfNeeded();
  const box = await timeline.boundingBox();
  await page.mouse.click(Math.min(box.x + box.width * f, box.x + box.width - 1), box.y + box.height / 2);
}

// checkBar checks the control bar both players share: its controls by
// role and name, reached with Tab in order, the key hints, and a status
// line that screen readers announce.
async function checkBar(page) {
  await page.getByRole('button', { name: 'Play' }).waitFor();
  await page.getByRole('slider', { name: 'Position in the recording' }).waitFor();
  await page.getByRole('combobox', { name: 'Speed' }).waitFor();
  await page.getByRole('button', { name: 'Full screen' }).waitFor();
  await page.getByText('Space plays or pauses, ← and → move 5 seconds, F goes full screen; the timeline seeks.').waitFor();
  const status = page.locator('#player-status');
  assert.equal(await status.getAttribute('role'), 'status');
  assert.equal(await status.getAttribute('aria-live'), 'polite');
  await page.getByRole('button', { name: 'Play' }).focus();
  const order = [];
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => document.activeElement.id));
  }
  assert.deepEqual(order, ['player-timeline', 'player-speed', 'player-fullscreen']);
  await page.evaluate(() => document.activeElement.blur());
}

// playerText is the text on the player's terminal screen.
async function playerText(page) {
  return page.evaluate(() => {
    const term = document.querySelector('#player .ap-term');
    return term ? term.innerText : '';
  });
}

test('an auditor finds a session by a word typed in it and replays it', async () => {
  const { info } = demo;
  // A word nobody else typed, so the search finds exactly this session.
  const word = `kwrec${Date.now().toString(36)}`;

  // The user's session: a first marker, a pause, then the screen cleared
  // and a second marker. The markers are computed by the shell, so they
  // appear only in output, never in the typed line.
  const user = await newPage(browser, info.url);
  await signIn(user, info.user.name, info.user.password);
  await user.goto('/');
  await user.locator('[data-resource]', { hasText: info.ssh_target.resource }).getByRole('button', { name: /^connect to/i }).click();
  await user.locator('#term-status', { hasText: /connected/i }).waitFor();
  await waitFor('a shell prompt', async () => (await terminalText(user)).includes('$'));
  await user.keyboard.type(`echo start-$((6*7))-${word}\n`);
  await waitFor('the first marker', async () => (await terminalText(user)).includes(`start-42-${word}`));
  await user.keyboard.type(`sleep 4; clear; echo end-$((6*7))-${word}\n`);
  await waitFor('the second marker', async () => (await terminalText(user)).includes(`end-42-${word}`), 20000);
  // The shell waits before it exits, so the recording's last two seconds
  // show the end marker: a seek near the end lands on it however quickly
  // the test typed.
  await user.keyboard.type('sleep 2; exit\n');
  await user.locator('#term-status', { hasText: /exit status 0/i }).waitFor();

  // A user has no access to recordings.
  const denied = await user.goto('/recordings');
  assert.equal(denied.status(), 403);

  // The auditor searches for the word; the upload follows the session's
  // end within moments, so the search is repeated until it shows up.
  const auditor = await newPage(browser, info.url);
  await signIn(auditor, info.auditor.name, info.auditor.password);
  await auditor.getByRole('link', { name: 'Recordings', exact: true }).click();
  await auditor.waitForURL('**/recordings');
  await waitFor('the recording to be searchable', async () => {
    await auditor.getByLabel('Text in the session').fill(word);
    await auditor.getByRole('button', { name: 'Search' }).click();
    await auditor.waitForURL(/q=/);
    return (await auditor.locator('tr[data-recording]').count()) === 1;
  });
  const row = auditor.locator('tr[data-recording]');
  await row.getByRole('cell', { name: info.user.name, exact: true }).waitFor();
  await row.getByRole('cell', { name: info.ssh_target.resource, exact: true }).waitFor();
  await row.getByRole('link', { name: /play/i }).click();
  await auditor.waitForURL(/\/recordings\/\d+$/);

  // The player and the session's facts.
  await auditor.getByRole('heading', { name: `${info.user.name} on ${info.ssh_target.resource}` }).waitFor();
  await auditor.getByText('embedded', { exact: true }).waitFor();
  const duration = await waitFor('the recording to load in the player', () =>
    auditor.evaluate(() => window.keywayPlayer?.getDuration()));
  assert.ok(duration > 4 && duration < 30, `recording lasts ${duration} s`);

  // The shared control bar, used as a person does. Before Play, a click on
  // the middle of the timeline shows the screen then: the first marker,
  // not yet the second.
  const status = auditor.locator('#player-status');
  await status.filter({ hasText: /^paused at 0:00\.$/i }).waitFor();
  await checkBar(auditor);
  const clickAt = (f) => clickTimeline(auditor, f);
  const now = () => auditor.evaluate(() => window.keywayPlayer.getCurrentTime());
  const middle = async (what) => {
    await waitFor(what, async () => {
      const text = await playerText(auditor);
      return text.includes(`start-42-${word}`) && !text.includes(`end-42-${word}`);
    }, 10000).catch(async (e) => {
      throw new Error(`${e.message} (at ${await now()} of ${duration} s); player shows:\n${await playerText(auditor)}`);
    });
  };
  await clickAt(0.5);
  const at = await waitFor('the seek before Play', async () => {
    const t = await now();
    return Math.abs(t - duration / 2) < duration / 10 && t;
  });
  await middle('the middle of the session on screen before Play');
  await status.filter({ hasText: /^paused at \d+:\d\d\.$/i }).waitFor();

  // A slower speed makes a new player where this one was: still paused
  // there, the same screen.
  await auditor.getByLabel('Speed').selectOption('0.5');
  await waitFor('the slower player', async () => Math.abs((await now()) - at) < 0.05 &&
    (await auditor.getByRole('button', { name: 'Play' }).isVisible()));
  await middle('the middle of the session on screen after the speed change');

  // Play at 0.5×, then back to 1× while playing: it keeps playing from
  // where it was.
  await auditor.getByRole('button', { name: 'Play' }).click();
  await status.filter({ hasText: 'Playing at 0.5× speed.' }).waitFor();
  const t0 = await waitFor('playback to move', async () => { const t = await now(); return t > at + 0.1 && t; });
  await auditor.getByLabel('Speed').selectOption('1');
  await status.filter({ hasText: 'Playing at 1× speed.' }).waitFor();
  await waitFor('playback to go on at 1×', async () => (await now()) > t0);
  // Space pauses wherever the focus is outside a field: here the screen.
  await auditor.locator('#player').click();
  await auditor.keyboard.press('Space');
  await auditor.getByRole('button', { name: 'Play' }).waitFor();
  await status.filter({ hasText: /^paused at/i }).waitFor();

  // Seeking to the end shows the cleared screen with the second marker;
  // ← goes back 5 s.
  await clickAt(1);
  await waitFor('the end of the session on screen', async () => {
    const text = await playerText(auditor);
    return text.includes(`end-42-${word}`) && !text.includes(`start-42-${word}`);
  }, 10000).catch(async (e) => {
    throw new Error(`${e.message} (at ${await now()} of ${duration} s, ${await status.textContent()}); player shows:\n${await playerText(auditor)}`);
  });
  const end = await now();
  await auditor.keyboard.press('ArrowLeft');
  await waitFor('← to go back 5 s', async () => Math.abs((await now()) - Math.max(0, end - 5)) < 0.2);

  // Download link and audit trail.
  const href = await auditor.getByRole('button', { name: /download recording/i }).getAttribute('href');
  assert.match(href, /\/recordings\/\d+\/file\?download=1$/);
  await auditor.goto('/audit?action=recording.view');
  await auditor.getByRole('cell', { name: info.ssh_target.resource }).first().waitFor();
});

// desktopPixel reads one pixel of the live desktop as the browser drew it.
async function desktopPixel(page, x, y) {
  return page.evaluate(([x, y]) => {
    const d = window.keywayDesktop.getDisplay().flatten().getContext('2d').getImageData(x, y, 1, 1).data;
    return [d[0], d[1], d[2]];
  }, [x, y]);
}

// replayPixel reads one pixel of the recording as the player shows it.
async function replayPixel(page, x, y) {
  return page.evaluate(([x, y]) => window.keywayReplay?.pixel(x, y).slice(0, 3) ?? [], [x, y]);
}

// clockOf is ms as the player's clock shows it.
const clockOf = (ms) => `${Math.floor(ms / 60000)}:${String(Math.floor(ms / 1000) % 60).padStart(2, '0')}`;

const hex = ([r, g, b]) => '#' + [r, g, b].map((c) => (c ?? 0).toString(16).padStart(2, '0')).join('');

test('an auditor finds a VNC session, plays it and seeks to its middle', async () => {
  const { info } = demo;
  const xenv = { ...process.env, DISPLAY: `:${info.vnc_target.display}` };
  const paint = (colour) => execFileSync('xsetroot', ['-solid', colour], { env: xenv, timeout: 5000 });
  // Three phases of the desktop's background, about four seconds each:
  // the middle of the recording is in the second.
  const phases = ['#336699', '#994433', '#339944'];
  paint(phases[0]);

  const user = await newPage(browser, info.url);
  await signIn(user, info.user.name, info.user.password);
  await user.locator('[data-resource="demo-vnc"]').getByRole('button').click();
  await user.waitForURL('**/connect/*');
  await user.locator('#desk-status', { hasText: /connected to demo-vnc/i }).waitFor();
  for (const [i, colour] of phases.entries()) {
    if (i > 0) paint(colour);
    await waitFor(`the ${colour} background in the browser`, async () => hex(await desktopPixel(user, 900, 600)) === colour);
    await new Promise((r) => setTimeout(r, 4000)); // the phase lasts, to be seen in the recording
  }
  await user.goto('/'); // leaving the page ends the session; the gateway uploads its recording

  const auditor = await newPage(browser, info.url);
  await signIn(auditor, info.auditor.name, info.auditor.password);
  await auditor.goto('/recordings');
  await waitFor('the desktop recording to be listed', async () => {
    await auditor.getByLabel('Resource').fill('demo-vnc');
    await auditor.getByRole('button', { name: 'Search' }).click();
    await auditor.waitForURL(/resource=demo-vnc/);
    return (await auditor.locator('tr[data-recording]').count()) === 1;
  });
  const row = auditor.locator('tr[data-recording]');
  await row.getByRole('cell', { name: 'vnc', exact: true }).waitFor();
  await row.getByRole('link', { name: /play/i }).click();
  await auditor.waitForURL(/\/recordings\/\d+$/);
  await auditor.getByRole('heading', { name: `${info.user.name} on demo-vnc` }).waitFor();

  // The timeline spans the session. Before Play, the player shows the
  // session's first picture (not a blank screen) at 0:00.
  const duration = await waitFor('the timeline', () => auditor.evaluate(() => window.keywayReplay?.duration));
  assert.ok(duration > 11000 && duration < 40000, `recording lasts ${duration} ms`);
  const status = auditor.locator('#player-status');
  await status.filter({ hasText: /^paused at 0:00\.$/i }).waitFor();
  assert.equal(hex(await replayPixel(auditor, 900, 600)), phases[0], 'the first frame before Play');
  assert.equal(await auditor.locator('#player-time').textContent(), `0:00 / ${clockOf(duration)}`);
  await checkBar(auditor);

  // Play until the first phase shows, pause, then click the middle of the
  // timeline, as a person does: the screen shows the second phase.
  await auditor.getByRole('button', { name: 'Play' }).click();
  await waitFor('playback to start', () => auditor.evaluate(() => window.keywayReplay.position > 0));
  await auditor.getByRole('button', { name: 'Pause' }).click();
  await clickTimeline(auditor, 0.5);
  await status.filter({ hasText: /paused at/i }).waitFor().catch(async (e) => {
    throw new Error(`${e.message}; the status says ${await status.textContent()}`);
  });
  const at = await waitFor('the seek to the middle', async () => {
    const p = await auditor.evaluate(() => window.keywayReplay.position);
    return Math.abs(p - duration / 2) < duration / 8 && p;
  });
  await waitFor('the middle of the session on screen', async () => hex(await replayPixel(auditor, 900, 600)) === phases[1], 10000)
    .catch(async (e) => { throw new Error(`${e.message} (at ${at} of ${duration} ms, shows ${hex(await replayPixel(auditor, 900, 600))})`); });

  // ← goes back 5 s, as on the terminal player.
  await auditor.keyboard.press('ArrowLeft');
  await waitFor('← to go back 5 s', async () =>
    Math.abs((await auditor.evaluate(() => window.keywayReplay.position)) - Math.max(0, at - 5000)) < 200);

  // Near the end, the third phase; back in the first sixth, the first.
  await clickTimeline(auditor, 1);
  await waitFor('the end of the session on screen', async () => hex(await replayPixel(auditor, 900, 600)) === phases[2], 10000);
  await clickTimeline(auditor, 1 / 6);
  await waitFor('the first phase on screen', async () => hex(await replayPixel(auditor, 900, 600)) === phases[0], 10000);

  // Full screen takes the screen and the bar; F leaves it.
  await auditor.getByRole('button', { name: 'Full screen' }).click();
  await waitFor('full screen', () => auditor.evaluate(() => document.fullscreenElement?.id === 'desktop-player'));
  await auditor.getByRole('button', { name: 'Exit full screen' }).waitFor();
  await auditor.keyboard.press('f');
  await waitFor('full screen to end', () => auditor.evaluate(() => document.fullscreenElement === null));
  await auditor.getByRole('button', { name: 'Full screen' }).waitFor();

  // Export as video: the page follows the export's progress, then offers
  // the file.
  const player = auditor.url();
  assert.equal(await auditor.getByText('Video export needs ffmpeg').count(), 0,
    'the portal found no ffmpeg: install it (make deps-test does)');
  await auditor.getByRole('button', { name: 'Export video' }).click();
  await auditor.waitForURL(/#video-export$/);
  const progress = auditor.locator('#video-progress-text');
  const download = auditor.getByRole('button', { name: /download video \(\.mp4/i });
  // The progress shows unless the export was done before the page came
  // back (a still desktop encodes fast); both are right.
  const seen = new Set();
  await waitFor('the export to finish', async () => {
    if (await progress.isVisible()) seen.add(await progress.textContent());
    return download.isVisible();
  }, 120000);
  assert.ok(seen.size > 0 || await auditor.evaluate(() => document.getElementById('video-export').dataset.state === 'done'),
    'neither progress nor the finished export was shown');
  for (const text of seen) assert.match(text, /^(Exporting the video… \d+%|Waiting for another export to finish…)$/);
  const [file] = await Promise.all([auditor.waitForEvent('download'), download.click()]);
  assert.match(file.suggestedFilename(), /^keyway-demo-vnc-.*\.mp4$/);
  const path = await file.path();
  assert.ok(statSync(path).size > 0, 'the video is empty');
  const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries',
    'stream=codec_name,width,height:format=duration', '-of', 'json', path], { timeout: 30000 }));
  const [stream] = probe.streams;
  assert.equal(stream.codec_name, 'h264');
  assert.ok(stream.width >= 900 && stream.height >= 600, `video of ${stream.width}×${stream.height}`);
  const seconds = Number(probe.format.duration);
  assert.ok(Math.abs(seconds * 1000 - duration) < 1000, `video of ${seconds} s, recording of ${duration} ms`);
  // Its middle frame shows the second phase, as the player did.
  const rgb = execFileSync('ffmpeg', ['-v', 'error', '-ss', String(seconds / 2), '-i', path, '-frames:v', '1',
    '-vf', 'format=rgb24,crop=1:1:900:600', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { timeout: 30000 });
  const want = phases[1].slice(1).match(/../g).map((h) => parseInt(h, 16));
  assert.ok([...rgb].every((c, i) => Math.abs(c - want[i]) <= 12), `the video's middle shows ${hex([...rgb])}, want ${phases[1]}`);

  // Back on the page, the video is offered at once: it is kept.
  await auditor.goto(player);
  await auditor.getByRole('button', { name: /download video \(\.mp4/i }).waitFor();

  // Seeking fetched the recording from key frames, each fetch audited;
  // so are the export and its download.
  await auditor.goto('/audit?action=recording.view&q=demo-vnc');
  await auditor.getByRole('cell', { name: 'demo-vnc' }).first().waitFor();
  for (const action of ['recording.export', 'recording.export.download']) {
    await auditor.goto(`/audit?action=${action}`);
    await auditor.getByRole('cell', { name: 'demo-vnc' }).first().waitFor();
  }
});
