// Remote desktops in a real Chromium against `portal demo`: a VNC desktop
// (Xvnc with an xterm on a #336699 background) and an RDP desktop
// (freerdp-shadow-cli with NLA sharing an X display with an xterm on a
// #553388 background). Connect, see the expected pixels in the canvas,
// type a command into the remote xterm and check what it wrote.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, rmSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
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

// pixel reads one pixel of the remote screen as the browser drew it.
async function pixel(page, x, y) {
  return page.evaluate(([x, y]) => {
    const canvas = window.keywayDesktop.getDisplay().flatten();
    const d = canvas.getContext('2d').getImageData(x, y, 1, 1).data;
    return [d[0], d[1], d[2]];
  }, [x, y]);
}

test('user opens the VNC desktop and types into its xterm', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  await signIn(page, info.user.name, info.user.password);
  await page.locator('[data-resource="demo-vnc"]').getByRole('button').click();
  await page.waitForURL('**/connect/*');
  await page.locator('#desk-status', { hasText: /connected to demo-vnc/i }).waitFor();

  // The background the demo painted, far from the xterm.
  await waitFor('the desktop background in the canvas', async () => {
    const [r, g, b] = await pixel(page, 900, 600);
    return r === 0x33 && g === 0x66 && b === 0x99;
  });
  // The remote desktop takes the window's size (Xvnc can resize).
  const displaySize = () => page.evaluate(() => {
    const d = window.keywayDesktop.getDisplay();
    const c = document.getElementById('desktop');
    return [d.getWidth(), d.getHeight(), c.clientWidth, c.clientHeight];
  });
  await waitFor('the desktop to follow the window', async () => {
    const [w, h, cw, ch] = await displaySize();
    return w === cw && h === ch;
  });
  await page.setViewportSize({ width: 1000, height: 700 });
  await waitFor('the desktop to follow the smaller window', async () => {
    const [w, h, cw, ch] = await displaySize();
    return w === cw && h === ch && w < 1100;
  });

  // The demo's xterm is drawn where the test will point.
  await waitFor('the xterm on the desktop', async () => {
    const [r, g, b] = await pixel(page, 200, 200);
    return !(r === 0x33 && g === 0x66 && b === 0x99);
  });

  // Point at the xterm (focus follows the pointer without a window
  // manager), then type a command that writes a file on the remote side.
  const out = `/tmp/keyway-vnc-e2e-${process.pid}-${Date.now()}.txt`;
  const box = await page.locator('#desktop canvas').last().boundingBox();
  const scale = await page.evaluate(() => window.keywayDesktop.getDisplay().getScale());
  await page.mouse.move(box.x + 200 * scale, box.y + 200 * scale);
  await page.mouse.move(box.x + 210 * scale, box.y + 210 * scale);
  // Over the xterm the remote pointer is an I-beam, drawn locally as a CSS
  // cursor so movement shows without a round trip.
  await waitFor('the remote cursor shape', async () =>
    (await page.evaluate(() => window.keywayDesktop.getDisplay().getElement().style.cursor)).startsWith('url('));
  await page.keyboard.type(`echo vnc-$((6*7)) > ${out}\n`);
  await waitFor('the command typed in the browser to run on the remote desktop', () =>
    existsSync(out) && readFileSync(out, 'utf8').trim() === 'vnc-42', 15000);
  rmSync(out, { force: true });

  // Clipboard, browser to remote: the panel's text lands on the X clipboard.
  const xenv = { ...process.env, DISPLAY: `:${info.vnc_target.display}` };
  await page.getByText('Clipboard', { exact: true }).click();
  await page.getByLabel(/text on the remote clipboard/i).fill('clip-from-browser-7');
  await page.getByRole('button', { name: 'Send to remote desktop' }).click();
  await waitFor('the remote clipboard', () => {
    try {
      return execFileSync('xclip', ['-o', '-selection', 'clipboard'], { env: xenv, timeout: 2000 }).toString() === 'clip-from-browser-7';
    } catch { return false; }
  }, 10000);

  // Clipboard, remote to browser: a new X clipboard shows in the panel.
  const xclip = spawn('sh', ['-c', 'printf %s clip-from-remote-9 | xclip -selection clipboard'], { env: xenv, stdio: 'ignore' });
  await waitFor('the browser to receive the remote clipboard', async () =>
    (await page.getByLabel(/text on the remote clipboard/i).inputValue()) === 'clip-from-remote-9', 10000);
  xclip.kill();

  // The connection is in the audit log.
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await admin.goto('/audit?action=connect&q=demo-vnc');
  await admin.getByRole('cell', { name: 'demo-vnc' }).first().waitFor();
});

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
