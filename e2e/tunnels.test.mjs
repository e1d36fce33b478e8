// Native-client resources in a real Chromium against `portal demo`: an
// admin makes a network and a TCP service with the resource form, which
// shows only the fields of the chosen protocol and puts a bad rule's error
// on its field; the user's Home page then offers the keyway commands
// instead of Connect.
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

async function grant(admin, resource, user) {
  await admin.goto('/admin/grants');
  await admin.getByLabel('Resource').selectOption({ label: resource });
  await admin.getByLabel('User or group').selectOption({ label: `user: ${user}` });
  await admin.getByRole('button', { name: /add grant/i }).click();
}

test('admin makes a network and a TCP service; the user is shown the keyway commands', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);

  await admin.goto('/admin/resources/new');
  const rules = admin.getByLabel('Allowed networks and services');
  const host = admin.getByLabel('Host');
  const login = admin.getByLabel('Login');
  const tunnel = admin.getByLabel('Native clients may tunnel to this port');
  // SSH: host, login and the tunnel option; no rules.
  assert.equal(await rules.isVisible(), false);
  assert.equal(await host.isVisible(), true);
  assert.equal(await tunnel.isVisible(), true);
  // Network: the rules only.
  await admin.getByLabel('Protocol').selectOption('network');
  assert.equal(await rules.isVisible(), true);
  for (const hidden of [host, login, tunnel, admin.getByLabel('Recording', { exact: true })]) {
    assert.equal(await hidden.isVisible(), false);
  }
  await admin.getByLabel('Name', { exact: true }).fill('e2e-lab');
  await rules.fill('10.20.0.0/16 tcp/5432\n10.30.0.0/33 tcp/22');
  await admin.getByRole('button', { name: /create resource/i }).click();
  // The error is on the field, in words, and the form keeps what was typed.
  await admin.locator('#networks[aria-invalid="true"]').waitFor();
  await admin.getByText(/^Line 2/).first().waitFor();
  assert.match(await admin.getByLabel('Allowed networks and services').inputValue(), /10\.30\.0\.0\/33/);
  await admin.getByLabel('Allowed networks and services').fill('10.20.0.0/16 tcp/5432,6379');
  await admin.getByRole('button', { name: /create resource/i }).click();
  await admin.getByText(/Resource “e2e-lab” was created/).waitFor();

  // TCP: host and port, no login.
  await admin.goto('/admin/resources/new');
  await admin.getByLabel('Protocol').selectOption('tcp');
  assert.equal(await admin.getByLabel('Host').isVisible(), true);
  assert.equal(await admin.getByLabel('Login').isVisible(), false);
  assert.equal(await admin.getByLabel('Allowed networks and services').isVisible(), false);
  await admin.getByLabel('Name', { exact: true }).fill('e2e-pg');
  await admin.getByLabel('Host').fill('10.20.0.5');
  await admin.getByLabel('Port', { exact: true }).fill('5432');
  await admin.getByRole('button', { name: /create resource/i }).click();
  await admin.getByText(/Resource “e2e-pg” was created/).waitFor();

  await grant(admin, 'e2e-lab', info.user.name);
  await grant(admin, 'e2e-pg', info.user.name);

  const page = await newPage(browser, info.url);
  await signIn(page, info.user.name, info.user.password);
  const pg = page.locator('[data-resource="e2e-pg"]');
  await pg.getByText('keyway tunnel e2e-pg').waitFor();
  assert.equal(await pg.getByRole('button').count(), 0, 'a TCP service has no Connect button');
  const lab = page.locator('[data-resource="e2e-lab"]');
  await lab.getByText('keyway proxy --socks 127.0.0.1:1080').waitFor();
  await lab.getByText('10.20.0.0/16 tcp/5432,6379').waitFor();
});
