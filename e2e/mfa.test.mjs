// Multi-factor authentication, end to end in a real Chromium against
// `portal demo`: TOTP enrolment from the Account page with codes computed
// here, sign-in with TOTP and with a recovery code (used once), a passkey
// enrolled and used through Chromium's virtual authenticator (CDP
// WebAuthn), an admin requiring MFA of a group (a member is taken to
// enrolment before anything else) and resetting a user's factors.
//
// WebAuthn refuses pages with certificate errors, so Chromium trusts the
// demo's self-signed certificate by its key
// (--ignore-certificate-errors-spki-list) instead of ignoring errors, and
// the pages use https://localhost:PORT (a host name: the relying party id).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDemo, launchBrowser, signIn } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo();
  const cert = new X509Certificate(readFileSync(join(demo.data, 'tls.crt')));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  const pin = createHash('sha256').update(spki).digest('base64');
  browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${pin}`]);
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

// page opens a fresh browser context (own cookies) on the demo, without
// ignoring certificate errors: the certificate must be trusted.
async function page() {
  const context = await browser.newContext({ baseURL: demo.info.url, viewport: { width: 1200, height: 800 } });
  const p = await context.newPage();
  p.setDefaultTimeout(20000);
  return p;
}

// totp is RFC 6238's code (SHA-1, 6 digits, 30 s) of a base32 secret at
// time t (ms).
function totp(secret, t = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of secret.replace(/=+$/, '')) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(t / 30000)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}

async function signOut(p) {
  await p.getByRole('button', { name: 'Sign out' }).click();
  await p.waitForURL((u) => u.pathname === '/signin');
}

// passwordStep types the password and waits for the second-factor step.
async function passwordStep(p, login, path = '/signin/mfa') {
  await p.goto('/signin');
  await p.getByLabel('Username').fill(login.name);
  await p.getByLabel('Password').fill(login.password);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.waitForURL((u) => u.pathname === path);
}

// enrolTOTP adds an authenticator app on the open enrolment page and
// returns its secret and the recovery codes shown.
async function enrolTOTP(p) {
  const secret = (await p.locator('[data-totp-secret]').innerText()).trim();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  assert.match(await p.locator('img.qr').getAttribute('src'), /^data:image\/png;base64,/);
  assert.ok(await p.locator('img.qr').evaluate((img) => img.complete && img.naturalWidth > 0), 'the QR code is drawn');
  await p.getByLabel('Code from the app').fill(totp(secret));
  await p.getByRole('button', { name: 'Add authenticator app' }).click();
  await p.getByRole('heading', { name: 'Your recovery codes' }).waitFor();
  const codes = (await p.locator('[data-recovery-codes]').innerText()).split(/\s+/).filter(Boolean);
  assert.equal(codes.length, 10);
  return { secret, codes };
}

let userTOTP;

test('TOTP enrolled from the Account page signs in; a recovery code works once', async () => {
  const { user } = demo.info;
  const p = await page();
  await signIn(p, user.name, user.password);
  await p.goto('/account');
  await p.getByRole('button', { name: 'Manage second factors' }).click();
  await p.getByRole('heading', { name: 'Multi-factor authentication' }).waitFor();
  await p.getByText('You have no second factor').waitFor();
  await p.getByRole('button', { name: 'Add authenticator app' }).click();
  userTOTP = await enrolTOTP(p);
  await p.getByRole('button', { name: 'I saved them: continue' }).click();
  await p.getByRole('cell', { name: 'Authenticator app' }).first().waitFor();
  assert.match(await p.locator('[data-recovery-left]').innerText(), /10 left/);

  // Signed out, the password alone is not enough: the code of the next
  // step (within the allowed skew, and not yet used) signs in.
  await signOut(p);
  await passwordStep(p, user);
  await p.goto('/');
  await p.waitForURL((u) => u.pathname === '/signin/mfa');
  await p.getByLabel('Authenticator code or recovery code').fill('000000' === totp(userTOTP.secret) ? '111111' : '000000');
  await p.getByRole('button', { name: 'Verify' }).click();
  await p.getByText('That code is not right.').waitFor();
  await p.getByLabel('Authenticator code or recovery code').fill(totp(userTOTP.secret, Date.now() + 30000));
  await p.getByRole('button', { name: 'Verify' }).click();
  await p.waitForURL((u) => u.pathname === '/');

  // A recovery code signs in once.
  const code = userTOTP.codes[3];
  await signOut(p);
  await passwordStep(p, user);
  await p.getByLabel('Authenticator code or recovery code').fill(code);
  await p.getByRole('button', { name: 'Verify' }).click();
  await p.waitForURL((u) => u.pathname === '/');
  await p.getByText('You used a recovery code; 9 are left.').waitFor();
  await signOut(p);
  await passwordStep(p, user);
  await p.getByLabel('Authenticator code or recovery code').fill(code);
  await p.getByRole('button', { name: 'Verify' }).click();
  await p.getByText('That code is not right.').waitFor();
  assert.equal(new URL(p.url()).pathname, '/signin/mfa');

  await p.context().close();
  const admin = await page();
  await signIn(admin, demo.info.admin.name, demo.info.admin.password);
  await admin.goto(`/audit?action=signin&actor=${user.name}`);
  await admin.locator('tbody tr').first().waitFor();
  assert.match(await admin.locator('tbody').innerText(), /recovery/);
  assert.match(await admin.locator('tbody').innerText(), /totp/);
  await admin.context().close();
});

// virtualAuthenticator gives the page a platform authenticator with user
// verification, as a laptop's fingerprint reader is.
async function virtualAuthenticator(p) {
  const cdp = await p.context().newCDPSession(p);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
  });
  return { cdp, authenticatorId };
}

test('a passkey enrolled through the virtual authenticator signs in and passes a step-up check', async () => {
  const { auditor } = demo.info;
  const p = await page();
  const { cdp, authenticatorId } = await virtualAuthenticator(p);
  await signIn(p, auditor.name, auditor.password);
  await p.goto('/account/mfa');
  await p.getByLabel('Name').fill('virtual laptop');
  await p.getByRole('button', { name: 'Add passkey or security key' }).click();
  await p.getByText('Passkey “virtual laptop” was added.').waitFor();
  await p.getByRole('cell', { name: 'virtual laptop' }).waitFor();
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1);

  await signOut(p);
  await passwordStep(p, auditor);
  await p.getByRole('button', { name: 'Use a passkey or security key' }).click();
  await p.waitForURL((u) => u.pathname === '/');
  const after = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.ok(after.credentials[0].signCount >= 1, 'the authenticator signed');

  // The step-up check with the same passkey returns to next.
  await p.goto('/mfa/verify?next=/account');
  await p.getByRole('button', { name: 'Use a passkey or security key' }).click();
  await p.waitForURL((u) => u.pathname === '/account');
  await p.context().close();
});

test('an admin requires MFA of a group: a member enrols before anything else; an admin resets factors', async () => {
  const { admin, user } = demo.info;
  const a = await page();
  await virtualAuthenticator(a); // the admin signs in with the password only
  await signIn(a, admin.name, admin.password);
  await a.goto('/admin/groups');
  await a.getByLabel('Group name').fill('mfa-team');
  await a.getByRole('button', { name: 'Create group' }).click();
  await a.getByRole('cell', { name: 'mfa-team' }).waitFor();
  // The admin joins the group; demo-user stays out of it.
  await a.goto('/admin/users');
  await a.getByRole('link', { name: admin.name, exact: true }).click();
  await a.getByRole('checkbox', { name: 'mfa-team' }).check();
  await a.getByRole('button', { name: 'Save changes' }).click();
  await a.goto('/admin/identity/mfa');
  await a.getByRole('checkbox', { name: 'mfa-team' }).check();
  await a.getByRole('button', { name: 'Save' }).click();
  await a.getByText('Who must use MFA was saved.').waitFor();

  // The member signs in: enrolment comes first, and nothing else opens.
  const m = await page();
  await passwordStep(m, admin, '/signin/enrol');
  await m.goto('/admin/users');
  await m.waitForURL((u) => u.pathname === '/signin/enrol');
  await m.getByText('Your administrator requires a second factor').waitFor();
  await enrolTOTP(m);
  await m.getByRole('button', { name: 'I saved them: continue' }).click();
  await m.waitForURL((u) => u.pathname === '/');

  // The admin resets demo-user's factors: the password alone signs in
  // again (demo-user is not required to use MFA).
  await m.goto('/admin/users');
  await m.getByRole('link', { name: user.name, exact: true }).click();
  m.once('dialog', (d) => d.accept());
  await m.getByRole('button', { name: 'Reset second factors' }).click();
  await m.getByText(`The second factors and recovery codes of “${user.name}” were removed.`).waitFor();
  const u = await page();
  await signIn(u, user.name, user.password);
  assert.equal(new URL(u.url()).pathname, '/');
  await m.goto('/audit?action=mfa.reset');
  await m.locator('tbody tr').first().waitFor();
  assert.match(await m.locator('tbody tr').first().innerText(), new RegExp(user.name));
  for (const p of [a, m, u]) await p.context().close();
});
