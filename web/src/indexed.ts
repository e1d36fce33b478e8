// Few-colour screen regions (text, UI drawing) come from the gateway as
// palette indexes ("image/x-keyway-indexed"): decoded here in a few
// milliseconds, where the browser takes several times longer to decode the
// same image as PNG. The format is in recordings/indexed (Mimetype).
import Guacamole from 'guacamole-common-js';
import { unzlibSync } from 'fflate';

export const indexedMimetype = 'image/x-keyway-indexed';

// Limits checked before allocating: the gateway never sends more.
const maxSide = 8192;

// IndexedImage is a decoded image: RGBA pixels, one 32-bit word each in
// the platform's byte order (an ImageData's buffer).
export interface IndexedImage { width: number; height: number; pixels: Int32Array<ArrayBuffer> }

const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// IndexedDecoder decodes images into buffers it keeps and reuses: a screen
// update is often a megapixel, and fresh buffers for each cost more in
// page faults than the decoding itself.
export class IndexedDecoder {
  private rows = new Uint8Array(0);
  private pixels = new Int32Array(0);
  private pal = new Int32Array(256);

  // decode returns the image, whose pixels are valid until the next
  // decode, or throws on malformed data.
  decode(data: Uint8Array): IndexedImage {
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
    // A zlib stream is at least 7 bytes, and fflate returns the whole
    // output buffer, unwritten, for one with no deflate data at all.
    if (data.length < palEnd + 7) throw new Error('indexed image: short rows');
    // Palette entries as 32-bit pixels, signed: V8 keeps int32 values
    // unboxed where large uint32 ones become doubles.
    const pal = this.pal;
    const pv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0; i < colours; i++) pal[i] = pv.getInt32(7 + 4 * i, little);
    // An index past the palette (a malformed image) is transparent, not
    // a colour left from the last image.
    pal.fill(0, colours);
    const stride = (w * depth + 7) >> 3;
    if (this.rows.length < stride * h) this.rows = new Uint8Array(stride * h);
    if (this.pixels.length < w * h) this.pixels = new Int32Array(w * h);
    const rows = unzlibSync(data.subarray(palEnd), { out: this.rows.subarray(0, stride * h) });
    if (rows.length < stride * h) throw new Error('indexed image: short rows');
    const pixels = this.pixels.subarray(0, w * h);
    expand(rows, stride, w, h, depth, pal, pixels);
    return { width: w, height: h, pixels };
  }

  // canvas returns the image as a canvas, or throws on malformed data.
  canvas(data: Uint8Array): HTMLCanvasElement {
    const img = this.decode(data);
    const canvas = document.createElement('canvas');
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new Error('no 2D canvas');
    const bytes = new Uint8ClampedArray(img.pixels.buffer, img.pixels.byteOffset, 4 * img.width * img.height);
    ctx.putImageData(new ImageData(bytes, img.width, img.height), 0, 0);
    return canvas;
  }
}

// expand writes the w×h pixels whose palette indexes are packed in rows
// (stride bytes each, first pixel in the high bits) to out. This runs for
// every pixel of every screen update, so each depth has its own loop,
// unrolled over the pixels of a byte, and no read goes past the end of
// rows (which would make V8 deoptimise).
function expand(rows: Uint8Array, stride: number, w: number, h: number, depth: number, pal: Int32Array, out: Int32Array): void {
  const perByte = 8 / depth;
  const whole = Math.floor(w / perByte); // bytes of a row with all their pixels in it
  const bytes = depth === 8 ? bytes8 : depth === 4 ? bytes4 : depth === 2 ? bytes2 : bytes1;
  const mask = (1 << depth) - 1;
  const tail = w - whole * perByte;
  let o = 0;
  for (let y = 0; y < h; y++) {
    const r = y * stride;
    o = bytes(rows, r, r + whole, pal, out, o);
    if (tail > 0) { // the last byte holds fewer than perByte pixels
      const b = rows[r + whole];
      for (let j = 0; j < tail; j++) out[o++] = pal[(b >> (8 - depth * (j + 1))) & mask];
    }
  }
}

