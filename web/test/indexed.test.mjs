// Unit tests of the page's indexed-image decoder (web/src/indexed.ts),
// bundled with esbuild for Node. Images are packed here the way
// gateway/display writes them: palette indexes, first pixel in the high
// bits, rows padded to a byte, zlib.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');

async function load() {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-indexed-'));
  try {
    const out = join(dir, 'indexed.mjs');
    await build({ entryPoints: [join(web, 'src', 'indexed.ts')], bundle: true, format: 'esm', outfile: out, logLevel: 'error' });
    return await import(pathToFileURL(out).href);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const { IndexedDecoder } = await load();

// Deterministic pseudo-random numbers, so a failure can be reproduced.
function rng(seed) {
  return () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed >>> 8; };
}

function pack(w, h, depth, colours, indexes) {
  const stride = (w * depth + 7) >> 3;
  const rows = Buffer.alloc(stride * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const bit = x * depth;
      rows[y * stride + (bit >> 3)] |= indexes[y * w + x] << (8 - depth - (bit & 7));
    }
  }
  const header = Buffer.from([1, w >> 8, w & 255, h >> 8, h & 255, depth, colours - 1]);
  const palette = Buffer.alloc(4 * colours);
  for (let i = 0; i < colours; i++) palette.set([i * 37 & 255, i * 91 & 255, 255 - i, 255], 4 * i);
  return { data: new Uint8Array(Buffer.concat([header, palette, deflateSync(rows)])), palette };
}

function image(w, h, depth, seed) {
  const colours = Math.min(1 << depth, 2 + (seed % 200));
  const next = rng(seed);
  const indexes = Array.from({ length: w * h }, () => next() % colours);
  const { data, palette } = pack(w, h, depth, colours, indexes);
  const want = Buffer.alloc(4 * w * h);
  indexes.forEach((ix, i) => palette.copy(want, 4 * i, 4 * ix, 4 * ix + 4));
  return { data, want };
}

const rgba = (img) => Buffer.from(img.pixels.buffer, img.pixels.byteOffset, 4 * img.width * img.height);

test('every depth and width decodes to the palette colours', () => {
  const dec = new IndexedDecoder();
  let seed = 1;
  for (const depth of [1, 2, 4, 8]) {
    for (const w of [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 64, 333]) {
      for (const h of [1, 2, 7]) {
        const { data, want } = image(w, h, depth, seed++);
        const img = dec.decode(data);
        assert.equal(img.width, w);
        assert.equal(img.height, h);
        assert.ok(rgba(img).equals(want), `depth ${depth}, ${w}x${h}`);
      }
    }
  }
});

test('a small image after a large one uses only its own pixels', () => {
  const dec = new IndexedDecoder();
  dec.decode(image(300, 200, 8, 7).data);
  const { data, want } = image(3, 2, 1, 8);
  assert.ok(rgba(dec.decode(data)).equals(want));
  // An index past a 3-colour palette is transparent, whatever the last
  // image's palette held.
  const { data: odd } = pack(4, 1, 2, 3, [0, 1, 2, 3]);
  const px = rgba(dec.decode(odd));
  assert.deepEqual([...px.subarray(12, 16)], [0, 0, 0, 0]);
});

test('malformed images are refused', () => {
  const dec = new IndexedDecoder();
  const good = image(10, 4, 2, 3).data;
  const edit = (f) => { const d = new Uint8Array(good); f(d); return d; };
  const cases = {
    empty: new Uint8Array(0),
    'unknown version': edit((d) => { d[0] = 2; }),
    'depth 3': edit((d) => { d[5] = 3; }),
    'more colours than the depth holds': edit((d) => { d[6] = 4; }),
    'zero width': edit((d) => { d[1] = 0; d[2] = 0; }),
    'over the size limit': edit((d) => { d[1] = 0x20; d[2] = 1; }),
    'short palette': good.subarray(0, 12),
    'zlib header only': good.subarray(0, 7 + 16 + 2),
    'rows cut short': good.subarray(0, 7 + 16 + 6),
    'not zlib': edit((d) => { d.fill(0x55, 7 + 16); }),
  };
  for (const [name, data] of Object.entries(cases)) {
    assert.throws(() => dec.decode(data), undefined, name);
  }
});
