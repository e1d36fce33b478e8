// LDAP in a real Chromium against `portal demo` and a real slapd (the test
// directory of e2e/idp/ldapdir): the admin adds the directory through its
// form (a refused form first), tests a user and sees their nested groups,
// lets the directory create users and maps its group staff; a directory
// user signs in with the password form and is in the mapped group; the
// audit log says how they signed in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { startDemo, launchBrowser, newPage, signIn } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let demo;
let browser;
let dir;

// startDirectory runs e2e/idp/ldapdir and resolves with what it prints
// (URLs, CA, bases, service account, users) and a stop function.
async function startDirectory() {
  const d = mkdtempSync(join(tmpdir(), 'keyway-e2e-ldap-'));
  const go = process.env.GO || (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go');
  const proc = spawn(go, ['run', './e2e/idp/ldapdir', '-dir', d], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c) => { stderr += c; });
  let exited = false;
  const gone = once(proc, 'exit').then(() => { exited = true; });
  const lines = createInterface({ input: proc.stdout });
  const first = once(lines, 'line').then(([l]) => JSON.parse(l));
  const info = await Promise.race([first, gone.then(() => { throw new Error(`ldapdir stopped: ${stderr}`); })]);
  return {
    ...info,
    async stop() {
      if (!exited) {
        proc.stdin.end();
        await gone;
      }
      rmSync(d, { recursive: true, force: true });
    },
  };
}

before(async () => {
  [demo, dir] = await Promise.all([startDemo(), startDirectory()]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
  await dir?.stop();
});

test('admin adds an LDAP directory, tests it, and a directory user signs in with mapped groups', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);

  // A Keyway group to map the directory's staff group to.
  await admin.goto('/admin/groups');
  await admin.getByLabel('Group name').fill('staffers');
  await admin.getByRole('button', { name: 'Create group' }).click();
  await admin.getByRole('cell', { name: 'staffers', exact: true }).waitFor();

  await admin.goto('/admin/identity/ldap/new');
  await admin.getByLabel('Name', { exact: true }).fill('corp');
  await admin.getByLabel('Display name', { exact: true }).fill('Corp directory');
  await admin.getByLabel('Directory URL').fill(dir.url);
  await admin.getByLabel('CA bundle (optional)').fill(dir.caPEM);
  await admin.getByLabel('Bind DN').fill(dir.bindDN);
  await admin.getByLabel('Bind password').fill(dir.bindPassword);
  await admin.getByLabel('User search base').fill(dir.userBase);
  await admin.getByLabel('Group search base (optional)').fill(dir.groupBase);
  await admin.getByLabel('Nested groups').selectOption('search');
  // ldap:// without StartTLS is refused, saying why; what was typed stays.
  await admin.getByRole('button', { name: 'Add directory' }).click();
  await admin.getByText('turn StartTLS on').waitFor();
  assert.equal(await admin.getByLabel('User search base').inputValue(), dir.userBase);
  await admin.getByLabel('StartTLS (for ldap:// URLs)').check();
  await admin.getByLabel('Bind password').fill(dir.bindPassword);
  await admin.getByRole('button', { name: 'Add directory' }).click();
  await admin.waitForURL(/\/admin\/identity\/providers\/\d+\/provisioning$/);
  const id = admin.url().match(/providers\/(\d+)\//)[1];

  // Provisioning (the identity core's page): create users, map staff.
  await admin.getByLabel(/Create a Keyway account/).check();
  await admin.getByRole('textbox', { name: /, row 1$/ }).fill('staff');
  await admin.getByRole('combobox', { name: 'Keyway group, row 1' }).selectOption('staffers');
  await admin.getByRole('button', { name: 'Save provisioning' }).click();
  await admin.getByText(/Provisioning of .* was saved/).waitFor();

  // Test: alice's entry and groups, staff (through ops) included.
  await admin.goto(`/admin/identity/ldap/${id}`);
  await admin.locator('#test_username').fill('alice');
  await admin.getByRole('button', { name: 'Test', exact: true }).click();
  await admin.locator('#test-result').waitFor();
  assert.equal(await admin.locator('#test-dn').innerText(), dir.users.alice.dn);
  const groups = await admin.locator('#test-groups').innerText();
  assert.match(groups, /ops/);
  assert.match(groups, /staff/);
  for (const step of ['connect', 'StartTLS', 'bind', 'search', 'groups']) {
    assert.ok(await admin.locator('#test-result td', { hasText: new RegExp(`^${step}$`) }).count() > 0, `step ${step} listed`);
  }
  // With a wrong password, the failing step is named.
  await admin.locator('#test_username').fill('alice');
  await admin.locator('#test_password').fill('not-her-password');
  await admin.getByRole('button', { name: 'Test', exact: true }).click();
  await admin.getByText('The directory refused that password.').waitFor();

  // alice signs in with the password form.
  const alice = await newPage(browser, info.url);
  await signIn(alice, 'alice', dir.users.alice.password);
  await alice.goto('/account');
  await alice.getByText('alice').first().waitFor();

  // She was created from the directory, in the mapped group.
  await admin.goto('/admin/users');
  const row = admin.getByRole('row', { name: /alice/ });
  await row.waitFor();
  assert.match(await row.innerText(), /staffers/);
  await admin.goto('/audit?action=signin');
  const ev = admin.getByRole('row', { name: /alice/ }).first();
  assert.match(await ev.innerText(), /ldap/);
});
