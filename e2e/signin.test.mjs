// Sign-in lockout, end to end in a real Chromium against `portal demo`:
// someone at another address locks the demo user's account with wrong
// passwords; the user still signs in from their own address; the admin
// sees the lock on the user's page and lifts it, and the audit log says so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { startDemo, launchBrowser, newPage, signIn } from './harness.mjs';

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

// attempt posts a sign-in from the loopback address `from` (not the
// browser's 127.0.0.1) and resolves with the status.
function attempt(from, username, password) {
  const url = new URL('/signin', demo.info.url);
  const body = new URLSearchParams({ username, password }).toString();
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port: url.port, path: url.pathname, method: 'POST', localAddress: from,
      rejectUnauthorized: false, // the demo's self-signed certificate
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end(body);
  });
}

async function lockFrom(from, name) {
  for (let i = 0; i < 5; i++) assert.equal(await attempt(from, name, 'not-the-password'), 401, `failure ${i + 1}`);
  assert.equal(await attempt(from, name, demo.info.user.password), 429, 'the right password from the locking address');
}

test('a locked account still signs in its owner, and an admin unlocks it', async () => {
  const { info } = demo;
  const attacker = '127.0.0.9';
  await lockFrom(attacker, info.user.name);

  // The admin sees the lock and where it came from.
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await admin.goto('/admin/users');
  await admin.getByRole('link', { name: info.user.name, exact: true }).click();
  const section = admin.locator('section', { has: admin.getByRole('heading', { name: 'Sign-in' }) });
  await section.getByText('locked', { exact: true }).waitFor();
  assert.match(await section.innerText(), /after 5 failed sign-ins.*127\.0\.0\.9/s);

  // The owner, from the browser's own address, is not kept out.
  const user = await newPage(browser, info.url);
  await signIn(user, info.user.name, info.user.password);
  await user.getByRole('heading', { name: /resources/i }).first().waitFor();

  // Locked again; the admin lifts it.
  await lockFrom(attacker, info.user.name);
  await admin.reload();
  await section.getByText('locked', { exact: true }).waitFor();
  await section.getByRole('button', { name: 'Unlock and forget failed sign-ins' }).click();
  await admin.getByText(`Sign-in of "${info.user.name}" was unlocked.`).waitFor();
  await section.getByText('No recent failed sign-ins.').waitFor();
  assert.equal(await attempt(attacker, info.user.name, info.user.password), 303, 'after the unlock');

  await admin.goto('/audit?action=user.unlock');
  const row = admin.locator('tbody tr').first();
  await row.waitFor();
  const text = await row.innerText();
  assert.match(text, new RegExp(info.admin.name));
  assert.match(text, new RegExp(info.user.name));
});
