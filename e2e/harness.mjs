// Shared harness for the end-to-end tests: starts `portal demo` (the portal
// with its embedded gateway and a real OpenSSH sshd on loopback) in a fresh
// data directory, and a headless Debian Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

// Flags for a headless Chromium as root on a machine without outside network.
const chromiumArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

// waitFor polls cond every 25 ms until it returns a truthy value or the
// deadline passes; the error names what was awaited.
export async function waitFor(what, cond, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// startDemo runs bin/portal demo and resolves once it has written demo.json.
export async function startDemo(extraArgs = []) {
  const data = mkdtempSync(join(tmpdir(), 'keyway-e2e-'));
  const bin = join(root, 'bin', 'portal');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run make build first`);
  const proc = spawn(bin, ['demo', '--data', data, '--listen', '127.0.0.1:0',
    '--gateway-listen', '127.0.0.1:0', '--gateway-rdp-listen', '127.0.0.1:0', '--gateway-vnc-listen', '127.0.0.1:0',
    '--log-level', 'debug', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = `exit ${code ?? sig}`; });
  const infoPath = join(data, 'demo.json');
  let info;
  try {
    await waitFor('portal demo to start', () => {
      if (exited) throw new Error(`portal demo stopped (${exited}):\n${log}`);
      return existsSync(infoPath);
    }, 60000);
    info = JSON.parse(readFileSync(infoPath, 'utf8'));
  } catch (e) {
    // A demo that started but cannot be used must not outlive the test.
    proc.kill('SIGTERM');
    throw e;
  }
  return {
    info,
    data,
    pid: proc.pid,
    log: () => log,
    // exited resolves with the exit code (or signal) once the demo stops.
    exited: () => (exited ? Promise.resolve(proc.exitCode ?? proc.signalCode) : once(proc, 'exit').then(([code, sig]) => code ?? sig)),
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        await once(proc, 'exit');
      }
      rmSync(data, { recursive: true, force: true });
    },
  };
}

// launchBrowser starts Chromium; extraArgs are more command-line flags
// (such as --ignore-certificate-errors-spki-list, for pages that must have
// no certificate error).
export async function launchBrowser(extraArgs = []) {
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: [...chromiumArgs, ...extraArgs] });
}

// newPage opens a page in a fresh context (its own cookies) that accepts the
// portal's self-signed certificate.
export async function newPage(browser, baseURL, viewport = { width: 1200, height: 800 }) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL, viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  return page;
}

export async function signIn(page, name, password) {
  await page.goto('/signin');
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/signin'));
}

// terminalText returns the whole text of the page's xterm.js buffer.
export async function terminalText(page) {
  return page.evaluate(() => {
    const term = window.keywayTerminal;
    if (!term) return '';
    const buf = term.buffer.active;
    const lines = [];
    for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i).translateToString(true));
    return lines.join('\n');
  });
}
