// An RDP desktop in a real Chromium against `portal demo`
// (freerdp-shadow-cli with NLA sharing an X display with an xterm on a
// #553388 background): connect, see the expected pixels in the canvas,
// type a command into the remote xterm that writes a file, disconnect.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, rmSync } from 'node:fs';
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

async function pixel(page, x, y) {
  return page.evaluate(([x, y]) => {
    const canvas = window.keywayDesktop.getDisplay().flatten();
    const d = canvas.getContext('2d').getImageData(x, y, 1, 1).data;
    return [d[0], d[1], d[2]];
  }, [x, y]);
}

test('user opens the RDP desktop, types into its xterm and disconnects', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  await signIn(page, info.user.name, info.user.password);
  await page.locator('[data-resource="demo-rdp"]').getByRole('button').click();
  await page.waitForURL('**/connect/*');
  await page.locator('#desk-status', { hasText: /connected to demo-rdp/i }).waitFor();

  // The shared display's background, far from the xterm.
  await waitFor('the RDP desktop background in the canvas', async () => {
    const [r, g, b] = await pixel(page, 1000, 740);
    return r === 0x55 && g === 0x33 && b === 0x88;
  });
  await waitFor('the xterm on the RDP desktop', async () => {
    const [r, g, b] = await pixel(page, 200, 200);
    return !(r === 0x55 && g === 0x33 && b === 0x88);
  });

  // Point at the xterm (focus follows the pointer without a window
  // manager), then type a command that writes a file on the remote side.
  const out = `/tmp/keyway-rdp-e2e-${process.pid}-${Date.now()}.txt`;
  const box = await page.locator('#desktop canvas').last().boundingBox();
  const scale = await page.evaluate(() => window.keywayDesktop.getDisplay().getScale());
  await page.mouse.move(box.x + 200 * scale, box.y + 200 * scale);
  await page.mouse.move(box.x + 210 * scale, box.y + 210 * scale);
  await page.keyboard.type(`echo RDP-$((6*7)) > ${out}\n`);
  await waitFor('the command typed in the browser to run on the RDP desktop', () =>
    existsSync(out) && readFileSync(out, 'utf8').trim() === 'RDP-42', 15000);
  rmSync(out, { force: true });

  // Leaving the page ends the session; the audit log has both ends.
  await page.goto('/');
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await admin.goto('/audit?q=demo-rdp');
  await admin.getByRole('cell', { name: 'demo-rdp' }).first().waitFor();
  await waitFor('the session end in the audit log', async () => {
    await admin.reload();
    return (await admin.getByText(/session\.end/).count()) > 0;
  });
  assert.ok(true);
});