// bytesN expand rows[r:end] at N bits a pixel to out[o:] and return the
// new o.
function bytes8(rows: Uint8Array, r: number, end: number, pal: Int32Array, out: Int32Array, o: number): number {
  for (; r < end; r++) out[o++] = pal[rows[r]];
  return o;
}

function bytes4(rows: Uint8Array, r: number, end: number, pal: Int32Array, out: Int32Array, o: number): number {
  for (; r < end; r++) {
    const b = rows[r];
    out[o++] = pal[b >> 4]; out[o++] = pal[b & 15];
  }
  return o;
}

function bytes2(rows: Uint8Array, r: number, end: number, pal: Int32Array, out: Int32Array, o: number): number {
  for (; r < end; r++) {
    const b = rows[r];
    out[o++] = pal[b >> 6]; out[o++] = pal[(b >> 4) & 3]; out[o++] = pal[(b >> 2) & 3]; out[o++] = pal[b & 3];
  }
  return o;
}

function bytes1(rows: Uint8Array, r: number, end: number, pal: Int32Array, out: Int32Array, o: number): number {
  const p0 = pal[0]; const p1 = pal[1];
  for (; r < end; r++) {
    const b = rows[r];
    out[o++] = b & 0x80 ? p1 : p0; out[o++] = b & 0x40 ? p1 : p0;
    out[o++] = b & 0x20 ? p1 : p0; out[o++] = b & 0x10 ? p1 : p0;
    out[o++] = b & 0x08 ? p1 : p0; out[o++] = b & 0x04 ? p1 : p0;
    out[o++] = b & 0x02 ? p1 : p0; out[o++] = b & 0x01 ? p1 : p0;
  }
  return o;
}

// installIndexed makes display draw indexed img streams itself, and leaves
// every other type to guacamole-common-js.
type DrawStream = (layer: Guacamole.Layer, x: number, y: number, stream: Guacamole.InputStream, mimetype: string) => void;

// A stand-in for a layer in Display.drawImage, whose task calls
// layer.drawImage(x, y, image) when the frame is drawn.
interface Drawer { drawImage(x: number, y: number, image: unknown): void }

export function installIndexed(display: Guacamole.Display): void {
  const decoder = new IndexedDecoder();
  const touched = new WeakSet<Guacamole.Layer>();
  // drawStream is public in guacamole-common-js but not in its types.
  const d = display as unknown as { drawStream: DrawStream };
  const drawStream = d.drawStream.bind(display);
  const dot = document.createElement('canvas');
  dot.width = dot.height = 1;

  // put decodes data when its frame is drawn, straight into the layer's
  // canvas: screen images are opaque, so this is what drawing them would
  // do, without a canvas of their own (whose allocation cost more than
  // the decoding) and with one reused buffer.
  const put = (layer: Guacamole.Layer, data: Uint8Array): Drawer => ({
    drawImage(x: number, y: number) {
      let img: IndexedImage;
      try {
        img = decoder.decode(data);
      } catch (e) {
        console.warn('dropped a malformed screen update', e);
        return;
      }
      if (!touched.has(layer)) {
        // The layer keeps its pixels on a resize only once it has been
        // drawn on through its own methods: one pixel, painted over next.
        layer.drawImage(x, y, dot as unknown as HTMLImageElement);
        touched.add(layer);
      }
      const bytes = new Uint8ClampedArray(img.pixels.buffer, img.pixels.byteOffset, 4 * img.width * img.height);
      layer.getCanvas().getContext('2d')?.putImageData(new ImageData(bytes, img.width, img.height), x, y);
    },
  });

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
      // Queued now, in stream order, like any image. Off-screen buffers
      // grow to fit what is drawn on them, which only their own drawImage
      // does.
      if ((layer as unknown as { autosize?: boolean }).autosize) {
        try {
          display.drawImage(layer, x, y, decoder.canvas(data) as unknown as HTMLImageElement);
        } catch (e) {
          console.warn('dropped a malformed screen update', e);
        }
        return;
      }
      display.drawImage(put(layer, data) as unknown as Guacamole.Layer, x, y, dot as unknown as HTMLImageElement);
    };
  };
}
