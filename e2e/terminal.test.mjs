// The first user journey, in a real Chromium against `portal demo` (embedded
// gateway, real OpenSSH sshd): an admin creates a user, a resource and a
// grant; the user connects, types, resizes and exits; failures are shown.
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
  await page.getByLabel('Port').fill(String(r.port));
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
