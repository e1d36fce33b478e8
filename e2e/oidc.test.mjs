// OpenID Connect, end to end in a real Chromium against `portal demo` and
// the test provider e2e/idp/oidcop (zitadel's OP) on loopback: the admin
// adds the provider through the form and tests it (endpoints, then a
// sample token); a user signs in with the sign-in page's button, is
// created with the mapped group, and signing out goes through the
// provider's logout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { startDemo, launchBrowser, newPage, signIn } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

let demo;
let browser;
let op;

// startOP runs the test provider with one client for the portal at
// portalURL and resolves once it printed its issuer URL.
async function startOP(portalURL) {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-e2e-oidc-'));
  const users = join(dir, 'users.json');
  writeFileSync(users, JSON.stringify([
    { id: 'sub-alice', username: 'alice', password: 'alice-pw', name: 'Alice Example', email: 'alice@example.com', groups: ['idp-ops', 'idp-other'] },
  ]));
  const go = process.env.GO || (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go');
  const proc = spawn(go, ['run', './e2e/idp/oidcop', '-users', users, '-client-id', 'keyway', '-client-secret', 'e2e-secret',
    '-redirect-uri', `${portalURL}/signin/oidc/corp/callback`, '-post-logout-redirect-uri', `${portalURL}/signin`],
  { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  const lines = createInterface({ input: proc.stdout });
  const [issuer] = await Promise.race([
    once(lines, 'line'),
    once(proc, 'exit').then(() => { throw new Error(`oidcop stopped: ${stderr}`); }),
  ]);
  return {
    issuer,
    async stop() {
      if (!exited) {
        proc.stdin.end(); // oidcop stops at the end of its input
        await once(proc, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  op = await startOP(demo.info.url);
});

after(async () => {
  await browser?.close();
  await op?.stop();
  await demo?.stop();
});

// signInAtProvider fills the test provider's login form.
async function signInAtProvider(page, name, password) {
  await page.waitForURL((u) => u.href.startsWith(op.issuer + '/login'));
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('admin adds an OpenID provider; a user signs in with it and signs out through it', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await admin.goto('/admin/groups');
  await admin.getByLabel('Group name').fill('sso-ops');
  await admin.getByRole('button', { name: 'Create group' }).click();
  await admin.getByText(/Group .*sso-ops.* was created/).waitFor();

  // The provider, through the form.
  await admin.goto('/admin/identity/oidc/new');
  await admin.getByLabel('Name (in the sign-in address)').fill('corp');
  await admin.getByLabel('Button label').fill('Corp SSO');
  await admin.getByLabel('Issuer URL').fill(op.issuer);
  await admin.getByLabel('Client ID').fill('keyway');
  await admin.getByLabel('Client secret').fill('e2e-secret');
  await admin.getByRole('button', { name: 'Add provider' }).click();
  await admin.waitForURL(/\/admin\/identity\/providers\/\d+\/provisioning$/);
  const id = admin.url().match(/providers\/(\d+)\//)[1];

  // Provisioning, as an admin does it after adding the provider: accounts
  // made at first sign-in, the provider's idp-ops group mapped to sso-ops.
  await admin.getByLabel("Create a Keyway account at a user's first sign-in").check();
  await admin.getByLabel('Role of created accounts').selectOption('user');
  await admin.getByLabel('Group claim value, row 1').fill('idp-ops');
  await admin.getByLabel('Keyway group, row 1').selectOption('sso-ops');
  await admin.getByRole('button', { name: 'Save provisioning' }).click();
  await admin.getByText(/Provisioning of .*Corp SSO.* was saved/).waitFor();

  // Test: the discovered endpoints, then a sample token.
  await admin.goto(`/admin/identity/oidc/${id}`);
  assert.match(await admin.locator('#redirect-uri').innerText(), /\/signin\/oidc\/corp\/callback$/);
  await admin.getByRole('button', { name: 'Test' }).click();
  await admin.locator('#endpoints').getByText(op.issuer + '/oauth/token').waitFor();
  await admin.getByRole('button', { name: 'Sign in to see a sample token' }).click();
  await signInAtProvider(admin, 'alice', 'alice-pw');
  await admin.locator('#claims').getByText('sub-alice').waitFor();
  assert.match(await admin.locator('#identity').innerText(), /idp-ops/);
  assert.match(await admin.locator('main').innerText(), /Nobody was signed in or created/);

  // A user signs in with the button.
  const user = await newPage(browser, info.url);
  const visited = [];
  user.on('request', (r) => { if (r.isNavigationRequest()) visited.push(r.url()); });
  await user.goto('/signin');
  await user.getByRole('button', { name: 'Corp SSO' }).click();
  await signInAtProvider(user, 'alice', 'alice-pw');
  await user.waitForURL((u) => u.origin === new URL(info.url).origin && u.pathname === '/');
  await user.goto('/account');
  const account = await user.locator('main').innerText();
  assert.match(account, /alice/);
  assert.match(account, /sso-ops/);

  // Signing out goes through the provider's logout and back to sign-in.
  await user.getByRole('button', { name: 'Sign out' }).click();
  await user.waitForURL((u) => u.origin === new URL(info.url).origin && u.pathname === '/signin');
  assert.ok(visited.some((u) => u.startsWith(op.issuer + '/end_session') && u.includes('id_token_hint=')),
    `no visit to the provider's end_session: ${visited.join('\n')}`);
  await user.goto('/account');
  await user.waitForURL(/\/signin/);
});
