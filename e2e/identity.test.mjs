// Sign-in & MFA in a real Chromium: the admin finds the page under
// Manage, sees the empty state, turns local passwords off with a
// break-glass admin (a refused form first), sees another local user
// refused with a clear message while the break-glass admin still signs
// in, and turns them back on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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

// tryPassword signs in on a fresh page and returns it, left where the
// form sent it.
async function tryPassword(name, password) {
  const page = await newPage(browser, demo.info.url);
  await page.goto('/signin');
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState('load');
  return page;
}

test('local passwords off leaves only the break-glass admin, and back on', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);

  await admin.getByText('Manage', { exact: true }).click();
  await admin.getByRole('link', { name: 'Sign-in & MFA' }).click();
  await admin.waitForURL('**/admin/identity');
  await admin.getByText('No identity providers yet').waitFor();
  for (const name of ['Add OpenID Connect provider', 'Add SAML provider', 'Add LDAP directory', 'MFA requirements']) {
    assert.ok(await admin.getByRole('button', { name }).isVisible(), `${name} shown`);
  }
  assert.equal(await admin.getByRole('button', { name: 'Add SAML provider' }).getAttribute('href'), '/admin/identity/saml/new');

  // Off without a break-glass admin: refused, in words, nothing changed.
  const toggle = admin.getByLabel('Users may sign in with a password kept by Keyway');
  assert.ok(await toggle.isChecked());
  await toggle.uncheck();
  await admin.getByRole('button', { name: 'Save local passwords' }).click();
  await admin.locator('#break_glass-error').waitFor();
  assert.match(await admin.locator('#break_glass-error').innerText(), /Choose a break-glass admin/);
  assert.equal(await admin.getByLabel('Break-glass admin').getAttribute('aria-invalid'), 'true');

  await admin.getByLabel('Break-glass admin').selectOption(info.admin.name);
  await admin.getByRole('button', { name: 'Save local passwords' }).click();
  await admin.getByText(/Local passwords are off: only .+ signs in with a password kept by Keyway/).waitFor();
  assert.match(await admin.locator('#local h2').innerText(), /off/);
  assert.equal(await admin.getByLabel('Break-glass admin').inputValue(), info.admin.name);

  // Another local user, right password: refused, saying why.
  const user = await tryPassword(info.user.name, info.user.password);
  assert.match(new URL(user.url()).pathname, /^\/signin/);
  assert.match(await user.getByRole('alert').innerText(), /Passwords kept by Keyway are turned off here/);
  // A made-up name reads the same: the answer says nothing about accounts.
  const nobody = await tryPassword('nobody-here', info.user.password);
  assert.equal(await nobody.getByRole('alert').innerText(), await user.getByRole('alert').innerText());

  // The break-glass admin still signs in.
  const glass = await newPage(browser, info.url);
  await signIn(glass, info.admin.name, info.admin.password);
  assert.equal(new URL(glass.url()).pathname, '/');

  // Back on: the user signs in again.
  await admin.getByLabel('Users may sign in with a password kept by Keyway').check();
  await admin.getByRole('button', { name: 'Save local passwords' }).click();
  await admin.getByText('Local passwords are on.').waitFor();
  const back = await newPage(browser, info.url);
  await signIn(back, info.user.name, info.user.password);
  assert.equal(new URL(back.url()).pathname, '/');

  // The Users page says how each user signs in, and their factors.
  await admin.goto('/admin/users');
  const headers = await admin.locator('thead th').allInnerTexts();
  assert.ok(headers.includes('Signs in with') && headers.includes('MFA'), `columns ${headers}`);
  const row = admin.locator('tbody tr', { hasText: info.user.name }).first();
  assert.match(await row.innerText(), /Local password/);
  assert.match(await row.innerText(), /none/);
  await admin.goto('/admin/users/new');
  assert.deepEqual(await admin.getByLabel('Signs in with').locator('option').allInnerTexts(), ['Local password']);
});
