// Session recording, end to end in a real Chromium against `portal demo`:
// a user works in a terminal; the embedded gateway records the session and
// uploads it; an auditor finds it on the Recordings page by a word typed in
// it, plays it, seeks to the middle, and sees what the terminal showed at
// that moment. The same for a VNC desktop, whose recording the player
// seeks in through the gateway's key frames, and which the auditor then
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

  // Play, pause, then seek to the middle by clicking the progress bar, as
  // a person does. At the middle the screen shows the first marker, not
  // yet the second.
  await auditor.locator('#player .ap-player').click();
  await waitFor('playback to start', () => auditor.evaluate(() => window.keywayPlayer.getCurrentTime() > 0));
  await auditor.keyboard.press('Space');
  const bar = auditor.locator('#player .ap-progressbar .ap-bar');
  await bar.scrollIntoViewIfNeeded();
  const box = await bar.boundingBox();
  await auditor.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  const at = await waitFor('the seek', async () => {
    const t = await auditor.evaluate(() => window.keywayPlayer.getCurrentTime());
    return Math.abs(t - duration / 2) < duration / 10 && t;
  });
  await waitFor('the middle of the session on screen', async () => {
    const text = await playerText(auditor);
    return text.includes(`start-42-${word}`) && !text.includes(`end-42-${word}`);
  }, 10000).catch(async (e) => {
    throw new Error(`${e.message} (at ${at} of ${duration} s); player shows:\n${await playerText(auditor)}`);
  });

  // Seeking to the end shows the cleared screen with the second marker.
  await auditor.mouse.click(box.x + box.width - 2, box.y + box.height / 2);
  await waitFor('the end of the session on screen', async () => {
    const text = await playerText(auditor);
    return text.includes(`end-42-${word}`) && !text.includes(`start-42-${word}`);
  }, 10000);

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

  // The timeline spans the session; it starts on the first phase.
  const duration = await waitFor('the timeline', () => auditor.evaluate(() => window.keywayReplay?.duration));
  assert.ok(duration > 11000 && duration < 40000, `recording lasts ${duration} ms`);
  await auditor.locator('#replay-status', { hasText: /paused at 0:00/i }).waitFor();

  // Play until the first phase shows, pause, then click the middle of the
  // timeline, as a person does: the screen shows the second phase.
  await auditor.getByRole('button', { name: 'Play' }).click();
  await waitFor('playback of the first phase', async () => hex(await replayPixel(auditor, 900, 600)) === phases[0]);
  await auditor.getByRole('button', { name: 'Pause' }).click();
  const timeline = auditor.getByLabel('Position in the recording');
  const box = await timeline.boundingBox();
  await auditor.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await auditor.locator('#replay-status', { hasText: /paused at/i }).waitFor();
  const at = await waitFor('the seek to the middle', async () => {
    const p = await auditor.evaluate(() => window.keywayReplay.position);
    return Math.abs(p - duration / 2) < duration / 8 && p;
  });
  await waitFor('the middle of the session on screen', async () => hex(await replayPixel(auditor, 900, 600)) === phases[1], 10000)
    .catch(async (e) => { throw new Error(`${e.message} (at ${at} of ${duration} ms, shows ${hex(await replayPixel(auditor, 900, 600))})`); });

  // Near the end, the third phase; back in the first sixth, the first.
  await auditor.mouse.click(box.x + box.width - 3, box.y + box.height / 2);
  await waitFor('the end of the session on screen', async () => hex(await replayPixel(auditor, 900, 600)) === phases[2], 10000);
  await auditor.mouse.click(box.x + box.width / 6, box.y + box.height / 2);
  await waitFor('the first phase on screen', async () => hex(await replayPixel(auditor, 900, 600)) === phases[0], 10000);

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
