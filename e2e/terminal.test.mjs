// The first user journey, in a real Chromium against `portal demo` (embedded
// gateway, real OpenSSH sshd): an admin creates a user, a resource and a
// grant; the user connects, types, resizes and exits; failures are shown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
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

const alice = { name: 'alice', password: 'alice-password-1' };

async function createUser(page, u) {
  await page.goto('/admin/users/new');
  await page.getByLabel('Username').fill(u.name);
  await page.getByLabel('Display name').fill('Alice Example');
  await page.getByLabel('Role').selectOption('user');
  await page.getByLabel('Password').fill(u.password);
  await page.getByRole('button', { name: /create user/i }).click();
  await page.waitForURL('**/admin/users');
  await assert.doesNotReject(page.getByRole('cell', { name: u.name, exact: true }).waitFor());
}

async function createResource(page, r) {
  await page.goto('/admin/resources/new');
  await page.getByLabel('Name', { exact: true }).fill(r.name);
  await page.getByLabel('Host').fill(r.host);
  await page.getByLabel('Port', { exact: true }).fill(String(r.port));
  await page.getByLabel('Login').fill(r.login);
  await page.getByLabel('Password').fill(r.password);
  await page.getByRole('button', { name: /create resource/i }).click();
  await page.waitForURL('**/admin/resources');
}

async function grant(page, resource, subject) {
  await page.goto('/admin/grants');
  await page.getByLabel('Resource').selectOption({ label: resource });
  await page.getByLabel('User or group').selectOption({ label: subject });
  await page.getByRole('button', { name: /add grant/i }).click();
  await page.getByRole('cell', { name: resource, exact: true }).first().waitFor();
}

// status waits until the terminal page's status line says text.
async function status(page, text) {
  await page.locator('#term-status', { hasText: text }).waitFor();
}

async function connect(page, resourceName) {
  await page.goto('/');
  const card = page.locator('[data-resource]', { hasText: resourceName });
  await card.getByRole('button', { name: /^connect to/i }).click();
  await page.waitForURL('**/connect/*');
}

test('admin sets up access, user works in a terminal', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await createUser(admin, alice);
  const t = info.ssh_target;
  await createResource(admin, { name: 'e2e-box', host: t.host, port: t.port, login: t.login, password: t.password });
  await createResource(admin, { name: 'e2e-badpw', host: t.host, port: t.port, login: t.login, password: 'wrong-password' });
  await grant(admin, 'e2e-box', 'user: alice');
  await grant(admin, 'e2e-badpw', 'user: alice');

  const page = await newPage(browser, info.url);
  await signIn(page, alice.name, alice.password);
  await page.getByText('e2e-box').waitFor();
  assert.equal(await page.getByText('demo-ssh').count(), 0, 'alice must not see resources not granted to her');

  await connect(page, 'e2e-box');
  await status(page, /connected to e2e-box/i);
  // Her grant allows the terminal only: no way to Files from here.
  assert.equal(await page.locator('#term-files').count(), 0, 'a terminal-only grant must not link to Files');
  await waitFor('a shell prompt', async () => (await terminalText(page)).includes('$'));

  // A command whose output cannot come from the typed line itself.
  await page.keyboard.type('echo kw-$((6*7))-ok\n');
  await waitFor('command output', async () => (await terminalText(page)).includes('kw-42-ok'));

  // The remote pty follows the browser window.
  const sizes = async () => [...(await terminalText(page)).matchAll(/^(\d+) (\d+)$/gm)].map((m) => Number(m[2]));
  await page.keyboard.type('stty size\n');
  const [wide] = await waitFor('stty size', async () => { const s = await sizes(); return s.length === 1 && s; });
  assert.equal(wide, await page.evaluate(() => window.keywayTerminal.cols));
  await page.setViewportSize({ width: 700, height: 500 });
  const narrow = await waitFor('the terminal to refit', async () => {
    const cols = await page.evaluate(() => window.keywayTerminal.cols);
    return cols < wide && cols;
  });
  await page.keyboard.type('stty size\n');
  await waitFor(`the remote pty to be ${narrow} columns wide`, async () => (await sizes())[1] === narrow, 10000)
    .catch(async (e) => { throw new Error(`${e.message}; terminal shows:\n${await terminalText(page)}`); });

  await page.keyboard.type('exit 3\n');
  await status(page, /exit status 3/i);

  // A wrong stored password is reported in words, without a terminal session.
  await connect(page, 'e2e-badpw');
  await status(page, /rejected the login/i);

  // Alice cannot reach admin pages, nor resources by guessing ids.
  const resp = await page.goto('/admin/users');
  assert.equal(resp.status(), 403);
  const guess = await page.goto('/connect/999999');
  assert.equal(guess.status(), 404);

  // Every attempt is in the audit log.
  await admin.goto('/audit?actor=alice');
  await admin.getByRole('cell', { name: 'e2e-box' }).first().waitFor();
  await admin.getByText(/rejected the login/i).first().waitFor();
});

