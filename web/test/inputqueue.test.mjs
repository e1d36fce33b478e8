// Unit tests of the terminal's input queue (web/src/inputqueue.ts),
// bundled with esbuild for Node, against a fake socket whose buffer the
// test drains, and a timer the test runs by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');

async function load() {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-inputqueue-'));
  try {
    const out = join(dir, 'inputqueue.mjs');
    await build({ entryPoints: [join(web, 'src', 'inputqueue.ts')], bundle: true, format: 'esm', outfile: out, logLevel: 'error' });
    return await import(pathToFileURL(out).href);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const { InputQueue } = await load();

const CHUNK = 16;
const HIGH = 64;

// rig is a queue on a fake socket: sent keeps every message, drain()
// empties the socket's buffer, tick() runs the pending timer.
function rig() {
  const sent = [];
  const sock = { bufferedAmount: 0, send(b) { sent.push(Uint8Array.from(b)); this.bufferedAmount += b.length; } };
  let timer = null;
  const q = new InputQueue({
    chunk: CHUNK, highWater: HIGH, retryMs: 10,
    setTimer: (fn) => { assert.equal(timer, null, 'one timer at a time'); timer = fn; return () => { timer = null; }; },
  });
  q.attach(sock);
  return {
    q, sent, sock,
    drain() { sock.bufferedAmount = 0; },
    tick() { const fn = timer; timer = null; fn?.(); },
    get waiting() { return timer !== null; },
  };
}

const bytes = (n, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
const joined = (parts) => Uint8Array.from(parts.flatMap((p) => [...p]));

test('a paste goes in pieces of at most the chunk size, in order, whole', () => {
  const r = rig();
  const paste = bytes(1000);
  r.q.push(paste);
  r.q.push(bytes(3, 1)); // a key typed during the paste comes after it
  while (r.q.pending > 0) {
    assert.ok(r.sock.bufferedAmount < HIGH + CHUNK, `the socket holds ${r.sock.bufferedAmount} bytes`);
    assert.ok(r.waiting, 'a full socket is looked at again later');
    r.drain();
    r.tick();
  }
  assert.ok(r.sent.every((m) => m.length > 0 && m.length <= CHUNK));
  assert.deepEqual(joined(r.sent), joined([paste, bytes(3, 1)]));
  assert.equal(r.q.total, 0, 'the progress starts over once all is sent');
  assert.equal(r.waiting, false);
});

test('nothing is sent while the socket is full', () => {
  const r = rig();
  r.sock.bufferedAmount = HIGH;
  r.q.push(bytes(5));
  assert.equal(r.sent.length, 0);
  r.tick();
  assert.equal(r.sent.length, 0, 'still full');
  r.drain();
  r.tick();
  assert.deepEqual(joined(r.sent), bytes(5));
});

test('a key on an idle socket goes at once', () => {
  const r = rig();
  r.q.push(bytes(1));
  assert.equal(r.sent.length, 1);
  assert.equal(r.waiting, false);
});

test('clear drops the rest; a new socket starts empty; no socket sends nothing', () => {
  const r = rig();
  r.q.push(bytes(500));
  const before = r.sent.length;
  assert.ok(r.q.pending > 0 && r.q.total === 500);
  r.q.clear();
  assert.equal(r.q.pending, 0);
  assert.equal(r.waiting, false, 'clear stops the timer');
  r.drain();
  r.tick();
  assert.equal(r.sent.length, before);

  r.q.push(bytes(300));
  const other = { bufferedAmount: 0, sent: [], send(b) { this.sent.push(b); } };
  r.q.attach(other);
  assert.equal(r.q.pending, 0, 'what was queued for the old socket is dropped');
  r.q.push(bytes(2));
  assert.equal(other.sent.length, 1);
  r.q.attach(null);
  r.q.push(bytes(2));
  assert.equal(r.q.pending, 0);
});
