// Step-up per session, in a real Chromium against `portal demo`: an admin
// asks for a fresh MFA check on demo-ssh; the user, signed in before they
// had a second factor, sees the resource marked, clicks Connect, is sent to
// the MFA check, types a TOTP code (computed here from the key the
// enrolment page showed), and the terminal opens. What happens after N
// minutes is tested in Go on the portal's injected clock
// (TestStepUpVerifyThenStale), without waiting.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
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

// base32 decodes RFC 4648 base32 without padding, as TOTP keys are shown.
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/[\s=]/g, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${c}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

// totp is RFC 6238's code (SHA-1, six digits, 30 s steps) at time ms.
function totp(secret, ms) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(ms / 1000 / 30)));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1000000;
  return String(n).padStart(6, '0');
}

test('step-up required before a Connect', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await admin.goto('/admin/resources');
  await admin.getByRole('link', { name: 'demo-ssh', exact: true }).click();
  const field = admin.getByLabel('Fresh MFA check (minutes)');
  assert.match(await admin.locator('#step-up-help').textContent(), /Ask for a fresh MFA check within the last N minutes before each connection/);
  await field.fill('10');
  await admin.getByRole('button', { name: 'Save changes' }).click();
  await admin.waitForURL('**/admin/resources');

  // The user signs in with a password while they have no second factor:
  // this session has passed no MFA check.
  const user = await newPage(browser, info.url);
  await signIn(user, info.user.name, info.user.password);
  const card = user.locator('[data-resource="demo-ssh"]');
  await card.getByText('MFA check', { exact: true }).waitFor();
  assert.equal(await user.locator('[data-resource="demo-rdp"]').getByText('MFA check', { exact: true }).count(), 0,
    'a resource without step-up must not be marked');

  // In another browser (its own session) the user adds an authenticator
  // app; the key is read off the page as a person would type it.
  const phone = await newPage(browser, info.url);
  await signIn(phone, info.user.name, info.user.password);
  await phone.goto('/account/mfa/totp');
  const secret = (await phone.locator('#totp-secret').textContent()).trim();
  const enrolledAt = Date.now();
  await phone.locator('#code').fill(totp(secret, enrolledAt));
  await phone.getByRole('button', { name: 'Add authenticator app' }).click();
  // The first factor comes with recovery codes, shown once.
  await phone.getByRole('heading', { name: 'Your recovery codes' }).waitFor();

  // Connect: first the MFA check, then back to the terminal, which opens.
  await user.goto('/');
  await card.getByRole('button', { name: /^connect to/i }).click();
  await user.waitForURL((u) => u.pathname === '/mfa/verify');
  const next = new URL(user.url()).searchParams.get('next');
  assert.match(next, /^\/connect\/\d+$/);
  // The enrolment used its time step's code once: the next step's code
  // (within the portal's one-step skew) is a fresh one.
  await user.locator('#code').fill(totp(secret, Math.max(Date.now(), enrolledAt + 30000)));
  await user.getByRole('button', { name: 'Verify' }).click();
  await user.waitForURL((u) => u.pathname === next);
  await user.locator('#term-status', { hasText: /connected to demo-ssh/i }).waitFor();
  await waitFor('a shell prompt', async () => (await terminalText(user)).includes('$'));
  await user.keyboard.type('echo kw-$((6*7))-stepped-up\n');
  await waitFor('command output', async () => (await terminalText(user)).includes('kw-42-stepped-up'));
});
