// Session recording, end to end in a real Chromium against `portal demo`:
// a user works in a terminal; the embedded gateway records the session and
// uploads it; an auditor finds it on the Recordings page by a word typed in
// it, plays it, seeks to the middle, and sees what the terminal showed at
// that moment.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, newPage, signIn, terminalText, waitFor } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo();
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
  await user.keyboard.type('exit\n');
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
