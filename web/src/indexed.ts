// Few-colour screen regions (text, UI drawing) come from the gateway as
// palette indexes ("image/x-keyway-indexed"): decoded here in a few
// milliseconds, where the browser takes several times longer to decode the
// same image as PNG. The format is in gateway/display (IndexedMimetype).
import Guacamole from 'guacamole-common-js';
import { unzlibSync } from 'fflate';

export const indexedMimetype = 'image/x-keyway-indexed';

// Limits checked before allocating: the gateway never sends more.
const maxSide = 8192;

// decodeIndexed returns the image as a canvas, or throws on malformed
// data.
export function decodeIndexed(data: Uint8Array): HTMLCanvasElement {
  if (data.length < 7 || data[0] !== 1) throw new Error('indexed image: bad header');
  const w = (data[1] << 8) | data[2];
  const h = (data[3] << 8) | data[4];
  const depth = data[5];
  const colours = data[6] + 1;
  if (![1, 2, 4, 8].includes(depth) || colours > 1 << depth || w < 1 || h < 1 || w > maxSide || h > maxSide) {
    throw new Error('indexed image: bad size or depth');
  }
  const palEnd = 7 + 4 * colours;
  if (data.length < palEnd) throw new Error('indexed image: short palette');
  // Palette entries as 32-bit pixels in the platform's byte order.
  const pal = new Uint32Array(256);
  const pv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  for (let i = 0; i < colours; i++) pal[i] = pv.getUint32(7 + 4 * i, little);
  const stride = (w * depth + 7) >> 3;
  const rows = unzlibSync(data.subarray(palEnd), { out: new Uint8Array(stride * h) });
  if (rows.length < stride * h) throw new Error('indexed image: short rows');

  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('no 2D canvas');
  const pixels = ctx.createImageData(w, h);
  const out = new Uint32Array(pixels.data.buffer);
  const mask = (1 << depth) - 1;
  const perByte = 8 / depth;
  let o = 0;
  for (let y = 0; y < h; y++) {
    let r = y * stride;
    for (let x = 0; x < w; x += perByte, r++) {
      const b = rows[r];
      const n = Math.min(perByte, w - x);
      for (let j = 0; j < n; j++) out[o++] = pal[(b >> (8 - depth * (j + 1))) & mask];
    }
  }
  ctx.putImageData(pixels, 0, 0);
  return canvas;
}

// installIndexed makes display draw indexed img streams itself, and leaves
// every other type to guacamole-common-js.
type DrawStream = (layer: Guacamole.Layer, x: number, y: number, stream: Guacamole.InputStream, mimetype: string) => void;

export function installIndexed(display: Guacamole.Display): void {
  // drawStream is public in guacamole-common-js but not in its types.
  const d = display as unknown as { drawStream: DrawStream };
  const drawStream = d.drawStream.bind(display);
  d.drawStream = (layer, x, y, stream, mimetype) => {
    if (mimetype !== indexedMimetype) {
      drawStream(layer, x, y, stream, mimetype);
      return;
    }
    const chunks: Uint8Array[] = [];
    const reader = new Guacamole.ArrayBufferReader(stream);
    reader.ondata = (buf: ArrayBuffer) => chunks.push(new Uint8Array(buf));
    reader.onend = () => {
      const data = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) { data.set(c, at); at += c.length; }
      try {
        // Queued now, in stream order, like any image.
        display.drawImage(layer, x, y, decodeIndexed(data) as unknown as HTMLImageElement);
      } catch (e) {
        console.warn('dropped a malformed screen update', e);
      }
    };
  };
}
