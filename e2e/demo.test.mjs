// `portal demo` as a newcomer meets it: `make demo` in a fresh clone, with
// its default flags, then each demo resource in a real Chromium; and a demo
// killed with SIGKILL leaves none of its servers running.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDemo, launchBrowser, newPage, signIn, terminalText, waitFor } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

// proc reads a process's parent, state and start time from /proc, or null
// once it is gone. The start time tells a process from a later one that
// reused its pid.
function proc(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // pid (comm) state ppid ... starttime is field 22; comm may hold spaces.
  const close = stat.lastIndexOf(')');
  const f = stat.slice(close + 2).split(' ');
  return { pid, comm: stat.slice(stat.indexOf('(') + 1, close), state: f[0], ppid: Number(f[1]), start: f[19] };
}

// descendants lists every process below pid.
function descendants(pid) {
  const all = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map((d) => proc(Number(d))).filter(Boolean);
  const found = [];
  const parents = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of all) {
      if (!parents.has(p.pid) && parents.has(p.ppid)) {
        parents.add(p.pid);
        found.push(p);
        grew = true;
      }
    }
  }
  return found;
}

// alive is whether p still runs: the same process (start time) and not a
// zombie waiting to be reaped, which has ended.
function alive(p) {
  const now = proc(p.pid);
  return now !== null && now.start === p.start && now.state !== 'Z' && now.state !== 'X';
}

test('portal demo killed with SIGKILL leaves none of its servers running', async () => {
  const demo = await startDemo();
  let children = [];
  try {
    children = descendants(demo.pid);
    const names = new Set(children.map((c) => c.comm));
    // The servers this test is about, so that it cannot pass by finding
    // no children at all.
    for (const want of ['sshd', 'Xvnc', 'Xvfb', 'freerdp-shadow-', 'xterm']) {
      assert.ok(names.has(want), `portal demo should have started ${want}; its children: ${[...names].join(', ')}`);
    }
    process.kill(demo.pid, 'SIGKILL');
    await waitFor('every process portal demo started to end after it was killed', () => children.every((c) => !alive(c)), 20000)
      .catch((e) => {
        const left = children.filter(alive).map((c) => `${c.pid} ${c.comm}`);
        throw new Error(`${e.message}; still running: ${left.join(', ')}`);
      });
  } finally {
    // Whatever outlived the demo was started by this test: stop it.
    for (const c of children.filter(alive)) {
      try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
    }
    await demo.stop();
  }
});

// The ports `make demo` uses with its default flags: the portal, then the
// embedded gateway's SSH, RDP and VNC listeners. No other e2e test uses
// them (they listen on port 0), and the suite runs one file at a time.
const demoPorts = [8443, 7993, 7994, 7995];

// listeners returns the local addresses listening on TCP port, from
// /proc/net/tcp{,6} ("0100007F" is 127.0.0.1, "00000000" every IPv4
// address, 32 zeros every IPv6 address).
function listeners(port) {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st; st 0A is LISTEN.
      if (f.length > 3 && f[3] === '0A' && f[1].endsWith(`:${hexPort}`)) out.push(f[1].split(':')[0]);
    }
  }
  return out;
}

// newcomerEnv is this process's environment as a newcomer's shell would
// have it: without what `make e2e` and `npm run` add (make's jobserver,
// npm's settings, node_modules/.bin on PATH) and without Keyway settings,
// so that `make demo` runs with its default flags.
function newcomerEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(MAKEFLAGS|MFLAGS|MAKELEVEL|MAKEOVERRIDES|npm_.*|NODE_.*|INIT_CWD|KEYWAY_.*)$/i.test(k)) continue;
    env[k] = v;
  }
  env.PATH = (env.PATH || '').split(delimiter).filter((d) => !d.includes('node_modules')).join(delimiter);
  if (process.env.NODE_EXTRA_CA_CERTS) env.NODE_EXTRA_CA_CERTS = process.env.NODE_EXTRA_CA_CERTS;
  return env;
}

// pixel reads one pixel of the remote screen as the browser drew it.
async function pixel(page, x, y) {
  return page.evaluate(([x, y]) => {
    const canvas = window.keywayDesktop.getDisplay().flatten();
    const d = canvas.getContext('2d').getImageData(x, y, 1, 1).data;
    return [d[0], d[1], d[2]];
  }, [x, y]);
}

