// Remote desktops in a real Chromium against `portal demo`: a VNC desktop
// (Xvnc with an xterm on a #336699 background) and an RDP desktop
// (freerdp-shadow-cli with NLA sharing an X display with an xterm on a
// #553388 background). Connect, see the expected pixels in the canvas,
// type a command into the remote xterm and check what it wrote.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, rmSync, mkdtempSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDemo, launchBrowser, newPage, signIn, waitFor } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

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

  // Clipboard. freerdp-shadow-cli joins the clipboard channel but has no
  // clipboard behind it (it never sends Monitor Ready, and FreeRDP's own
  // xfreerdp gets no clipboard from it either); a client that sent on the
  // channel lost the session within a second. Sending, twice, must leave
  // the session up and say in the panel why nothing arrived.
  await page.getByText('Clipboard', { exact: true }).click();
  for (const text of ['clip-to-shadow-1', 'clip-to-shadow-2']) {
    await page.getByLabel(/text on the remote clipboard/i).fill(text);
    await page.getByRole('button', { name: 'Send to remote desktop' }).click();
    await page.locator('#desk-clip-note', { hasText: /has not opened its clipboard/ }).waitFor();
  }
  // Still connected: another command reaches the xterm.
  await page.mouse.move(box.x + 200 * scale, box.y + 200 * scale);
  await page.keyboard.type(`echo RDP-$((7*7)) > ${out}\n`);
  await waitFor('a command typed after sending the clipboard', () =>
    existsSync(out) && readFileSync(out, 'utf8').trim() === 'RDP-49', 15000);
  rmSync(out, { force: true });
  assert.match(await page.locator('#desk-status').textContent(), /connected to demo-rdp/i);

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

// startXRDP runs xrdp through e2e/xrdptarget (the Go harness that starts
// it): it resolves with the address and sign-in, and session() with the X
// display of the session once a client signed in.
async function startXRDP() {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-e2e-xrdp-'));
  const go = process.env.GO || (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go');
  const proc = spawn(go, ['run', './e2e/xrdptarget', '-dir', dir], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const lines = [];
  const waiters = [];
  createInterface({ input: proc.stdout }).on('line', (l) => { lines.push(JSON.parse(l)); waiters.splice(0).forEach((w) => w()); });
  let exited = false;
  proc.on('exit', () => { exited = true; waiters.splice(0).forEach((w) => w()); });
  const line = async (n, what) => {
    while (lines.length < n) {
      if (exited) throw new Error(`xrdptarget stopped before ${what}: ${stderr}`);
      await new Promise((r) => waiters.push(r));
    }
    return lines[n - 1];
  };
  const info = await line(1, 'xrdp started');
  return {
    ...info,
    session: () => line(2, 'the session display'),
    async stop() {
      if (!exited) {
        proc.stdin.end();
        await once(proc, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('user copies text both ways on an xrdp desktop', async () => {
  const { info } = demo;
  const xrdp = await startXRDP();
  try {
    const admin = await newPage(browser, info.url);
    await signIn(admin, info.admin.name, info.admin.password);
    await admin.goto('/admin/resources/new');
    await admin.getByLabel('Name', { exact: true }).fill('e2e-xrdp');
    await admin.getByLabel('Protocol').selectOption('rdp');
    await admin.getByLabel('Host').fill(xrdp.host);
    await admin.getByLabel('Port', { exact: true }).fill(String(xrdp.port));
    await admin.getByLabel('Login').fill(xrdp.user);
    await admin.getByLabel('Password').fill(xrdp.password);
    await admin.getByRole('button', { name: /create resource/i }).click();
    await admin.goto('/admin/grants');
    await admin.getByLabel('Resource').selectOption({ label: 'e2e-xrdp' });
    await admin.getByLabel('User or group').selectOption({ label: `user: ${info.user.name}` });
    await admin.getByRole('button', { name: /add grant/i }).click();

    const page = await newPage(browser, info.url);
    await signIn(page, info.user.name, info.user.password);
    await page.locator('[data-resource="e2e-xrdp"]').getByRole('button').click();
    await page.waitForURL('**/connect/*');
    await page.locator('#desk-status', { hasText: /connected to e2e-xrdp/i }).waitFor();
    const { display, env } = await xrdp.session();
    const xenv = { ...process.env, DISPLAY: `:${display}` };
    for (const kv of env ?? []) {
      const i = kv.indexOf('=');
      xenv[kv.slice(0, i)] = kv.slice(i + 1);
    }

    // Browser to remote: the panel's text lands on the session's X clipboard.
    await page.getByText('Clipboard', { exact: true }).click();
    await page.getByLabel(/text on the remote clipboard/i).fill('clip-to-xrdp-5');
    await page.getByRole('button', { name: 'Send to remote desktop' }).click();
    await waitFor('the xrdp session\'s X clipboard', () => {
      try {
        return execFileSync('xclip', ['-o', '-selection', 'clipboard'], { env: xenv, timeout: 2000 }).toString() === 'clip-to-xrdp-5';
      } catch { return false; }
    }, 20000);
    // xrdp opens its clipboard a moment after the session starts: text sent
    // before that waits, and the note then says it went.
    const note = page.locator('#desk-clip-note');
    if (!(await note.isHidden())) {
      await waitFor('the note that the held text was sent', async () => /opened its clipboard now/.test(await note.textContent()), 20000);
    }

    // Remote to browser: a new X clipboard shows in the panel.
    const xclip = spawn('xclip', ['-i', '-selection', 'clipboard', '-quiet'], { env: xenv, stdio: ['pipe', 'ignore', 'ignore'] });
    xclip.stdin.end('clip-from-xrdp-6');
    try {
      await waitFor('the browser to receive the xrdp clipboard', async () =>
        (await page.getByLabel(/text on the remote clipboard/i).inputValue()) === 'clip-from-xrdp-6', 20000);
    } finally {
      xclip.kill();
    }
    assert.match(await page.locator('#desk-status').textContent(), /connected to e2e-xrdp/i);
    await page.goto('/');
  } finally {
    await xrdp.stop();
  }
});
