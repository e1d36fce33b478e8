// The admin's Settings page in a real Chromium: set the connection
// authorization hook (a real HTTPS hook on loopback that checks the
// signature), send a test request and see the browser's client hints in
// it, and list trusted proxies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { startDemo, launchBrowser, newPage, signIn } from './harness.mjs';

const secret = 'e2e-hook-secret-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'keyway-e2e-hook-'));
let demo;
let browser;
let hook;
let hookURL;
let caPEM;
const requests = [];
// Users the hook refuses, with denyMessage.
const deny = new Set();
const denyMessage = 'This laptop is not enrolled in device management. Enrol it at https://mdm.example and try again.';

before(async () => {
  // A certificate for 127.0.0.1, trusted by the portal through the CA
  // bundle field.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  caPEM = readFileSync(join(dir, 'cert.pem'), 'utf8');
  hook = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: caPEM }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const want = 'v1=' + createHmac('sha256', secret).update(req.headers['x-keyway-timestamp'] + '.' + body).digest('hex');
      const got = String(req.headers['x-keyway-signature'] || '');
      if (got.length !== want.length || !timingSafeEqual(Buffer.from(got), Buffer.from(want))) {
        res.writeHead(401).end('bad signature');
        return;
      }
      const sent = JSON.parse(body);
      requests.push(sent);
      const denied = deny.has(sent.username);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({
        allow: !denied, 'error-msg-on-denied-connection': denied ? denyMessage : '',
        'posture-compliance-statuses': ['e2e-compliant'], 'schema-version': 'v1',
      }));
    });
  });
  hook.listen(0, '127.0.0.1');
  await once(hook, 'listening');
  hookURL = `https://127.0.0.1:${hook.address().port}/keyway`;
  demo = await startDemo();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
  hook?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('admin sets the hook, tests it and lists trusted proxies', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);

  await admin.getByText('Manage', { exact: true }).click();
  await admin.getByRole('link', { name: 'Settings' }).click();
  await admin.waitForURL('**/admin/settings');
  assert.match(await admin.locator('#secret-state').innerText(), /not set/);

  // A refused form says why and keeps what was typed.
  await admin.getByLabel('Hook URL').fill('https://127.0.0.1:1/');
  await admin.getByLabel(/Enabled/).check();
  await admin.getByRole('button', { name: 'Save hook settings' }).click();
  await admin.getByText('Set a shared secret to enable the hook').waitFor();

  await admin.getByLabel('Hook URL').fill(hookURL);
  await admin.getByLabel('CA bundle (optional)').fill(caPEM);
  await admin.getByLabel('New shared secret').fill(secret);
  await admin.getByLabel(/Enabled/).check();
  await admin.getByRole('button', { name: 'Save hook settings' }).click();
  await admin.getByText('Hook settings saved').waitFor();
  assert.match(await admin.locator('#secret-state').innerText(), /^set/);
  assert.equal(await admin.getByLabel('New shared secret').inputValue(), '');

  await admin.getByRole('button', { name: 'Send test request' }).click();
  await admin.locator('#hook-decision').waitFor();
  assert.match(await admin.locator('#hook-decision').innerText(), /allowed/);
  assert.match(await admin.locator('#hook-request').innerText(), /X-Keyway-Signature: v1=/);
  assert.match(await admin.locator('#hook-response').innerText(), /e2e-compliant/);
  assert.equal(requests.length, 1);
  const sent = requests[0];
  assert.equal(sent.username, info.admin.name);
  assert.equal(sent['public-ip'], '127.0.0.1');
  // The browser's client hints reached the hook, the high-entropy full
  // version too (asked for with Accept-CH: without it only the major
  // version comes). Chromium on Linux reports an empty platform version.
  assert.equal(sent.platform, 'Linux');
  assert.match(sent['client-version'], /^Chromium \d+\.\d+\.\d+\.\d+$/, 'no full browser version: ' + JSON.stringify(sent));

  await admin.getByLabel(/Trusted proxy networks/).fill('10.0.0.0/33');
  await admin.getByRole('button', { name: 'Save trusted proxies' }).click();
  await admin.getByText('"10.0.0.0/33" is not a network').waitFor();
  await admin.getByLabel(/Trusted proxy networks/).fill('127.0.0.0/8');
  await admin.getByRole('button', { name: 'Save trusted proxies' }).click();
  await admin.getByText('Trusted proxies saved. Your address is now 127.0.0.1.').waitFor();
  assert.equal(await admin.locator('#your-addr').innerText(), '127.0.0.1');
});

// status waits until the terminal page's status line says text.
async function termStatus(page, text) {
  await page.locator('#term-status', { hasText: text }).waitFor();
}

test('a user the hook refuses sees its message; one it allows connects', async () => {
  // The hook set by the test above stays enabled.
  const { info } = demo;
  const user = await newPage(browser, info.url);
  await signIn(user, info.user.name, info.user.password);
  const open = async (name) => {
    await user.goto('/');
    await user.locator('[data-resource]', { hasText: name }).getByRole('button', { name: /^connect to/i }).click();
    await user.waitForURL('**/connect/*');
  };

  deny.add(info.user.name);
  const before = requests.length;
  await open('demo-ssh');
  await termStatus(user, 'This laptop is not enrolled in device management.');
  const asked = requests.slice(before);
  assert.equal(asked.length, 1);
  assert.equal(asked[0].username, info.user.name);
  assert.equal(asked[0].resource, 'demo-ssh');
  assert.equal(asked[0].protocol, 'ssh');
  assert.equal(asked[0].platform, 'Linux');

  // The desktop is refused with the same words.
  await open('demo-vnc');
  await user.getByText('This laptop is not enrolled in device management.').waitFor();

  // The hook changes its mind: the next connection opens, and the
  // Sessions page shows the posture status the hook reported.
  deny.delete(info.user.name);
  await open('demo-ssh');
  await termStatus(user, 'Connected');
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await admin.goto('/sessions');
  await admin.getByRole('row', { name: new RegExp(info.user.name) }).getByText('e2e-compliant').waitFor();
  await user.context().close();
  await admin.context().close();
});