async function connect(page, resource) {
  await page.goto('/');
  await page.locator(`[data-resource="${resource}"]`).getByRole('button', { name: /^connect to/i }).click();
  await page.waitForURL('**/connect/*');
}

// The clone is of the committed HEAD: what a newcomer gets. `make demo`
// builds everything there itself (npm ci, esbuild, go build); measured on
// the 2-core CI box it takes 1.5 to 3 minutes, so the wait is generous.
const buildAndStartMs = 10 * 60 * 1000;

test('make demo in a fresh clone, as README.md says: sign in as demo-user and use each demo resource', async () => {
  for (const port of demoPorts) {
    const busy = listeners(port);
    if (busy.length > 0) {
      let who = '';
      try { who = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' }).trim(); } catch { /* no ss */ }
      assert.fail(`port ${port} is taken (${who || 'listening'}): this test runs \`make demo\` with its default flags, ` +
        `which listen on 127.0.0.1:8443 and 127.0.0.1:7993-7995; stop what listens there (another \`make demo\` or \`make run\`?) and run it again`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'keyway-clone-'));
  const clone = join(dir, 'keyway');
  execFileSync('git', ['clone', '--quiet', root, clone], { stdio: 'pipe' });

  // A process group of its own, so that Ctrl+C can be sent to make and
  // the portal together, as a terminal does.
  const started = Date.now();
  const make = spawn('make', ['demo'], { cwd: clone, env: newcomerEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  make.stdout.on('data', (d) => { out += d; });
  make.stderr.on('data', (d) => { out += d; });
  let exited = null;
  const exit = new Promise((resolve) => make.on('exit', (code, sig) => { exited = `exit ${code ?? sig}`; resolve(); }));
  const tail = () => out.split('\n').slice(-40).join('\n');
  try {
    const [, url] = await waitFor('make demo to print the URL', () => {
      if (exited) throw new Error(`make demo stopped (${exited})`);
      return out.match(/Keyway demo is running at (https:\/\/\S+)/);
    }, buildAndStartMs);
    const user = await waitFor('the demo user in the output', () => out.match(/user:\s+(\S+)\s+password (\S+)/), 5000);
    console.log(`make demo printed its URL after ${Math.round((Date.now() - started) / 1000)} s`);
    assert.equal(url, 'https://localhost:8443');

    // The demo prints passwords: it listens on loopback only.
    assert.deepEqual(listeners(8443), ['0100007F'], 'make demo must listen on 127.0.0.1:8443 only');

    const page = await newPage(browser, url);
    await signIn(page, user[1], user[2]);

    await connect(page, 'demo-ssh');
    await page.locator('#term-status', { hasText: /connected to demo-ssh/i }).waitFor();
    await waitFor('a shell prompt on demo-ssh', async () => /keyway-test@\S*\s*\$\s*$/m.test(await terminalText(page)));

    await connect(page, 'demo-vnc');
    await page.locator('#desk-status', { hasText: /connected to demo-vnc/i }).waitFor();
    await waitFor('the VNC desktop background in the canvas', async () => {
      const [r, g, b] = await pixel(page, 900, 600);
      return r === 0x33 && g === 0x66 && b === 0x99;
    });

    await connect(page, 'demo-rdp');
    await page.locator('#desk-status', { hasText: /connected to demo-rdp/i }).waitFor();
    await waitFor('the RDP desktop background in the canvas', async () => {
      const [r, g, b] = await pixel(page, 1000, 740);
      return r === 0x55 && g === 0x33 && b === 0x88;
    });
    await page.goto('/');
  } catch (e) {
    throw new Error(`${e.message}\nmake demo's output ends:\n${tail()}`);
  } finally {
    // Ctrl+C, as README says; then what is left gets SIGKILL.
    if (!exited) {
      process.kill(-make.pid, 'SIGINT');
      await Promise.race([exit, new Promise((r) => setTimeout(r, 20000).unref())]);
      if (!exited) {
        process.kill(-make.pid, 'SIGKILL');
        await exit;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
