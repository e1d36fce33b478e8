// Large clipboards to a remote desktop, in a real Chromium against `portal
// demo` (Xvnc): text over the 64 KiB of one message reaches the X
// clipboard whole, and text over the gateway's limit is refused in the
// page, in words, with the session left running.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { startDemo, launchBrowser, newPage, signIn, waitFor } from './harness.mjs';

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

const sha256 = (s) => createHash('sha256').update(s).digest('hex');

test('a large clipboard reaches the VNC desktop; one over the limit is refused in words', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  await signIn(page, info.user.name, info.user.password);
  await page.locator('[data-resource="demo-vnc"]').getByRole('button').click();
  await page.waitForURL('**/connect/*');
  const connected = page.locator('#desk-status', { hasText: /connected to demo-vnc/i });
  await connected.waitFor();

  // 200 KiB of UTF-8 in numbered lines: over one WebSocket message's
  // 64 KiB, under TigerVNC's own 256 KiB.
  const lines = [];
  for (let i = 0; i < 2000; i++) lines.push(`${String(i).padStart(5, '0')} ${'ä'.repeat(20)}${'y'.repeat(56)}`);
  const text = lines.join('\n');
  assert.ok(Buffer.byteLength(text) > 150 << 10);
  const panel = page.getByLabel(/text on the remote clipboard/i);
  await page.getByText('Clipboard', { exact: true }).click();
  await panel.waitFor();
  // Set at once: typing 200 KiB into the field would take minutes.
  await panel.evaluate((el, t) => { el.value = t; }, text);
  await page.getByRole('button', { name: 'Send to remote desktop' }).click();
  const xenv = { ...process.env, DISPLAY: `:${info.vnc_target.display}` };
  const remote = () => {
    try {
      return execFileSync('xclip', ['-o', '-selection', 'clipboard'], { env: xenv, timeout: 5000, maxBuffer: 4 << 20 }).toString();
    } catch { return ''; }
  };
  await waitFor('the remote clipboard to hold the text', () => sha256(remote()) === sha256(text), 20000);

  // Over the limit: the page says so and sends nothing.
  const max = Number(await page.locator('#desktop').getAttribute('data-clipboard-max'));
  assert.equal(max, 1 << 20);
  await panel.evaluate((el, n) => { el.value = 'z'.repeat(n); }, max + 1);
  await page.getByRole('button', { name: 'Send to remote desktop' }).click();
  await page.locator('#desk-clip-note', { hasText: /at most 1\.0 MB can go to the remote clipboard\. nothing was sent/i }).waitFor();
  assert.equal(await connected.count(), 1, 'the session goes on');
  assert.equal(sha256(remote()), sha256(text), 'the remote clipboard is unchanged');
  await page.context().close();
});
