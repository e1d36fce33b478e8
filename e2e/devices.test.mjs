// Signing in a native client's device, end to end in a real Chromium
// against `portal demo`, without the CLI: node plays the client (an ed25519
// key from node:crypto, the login and token API), the browser the person
// who approves it. Then the Account page lists the device and its
// downloads, Revoke ends it, and the credential says device_revoked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { generateKeyPairSync, sign, createHash } from 'node:crypto';
import { startDemo, launchBrowser, newPage, waitFor } from './harness.mjs';

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

// api sends a JSON request to the portal and resolves with status and body.
function api(method, path, body, headers = {}) {
  const url = new URL(path, demo.info.url);
  const data = body === undefined ? '' : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({
      host: url.hostname, port: url.port, path: url.pathname, method,
      rejectUnauthorized: false, // the demo's self-signed certificate
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

// proof is the Keyway-Proof header for a request, signed with key.
function proof(key, method, target) {
  const ts = String(Math.floor(Date.now() / 1000));
  const sig = sign(null, Buffer.from(`keyway-proof\n${ts}\n${method}\n${target}`), key).toString('base64url');
  return `${ts}.${sig}`;
}

test('a device is approved in the browser, listed, and revoked', async () => {
  const { info } = demo;
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  // The raw 32 bytes are the end of the SPKI DER.
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const fingerprint = 'SHA256:' + createHash('sha256')
    .update(Buffer.concat([lenPrefixed('ssh-ed25519'), lenPrefixed(raw)])).digest('base64').replace(/=+$/, '');

  const login = await api('POST', '/api/v1/client/login', {
    public_key: raw.toString('base64'), name: 'e2e-laptop', os: 'linux', arch: 'amd64', version: 'e2e',
  });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  const { device_code: deviceCode, user_code: userCode, verification_uri_complete: complete, interval } = login.body;
  assert.match(userCode, /^[B-Z]{4}-[B-Z]{4}$/);
  assert.equal(interval, 2);
  const tokenBody = { device_code: deviceCode, signature: sign(null, Buffer.from('keyway-device-token\n' + deviceCode), privateKey).toString('base64url') };
  const first = await api('POST', '/api/v1/client/token', tokenBody);
  assert.equal(first.status, 400);
  assert.equal(first.body.error, 'authorization_pending');

  // Not signed in: the link leads through sign-in and back to the code.
  const page = await newPage(browser, info.url);
  page.on('dialog', (d) => d.accept());
  await page.goto(complete);
  await page.waitForURL((u) => u.pathname === '/signin');
  await page.getByLabel('Username').fill(info.user.name);
  await page.getByLabel('Password').fill(info.user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/device' && u.searchParams.get('code') === userCode);
  assert.equal(await page.locator('#device-name').innerText(), 'e2e-laptop');
  assert.equal(await page.locator('#device-fingerprint').innerText(), fingerprint);
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.waitForURL((u) => u.pathname === '/account');
  await page.getByText('You approved e2e-laptop').waitFor();

  // The client's next poll gets the credential, once.
  const token = await waitFor('the credential', async () => {
    const r = await api('POST', '/api/v1/client/token', tokenBody);
    if (r.status === 200) return r.body;
    assert.ok(['authorization_pending', 'slow_down'].includes(r.body.error), JSON.stringify(r.body));
    await new Promise((res) => setTimeout(res, interval * 1000));
    return null;
  });
  assert.match(token.credential, /^kwd_\d+_/);
  assert.equal(token.user, info.user.name);
  assert.equal(token.device.name, 'e2e-laptop');
  const again = await api('POST', '/api/v1/client/token', tokenBody);
  assert.equal(again.body.error, 'invalid_grant');

  // The Account page lists the device, and the client builds to download.
  await page.goto('/account');
  const row = page.locator('#devices-table tr', { hasText: 'e2e-laptop' });
  await row.getByText('active').waitFor();
  assert.match(await row.innerText(), /linux\/amd64/);
  assert.match(await page.locator('#login-line').innerText(), /^keyway login https:\/\//);
  assert.equal(await page.locator('#client-files a', { hasText: 'keyway-linux-amd64' }).count(), 1, 'make build makes bin/clients');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#client-files a', { hasText: 'keyway-linux-amd64' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'keyway-linux-amd64');

  await row.getByRole('button', { name: 'Revoke' }).click();
  await page.getByText('The device e2e-laptop was revoked.').waitFor();
  await page.locator('#devices-table tr', { hasText: 'e2e-laptop' }).getByText('revoked').waitFor();

  // The credential, with a right proof, now says the device was revoked.
  const path = '/api/v1/client/logout';
  const out = await api('POST', path, undefined, { Authorization: 'Bearer ' + token.credential, 'Keyway-Proof': proof(privateKey, 'POST', path) });
  assert.equal(out.status, 401);
  assert.equal(out.body.error, 'device_revoked');
});

// lenPrefixed is an SSH wire-format string.
function lenPrefixed(b) {
  const buf = Buffer.from(b);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(buf.length);
  return Buffer.concat([len, buf]);
}
