// SAML 2.0 sign-in in a real Chromium against `portal demo` and a real
// crewjam/saml identity provider (e2e/idp/samlidp) on loopback: the admin
// adds the provider by its metadata URL, tests it, turns on account
// creation with a group mapping; the IdP registers the portal's SP
// metadata; a user signs in with the button at the IdP's login form and
// lands signed in, in the mapped group.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { startDemo, launchBrowser, newPage, signIn } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

let demo;
let browser;
let idp;

// startIdP runs e2e/idp/samlidp and resolves with its URLs once it serves.
async function startIdP(args) {
  const go = process.env.GO || (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go');
  const proc = spawn(go, ['run', './e2e/idp/samlidp', ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = once(proc, 'exit');
  const first = new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).once('line', (l) => resolve(JSON.parse(l)));
    exited.then(() => reject(new Error(`samlidp stopped before it served: ${stderr}`)));
  });
  const info = await first;
  return {
    ...info,
    async stop() {
      if (proc.exitCode === null) {
        proc.stdin.end();
        await exited;
      }
    },
  };
}

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  idp = await startIdP(['-sp-metadata-url', `${demo.info.url}/saml/corp/metadata`,
    '-user', 'carol:idp-password-1:carol@example.com:Carol Jones:sre-team,staff']);
});

after(async () => {
  await idp?.stop();
  await browser?.close();
  await demo?.stop();
});

test('a user signs in with SAML and lands in the mapped group', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);

  // A Keyway group for the IdP's group to map to.
  await admin.goto('/admin/groups');
  await admin.getByLabel('Group name').fill('sre');
  await admin.getByRole('button', { name: 'Create group' }).click();
  await admin.getByText(/Group .*sre.* was created/).waitFor();

  // Add the provider by its metadata URL.
  await admin.goto('/admin/identity');
  await admin.getByRole('button', { name: 'Add SAML provider' }).click();
  await admin.waitForURL('**/admin/identity/saml/new');
  await admin.getByLabel('Name', { exact: true }).fill('corp');
  await admin.getByLabel('Display name', { exact: true }).fill('Corp SAML');
  await admin.getByLabel('Metadata URL').fill(idp.metadata_url);
  await admin.getByLabel('User name attribute').fill('uid');
  await admin.getByLabel('Display name attribute').fill('cn');
  await admin.getByLabel('Groups attribute').fill('eduPersonAffiliation');
  await admin.getByRole('button', { name: 'Add provider' }).click();

  // Created: on to provisioning, where accounts are made at first
  // sign-in and the IdP's sre-team maps to sre.
  await admin.waitForURL('**/admin/identity/providers/*/provisioning');
  await admin.getByText('SAML provider Corp SAML added').waitFor();
  await admin.getByLabel("Create a Keyway account at a user's first sign-in").check();
  await admin.getByLabel('Group attribute value, row 1').fill('sre-team');
  await admin.getByLabel('Keyway group, row 1').selectOption('sre');
  await admin.getByRole('button', { name: 'Save provisioning' }).click();
  await admin.getByText(/Provisioning of .*Corp SAML.* was saved/).waitFor();

  // The provider's page: what to give the IdP, and Test.
  await admin.getByRole('link', { name: 'Provider settings' }).click();
  await admin.waitForURL('**/admin/identity/saml/*');
  const spURL = await admin.locator('#sp-metadata-url').innerText();
  assert.equal(spURL, `${info.url}/saml/corp/metadata`);
  await admin.getByRole('button', { name: 'Test' }).click();
  await admin.locator('#idp-entity-id').waitFor();
  assert.equal(await admin.locator('#idp-entity-id').innerText(), idp.metadata_url);
  assert.equal(await admin.locator('#idp-sso-url').innerText(), `${idp.url}/sso`);

  // The user: the button on the sign-in page, the IdP's form, back
  // signed in where they were going.
  const user = await newPage(browser, info.url);
  await user.goto('/account');
  await user.waitForURL('**/signin?next=%2Faccount');
  await user.getByRole('button', { name: 'Corp SAML' }).click();
  await user.waitForURL(`${idp.url}/sso?**`);
  await user.getByLabel('User name').fill('carol');
  await user.getByLabel('Password').fill('idp-password-1');
  await user.getByRole('button', { name: 'Sign in to the IdP' }).click();
  await user.waitForURL(`${info.url}/account`);
  await user.getByText('Carol Jones').first().waitFor();

  // The admin sees the new account, from the provider, in sre.
  await admin.goto('/admin/users');
  const row = admin.locator('tbody tr', { hasText: 'carol' });
  await row.waitFor();
  assert.match(await row.innerText(), /saml:corp|Corp SAML/);
  await row.getByRole('link', { name: 'carol' }).click();
  assert.ok(await admin.getByLabel('sre').isChecked(), 'carol is in sre');

  // The audit log says how carol signed in.
  await admin.goto('/audit?action=signin');
  const ev = admin.locator('tbody tr', { hasText: 'carol' }).first();
  await ev.waitFor();
  assert.match(await ev.innerText(), /saml/);
});
