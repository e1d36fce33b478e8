// x11vnc with its pixel cache (-ncache 10, which its banner recommends)
// in a real Chromium: its framebuffer is twelve screens tall (1280x9600
// for a 1280x800 Xvfb), and the desktop page shows only the real screen,
// at its size.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { startDemo, launchBrowser, newPage, signIn, waitFor } from './harness.mjs';

let demo;
let browser;
const procs = [];

// startXvfb starts Xvfb on a display it picks itself (-displayfd).
async function startXvfb(geometry) {
  const xvfb = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', geometry, '-nolisten', 'tcp'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  procs.push(xvfb);
  let out = '';
  xvfb.stdio[3].on('data', (d) => { out += d; });
  await waitFor('Xvfb to pick a display', () => {
    if (xvfb.exitCode !== null) throw new Error(`Xvfb exited with ${xvfb.exitCode}`);
    return out.includes('\n');
  }, 15000);
  return Number(out.trim());
}

// startX11vnc starts x11vnc on display with a password and the pixel
// cache; it picks a free port from a random base (-autoport) and prints it.
async function startX11vnc(display, password) {
  const base = 20000 + Math.floor(Math.random() * 20000);
  const x11vnc = spawn('x11vnc', ['-display', `:${display}`, '-autoport', String(base), '-localhost',
    '-forever', '-shared', '-noxdamage', '-passwd', password, '-ncache', '10'], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(x11vnc);
  let out = '';
  let log = '';
  x11vnc.stdout.on('data', (d) => { out += d; });
  x11vnc.stderr.on('data', (d) => { log += d; });
  const port = await waitFor('x11vnc to listen', () => {
    if (x11vnc.exitCode !== null) throw new Error(`x11vnc exited with ${x11vnc.exitCode}:\n${log}`);
    const m = out.match(/PORT=(\d+)/);
    return m && Number(m[1]);
  }, 20000);
  return port;
}

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
  for (const p of procs.reverse()) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      await once(p, 'exit');
    }
  }
});

// pixel reads one pixel of the remote screen as the browser drew it.
async function pixel(page, x, y) {
  return page.evaluate(([x, y]) => {
    const canvas = window.keywayDesktop.getDisplay().flatten();
    const d = canvas.getContext('2d').getImageData(x, y, 1, 1).data;
    return [d[0], d[1], d[2]];
  }, [x, y]);
}

test('user opens x11vnc -ncache and sees only its real screen', async () => {
  const { info } = demo;
  const display = await startXvfb('1280x800x24');
  const port = await startX11vnc(display, 'x11pw123');
  // Only now: Xvfb resets the screen when its last client leaves.
  execFileSync('xsetroot', ['-solid', '#228844'], { env: { ...process.env, DISPLAY: `:${display}` } });

  // The admin adds x11vnc as a VNC resource and grants it to the user.
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await admin.goto('/admin/resources/new');
  await admin.getByLabel('Name', { exact: true }).fill('x11vnc-ncache');
  await admin.getByLabel('Protocol').selectOption('vnc');
  await admin.getByLabel('Host').fill('127.0.0.1');
  await admin.getByLabel('Port', { exact: true }).fill(String(port));
  await admin.getByLabel('Password', { exact: true }).fill('x11pw123');
  await admin.getByRole('button', { name: /create resource/i }).click();
  await admin.waitForURL('**/admin/resources');
  await admin.goto('/admin/grants');
  await admin.getByLabel('Resource').selectOption({ label: 'x11vnc-ncache' });
  await admin.getByLabel('User or group').selectOption({ label: `user: ${info.user.name}` });
  await admin.getByRole('button', { name: /add grant/i }).click();
  await admin.getByRole('cell', { name: 'x11vnc-ncache', exact: true }).first().waitFor();

  const page = await newPage(browser, info.url);
  await signIn(page, info.user.name, info.user.password);
  await page.locator('[data-resource="x11vnc-ncache"]').getByRole('button').click();
  await page.waitForURL('**/connect/*');
  await page.locator('#desk-status', { hasText: /connected to x11vnc-ncache/i }).waitFor();

  // The desktop is the real screen's size: neither the 1280x9600
  // framebuffer nor the browser window's (x11vnc is not asked to resize
  // while it keeps a cache).
  const size = () => page.evaluate(() => {
    const d = window.keywayDesktop.getDisplay();
    return [d.getWidth(), d.getHeight()];
  });
  await waitFor('the background at the screen\'s bottom right corner', async () => {
    const [r, g, b] = await pixel(page, 1279, 799);
    return r === 0x22 && g === 0x88 && b === 0x44;
  });
  assert.deepEqual(await size(), [1280, 800]);
});