test('demo user connects to the demo target', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  await signIn(page, info.user.name, info.user.password);
  await connect(page, 'demo-ssh');
  await status(page, /connected to demo-ssh/i);
  await page.keyboard.type('printf "%s\\n" "démo ✓ $((1+1))"\n');
  await waitFor('UTF-8 output', async () => (await terminalText(page)).includes('démo ✓ 2'));
});

// pasteText is the 10 MiB pasted below: 10240 lines of 1024 bytes of
// UTF-8 (a line number, 100 two-byte letters, filler, a newline), so that
// pieces of the paste split characters. It runs in the page and here.
function pasteText() {
  const lines = [];
  for (let i = 0; i < 10240; i++) {
    lines.push(`${String(i).padStart(6, '0')} ${'ü'.repeat(100)}${'x'.repeat(816)}\n`);
  }
  return lines.join('');
}

// signedInTerminal opens the demo user's terminal and waits for a prompt.
async function signedInTerminal() {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  await signIn(page, info.user.name, info.user.password);
  await connect(page, 'demo-ssh');
  await status(page, /connected to demo-ssh/i);
  await waitFor('a shell prompt', async () => (await terminalText(page)).includes('$'));
  return page;
}

test('a 10 MB paste reaches the remote shell whole', async () => {
  const page = await signedInTerminal();
  // The remote side stores the paste as it comes, in raw mode (no echo,
  // no line editing: the pty is not the bottleneck), then counts and
  // hashes it; READY (typed as RE''ADY) says it is reading.
  await page.keyboard.type(`f=$(mktemp); stty raw -echo; echo RE''ADY; head -c 10485760 > "$f"; stty sane; wc -c < "$f"; sha256sum < "$f"; rm -f "$f"\n`);
  await waitFor('the remote side to read', async () => /^READY\s*$/m.test(await terminalText(page)));

  // The browser's own paste: a paste event on xterm.js's textarea, as
  // Ctrl+Shift+V or the context menu's Paste make, carrying 10 MiB.
  const sent = await page.evaluate((src) => {
    const text = new Function(`return (${src})()`)();
    const dt = new DataTransfer();
    dt.setData('text/plain', text);
    window.keywayTerminal.textarea.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    return new TextEncoder().encode(text).length;
  }, pasteText.toString());
  assert.equal(sent, 10485760);
  const started = Date.now();
  // A paste this long shows its progress while the remote side takes it.
  await page.locator('#term-paste', { hasText: /sending paste/i }).waitFor();
  // xterm.js sends a pasted newline as the Enter key does, a carriage
  // return, which a raw pty keeps.
  const want = createHash('sha256').update(pasteText().replaceAll('\n', '\r')).digest('hex');
  await waitFor('the remote count and hash', async () => {
    const t = await terminalText(page);
    return /^\s*10485760$/m.test(t) && t.includes(want);
  }, 180000).catch(async (e) => { throw new Error(`${e.message}; terminal shows:\n${(await terminalText(page)).slice(-2000)}`); });
  console.log(`# 10 MiB paste reached the remote shell in ${Date.now() - started} ms`);
  assert.equal(await page.locator('#term-paste').isHidden(), true, 'the progress goes once the paste is sent');
  assert.match(await page.locator('#term-status').textContent(), /connected to demo-ssh/i, 'the session goes on');
  await page.context().close();
});

