// The admin's gateway journey in a real Chromium: create a segment and a
// gateway, download its config, start the gateway process, paste its key,
// see it become available, tag a resource, and connect through it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { startDemo, launchBrowser, newPage, signIn, terminalText, waitFor } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let demo;
let browser;
let gateway;
const dir = mkdtempSync(join(tmpdir(), 'keyway-e2e-gw-'));

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
});

after(async () => {
  // The browser first: SIGTERM drains the gateway, which then waits for
  // the sessions its pages still hold.
  await browser?.close();
  if (gateway && gateway.exitCode === null) {
    gateway.kill('SIGTERM');
    await once(gateway, 'exit');
  }
  await demo?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

test('admin enrols a gateway and a user connects through it', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);

  // 1. Segment and gateway, through the forms.
  await admin.goto('/admin/gateways');
  await admin.getByLabel('Segment name').fill('gateway-e2e');
  await admin.getByRole('button', { name: 'Create segment' }).click();
  await admin.locator('section[data-segment="gateway-e2e"]').getByRole('button', { name: 'Add a gateway' }).click();
  const sshPort = await freePort();
  const mgmtPort = await freePort();
  const rdpPort = await freePort();
  const vncPort = await freePort();
  await admin.getByLabel('Gateway name').fill('e2e-gw1');
  await admin.getByLabel('Host the portal reaches it at').fill('127.0.0.1');
  await admin.getByLabel('SSH and SFTP session port').fill(String(sshPort));
  await admin.getByLabel('RDP session port').fill(String(rdpPort));
  await admin.getByLabel('VNC session port').fill(String(vncPort));
  await admin.getByLabel('Management port').fill(String(mgmtPort));
  await admin.getByRole('button', { name: 'Create gateway' }).click();
  await admin.waitForURL(/\/admin\/gateways\/\d+$/);
  await admin.locator('h1', { hasText: 'e2e-gw1' }).locator('.badge', { hasText: 'pending' }).waitFor();

  // 2. Download the config and start the gateway with it (on loopback).
  const [download] = await Promise.all([
    admin.waitForEvent('download'),
    admin.getByRole('button', { name: 'Download config' }).click(),
  ]);
  const cfg = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.equal(cfg.segment, 'gateway-e2e');
  assert.match(cfg.portal_key, /^ed25519:/);
  cfg.state_dir = join(dir, 'state');
  assert.equal(cfg.listen.rdp, `:${rdpPort}`);
  cfg.listen = { ssh: `127.0.0.1:${sshPort}`, rdp: `127.0.0.1:${rdpPort}`, vnc: `127.0.0.1:${vncPort}`, management: `127.0.0.1:${mgmtPort}` };
  const cfgPath = join(dir, 'gateway.json');
  writeFileSync(cfgPath, JSON.stringify(cfg));
  gateway = spawn(join(root, 'bin', 'gateway'), ['run', '--config', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  gateway.stdout.on('data', (d) => { out += d; });
  gateway.stderr.on('data', (d) => { out += d; });
  const key = await waitFor('the gateway to print its key', () => out.match(/ed25519:[A-Za-z0-9+/=]+/)?.[0]);

  // 3. Paste the key; within a health cycle the gateway is available.
  await admin.getByLabel('Gateway public key').fill(key);
  await admin.getByRole('button', { name: 'Save key' }).click();
  await admin.getByText(/is pinned/).waitFor();
  await waitFor('the gateway to become available', async () => {
    await admin.reload();
    return (await admin.locator('h1 .badge').textContent()) === 'available';
  });

  // 4. Tag a resource with the segment, test it, grant it, and connect.
  const t = info.ssh_target;
  await admin.goto('/admin/resources/new');
  await admin.getByLabel('Name', { exact: true }).fill('behind-gw');
  await admin.getByLabel('Host').fill(t.host);
  await admin.getByLabel('Port', { exact: true }).fill(String(t.port));
  await admin.getByLabel('Login').fill(t.login);
  await admin.getByLabel('Password').fill(t.password);
  await admin.getByLabel('Tags').fill('gateway-e2e');
  await admin.getByRole('button', { name: /create resource/i }).click();
  await admin.getByRole('link', { name: 'behind-gw' }).click();
  await admin.getByRole('button', { name: 'Test connection' }).click();
  await admin.getByText(/Connected to “behind-gw” through gateway “e2e-gw1” \(segment “gateway-e2e”\)/).waitFor();
  await admin.goto('/admin/grants');
  await admin.getByLabel('Resource').selectOption({ label: 'behind-gw' });
  await admin.getByLabel('User or group').selectOption({ label: `user: ${info.user.name}` });
  await admin.getByRole('button', { name: /add grant/i }).click();

  const user = await newPage(browser, info.url);
  await signIn(user, info.user.name, info.user.password);
  await user.locator('[data-resource="behind-gw"]').getByRole('button').click();
  await user.locator('#term-status', { hasText: /connected to behind-gw/i }).waitFor();
  await user.keyboard.type('echo via-$((20+3))-gateway\n');
  await waitFor('output through the gateway', async () => (await terminalText(user)).includes('via-23-gateway'));

  // The audit log names the gateway that served the session.
  await admin.goto('/audit?action=connect&q=e2e-gw1');
  await admin.getByRole('cell', { name: 'behind-gw' }).first().waitFor();
});