test('the terminal toolbar: leaving by keyboard, copy and paste keys, font size, Files, full screen, disconnect', async () => {
  const { info } = demo;
  const page = await signedInTerminal();
  const inTerminal = () => page.evaluate(() => document.activeElement === window.keywayTerminal.textarea);
  assert.equal(await inTerminal(), true, 'the terminal has the focus after connecting');

  // Shift+Tab belongs to the shell; Ctrl+Shift+F10 leaves the terminal.
  await page.keyboard.press('Shift+Tab');
  assert.equal(await inTerminal(), true, 'Shift+Tab stays in the terminal');
  await page.keyboard.press('Control+Shift+F10');
  assert.equal(await page.evaluate(() => document.activeElement?.closest('#term-tools') !== null), true,
    'Ctrl+Shift+F10 moves the focus to the toolbar');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'term-disconnect');
  // The help tells how; Tab goes through the toolbar and back into the terminal.
  await page.getByText('Help', { exact: true }).click();
  await page.locator('#term-help', { hasText: /Ctrl\s*\+\s*Shift\s*\+\s*F10/ }).waitFor();
  await page.getByText('Help', { exact: true }).click();
  await page.keyboard.press('Control+Shift+F10');
  for (let i = 0; i < 10 && !(await inTerminal()); i++) await page.keyboard.press('Tab');
  assert.equal(await inTerminal(), true, 'Tab from the toolbar comes back to the terminal');

  // Copy and paste with the keys the help names.
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: info.url });
  await page.keyboard.type('echo copy-$((3*14))-me\n');
  await waitFor('the command output', async () => /^copy-42-me$/m.test(await terminalText(page)));
  await page.evaluate(() => {
    const buf = window.keywayTerminal.buffer.active;
    for (let i = buf.length - 1; i >= 0; i--) {
      if (buf.getLine(i).translateToString(true) === 'copy-42-me') return window.keywayTerminal.select(0, i, 10);
    }
  });
  await page.keyboard.press('Control+Shift+C');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'copy-42-me', 'Ctrl+Shift+C copies the selection');
  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((2*21))'));
  await page.keyboard.press('Control+Shift+V');
  await page.keyboard.press('Enter');
  await waitFor('the pasted command to run', async () => /^pasted-42$/m.test(await terminalText(page)));

  // Files for this resource, where the grant allows files (the demo's does).
  const files = page.getByRole('link', { name: 'Files' });
  assert.match(await files.getAttribute('href'), /^\/files\/\d+$/);

  // A larger font: fewer columns and rows, here and on the remote pty;
  // remembered by the browser.
  const size = () => page.evaluate(() => [window.keywayTerminal.cols, window.keywayTerminal.rows]);
  const [cols, rows] = await size();
  await page.getByLabel('Font size').selectOption('24');
  const [bigCols, bigRows] = await waitFor('the terminal to refit', async () => {
    const s = await size();
    return s[0] < cols && s[1] < rows && s;
  });
  await page.locator('#terminal').click();
  await page.keyboard.type('stty size\n');
  await waitFor(`the remote pty to be ${bigRows}x${bigCols}`, async () => new RegExp(`^${bigRows} ${bigCols}$`, 'm').test(await terminalText(page)));
  assert.equal(await page.evaluate(() => localStorage.getItem('keyway.terminal.fontSize')), '24');

  // Full screen and back.
  const fullscreen = page.locator('#term-fullscreen');
  await fullscreen.click();
  await waitFor('full screen', async () => (await fullscreen.getAttribute('aria-pressed')) === 'true' && page.evaluate(() => document.fullscreenElement !== null));
  await fullscreen.click();
  await waitFor('leaving full screen', async () => (await fullscreen.getAttribute('aria-pressed')) === 'false');

  // Disconnect: the page says so, the portal ends the session.
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  const running = async () => {
    await admin.goto('/sessions');
    return admin.getByRole('cell', { name: 'demo-ssh', exact: true }).count();
  };
  const before = await running();
  assert.ok(before >= 1, 'the session is listed as running');
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await status(page, /disconnected: you closed the session/i);
  await page.getByRole('button', { name: 'Reconnect' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Disconnect' }).count(), 0);
  await waitFor('the session to end on the portal', async () => (await running()) === before - 1);

  // The font size stays for the next visit.
  await page.reload();
  await status(page, /connected to demo-ssh/i);
  assert.equal(await page.evaluate(() => window.keywayTerminal.options.fontSize), 24);
  assert.equal(await page.getByLabel('Font size').inputValue(), '24');
  await page.context().close();
  await admin.context().close();
});
