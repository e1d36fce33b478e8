// The desktop recording player: Guacamole.SessionRecording replays the
// recorded Guacamole stream. The gateway wrote key frames (the whole
// screen) into the recording and the portal serves it from any of them
// (file?keyframe=N), and from any time after one (&at=T: the portal draws
// the frames up to T and sends the screen then as one frame), so a seek
// fetches and draws one frame and what follows, however long the
// recording.
//
// This module owns the clock: playing is a series of seeks to where the
// clock says the recording should be, which gives any speed and lets a
// seek switch to a recording that starts at a key frame. The recorded
// images include the page's indexed format, so the playback display gets
// the same decoder as a live desktop.
import Guacamole from 'guacamole-common-js';
import { installIndexed } from './indexed';
import { PlayerBar, clock, type Playback } from './playerbar';
import { followExport } from './videoexport';
import './replay.css';

interface Timeline {
  duration_ms: number;
  // keyframes[n] is where ?keyframe=n starts, in ms from the first frame.
  keyframes: number[];
}

// Part is one SessionRecording: the recording from one key frame to a
// later one (a window), or to the end.
interface Part {
  keyframe: number;
  until: number; // the key frame it stops at; keyframes.length for the end
  base: number; // timeline ms of its first frame
  end: number; // timeline ms where it stops
  tunnel: Guacamole.StaticHTTPTunnel;
  rec: Guacamole.SessionRecording;
  loaded: number; // ms after base that have arrived
  bytes: number;
  complete: boolean;
  // times are its frames' times (ms after base), in order; frame is the
  // one on its display, -1 for none yet, and shown the time that stands
  // for (a still screen shows one frame for a while).
  times: number[];
  frame: number;
  shown: number;
  // drawn is the time (ms after base) of its first frame that draws
  // anything, -1 until one has arrived. A recording from the session's
  // start begins with frames that only size the screen (the target has
  // not sent a picture yet): a seek there shows the first picture instead
  // of a blank screen.
  drawn: number;
}

// drawingOps are the instructions that put pixels on a layer, each with
// the index of its argument naming that layer. Only layers 0 and up are
// on screen (buffers, such as the cursor's image, are negative): a frame
// that draws on none leaves the screen as it was.
const drawingOps = new Map([
  ['img', 2], ['png', 1], ['jpeg', 1], ['copy', 6], ['transfer', 6], ['cfill', 1], ['lfill', 1], ['put', 5],
]);

function drawsOnScreen(opcode: string, args: unknown[]): boolean {
  const i = drawingOps.get(opcode);
  return i !== undefined && Number(args[i]) >= 0;
}

// keepAheadMs is how far ahead of what is shown a seek replays the frames
// in between itself rather than asking the portal for the screen there.
const keepAheadMs = 1000;

// windowKeyframes is how many key frames' worth one fetch holds: a fetch
// to the end of an hour would make a seek parse the rest of the hour.
// prefetchMs is how long before a window's end playing fetches the next.
const windowKeyframes = 6;
const prefetchMs = 8000;

// recordingBlock is SessionRecording's BLOCK_SIZE (guacamole-common-js
// 1.5.0): it moves parsed data into its Blob every this many characters.
const recordingBlock = 262144;

// elementSize is an element's length in the protocol, as SessionRecording
// counts it: the value, its length's digits, '.' and ',' or ';'.
function elementSize(v: string): number {
  return v.length + 2 + String(v.length).length;
}

// atOrBefore returns the last of the sorted times that is at most t, or
// the first.
function atOrBefore(times: number[], t: number): number {
  let lo = 0;
  let hi = times.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return times[lo] ?? 0;
}

// recordingWithoutSnapshots makes a SessionRecording that keeps no
// snapshots of its own. SessionRecording snapshots the whole screen as
// PNG (Client.exportState) every 5 s of recording, on the first frame
// included, and reads every layer back from the canvas to do it: over half
// of a seek's time here. The gateway's key frames make them needless, as
// long as a part is never sought backwards: SessionRecording would go back
// to a snapshot, so the player opens a new part from a key frame instead.
// The snapshots are taken by the playback Client it makes for itself and
// does not expose, so Guacamole.Client is swapped for the constructor call.
function recordingWithoutSnapshots(tunnel: Guacamole.Tunnel): Guacamole.SessionRecording {
  const ns = Guacamole as unknown as { Client: new (t: Guacamole.Tunnel) => Guacamole.Client };
  const Client = ns.Client;
  // Client's statics (Client.State and others) are read during the call.
  ns.Client = Object.assign(function withoutSnapshots(t: Guacamole.Tunnel): Guacamole.Client {
    const c = new Client(t);
    c.exportState = () => {};
    return c;
  }, Client) as unknown as typeof Client;
  try {
    return new Guacamole.SessionRecording(tunnel);
  } finally {
    ns.Client = Client;
  }
}

class Replay implements Playback {
  private part: Part | null = null;
  // next is a part being prepared for a seek; it replaces part once the
  // sought frame is drawn, so the screen never goes blank meanwhile.
  private next: Part | null = null;
  private busy = false;
  private target = 0;
  private running = false;
  private speed = 1;
  private clockStart = 0;
  private clockFrom = 0;
  private waiters: Array<{ at: number; resolve: (ms: number) => void }> = [];

  constructor(
    private src: string,
    private timeline: Timeline,
    private screen: HTMLElement,
    private bar: PlayerBar,
  ) {
    bar.attach(this);
    void this.seek(0);
    new ResizeObserver(() => this.rescale()).observe(screen);
  }

  get duration(): number { return this.timeline.duration_ms; }
  get playing(): boolean { return this.running; }
  get shownTime(): number { return this.running ? this.target : this.position; }
  get position(): number {
    const p = this.part;
    return p && p.shown >= 0 ? p.base + p.shown : 0;
  }

  private keyframeFor(ms: number): number {
    const kfs = this.timeline.keyframes;
    let n = 0;
    while (n + 1 < kfs.length && kfs[n + 1] <= ms) n++;
    return n;
  }

  // open starts a part at key frame n, fetching window key frames' worth.
  // With at (a time after key frame n and before the next), the portal
  // draws the frames from the key frame to that time itself and the part
  // starts with one frame of the screen then: drawing them here would
  // cost tens of milliseconds each on a busy screen.
  private open(n: number, window = windowKeyframes, at?: number): Part {
    const kfs = this.timeline.keyframes;
    const until = Math.min(n + window, kfs.length);
    const q = new URLSearchParams({ keyframe: String(n) });
    if (until < kfs.length) q.set('until', String(until));
    const from = at !== undefined && at > (kfs[n] ?? 0) ? Math.round(at) : undefined;
    if (from !== undefined) q.set('at', String(from));
    const url = `${this.src}?${q}`;
    const tunnel = new Guacamole.StaticHTTPTunnel(url);
    const rec = recordingWithoutSnapshots(tunnel);
    installIndexed(rec.getDisplay());
    const part: Part = {
      keyframe: n, until, base: from ?? kfs[n] ?? 0, end: until < kfs.length ? kfs[until] : this.duration,
      tunnel, rec, loaded: -1, bytes: 0, complete: false, times: [], frame: -1, shown: -1, drawn: -1,
    };
    // SessionRecording replays frames from a Blob it appends the
    // tunnel's data to in blocks (and at the end), so a frame can be
    // shown only once its block is in: mirror that count to know which.
    let total = 0;
    let inBlob = 0;
    const ends: Array<[number, number]> = []; // [end in characters, ms]
    const advance = (): void => {
      while (ends.length > 0 && ends[0][0] <= inBlob) part.loaded = ends.shift()![1];
      this.pump();
    };
    // draws says whether the frame being received draws; SessionRecording
    // reports a frame (onprogress) at its sync, after its instructions.
    let draws = false;
    rec.onprogress = (duration: number, parsed: number) => {
      ends.push([parsed, duration]);
      part.times.push(duration);
      part.bytes = parsed;
      if (draws && part.drawn < 0) part.drawn = duration;
      draws = false;
    };
    const receive = tunnel.oninstruction;
    tunnel.oninstruction = (opcode: string, args: unknown[]) => {
      if (drawsOnScreen(opcode, args)) draws = true;
      receive?.(opcode, args);
      total += elementSize(opcode);
      for (const a of args) total += elementSize(String(a));
      if (total - inBlob >= recordingBlock) {
        inBlob = total;
        advance();
      }
    };
    rec.onload = () => {
      part.complete = true;
      inBlob = Infinity;
      advance();
    };
    rec.onerror = (message: string) => {
      this.setStatus(`The recording could not be played: ${message}`);
    };
    rec.getDisplay().onresize = () => this.rescale();
    rec.connect();
    return part;
  }

  private close(p: Part | null): void {
    if (!p) return;
    p.rec.onprogress = p.rec.onload = p.rec.onerror = null;
    p.rec.abort();
  }

  // seek shows the recording at ms (from its start); the promise resolves
  // once that frame is on screen.
  seek(ms: number): Promise<number> {
    // Whole ms, as the portal draws a part from (?at=): a part's base
    // must not lie past the target it was opened for.
    ms = Math.round(Math.max(0, Math.min(ms, this.duration)));
    this.target = ms;
    if (this.running) {
      this.clockStart = performance.now();
      this.clockFrom = ms;
    }
    const n = this.keyframeFor(ms);
    const cur = this.part;
    // The part on screen is the cheapest way there when the point sought
    // is a little ahead in it (playing seeks so, a frame at a time);
    // anywhere else a part drawn by the portal up to that time is.
    const keep = cur && ms >= this.position && ms - this.position <= keepAheadMs && ms < cur.end;
    if (keep) {
      this.close(this.next);
      this.next = null;
    } else if (!this.next || this.next.keyframe !== n || this.next.base !== Math.round(ms)) {
      this.close(this.next);
      this.next = this.open(n, 1, ms);
    }
    const done = new Promise<number>((resolve) => this.waiters.push({ at: ms, resolve }));
    this.pump();
    return done;
  }

  // pump moves the display towards the target when nothing else is under
  // way: it is called on every load progress, tick and seek completion.
  private pump(): void {
    if (this.busy) return;
    // A next part fetched ahead of time waits until playback reaches it.
    const p = this.next && (this.target >= this.next.base || !this.part) ? this.next : this.part;
    if (!p) return;
    const want = this.target - p.base;
    // Until its first picture is in, a part shows nothing worth showing.
    const undrawn = p.drawn < 0 || p.drawn > p.loaded;
    if (p.loaded < 0 || ((want > p.loaded || undrawn) && !p.complete)) {
      this.loading(p);
      return;
    }
    if (want > p.loaded && p.until < this.timeline.keyframes.length) {
      // Past this window: the next one starts where it stops.
      if (!this.next) this.next = this.open(p.until);
      if (this.next !== p) {
        this.loading(this.next);
        return;
      }
    }
    const to = Math.min(want, p.loaded);
    // SessionRecording.seek shows the frame nearest a time, which may be
    // a later one: ask for the time of the frame at or before it.
    // Before its first picture, the part shows that picture.
    const frame = Math.max(atOrBefore(p.times, to), p.drawn);
    if (frame === p.frame) {
      p.shown = to;
      this.bar.update();
      this.settle();
      return;
    }
    this.busy = true;
    p.rec.seek(frame, () => {
      p.rec.getDisplay().flush(() => {
        this.busy = false;
        p.frame = frame;
        p.shown = to;
        if (p === this.next) {
          this.swap(p);
        }
        this.bar.update();
        this.pump();
      });
    });
  }

  private swap(p: Part): void {
    const old = this.part;
    this.part = p;
    this.next = null;
    this.screen.replaceChildren(p.rec.getDisplay().getElement());
    this.rescale();
    this.close(old);
  }

  // settle resolves the seeks that are on screen and reports where
  // playback is.
  private settle(): void {
    const pos = this.position;
    const p = this.part;
    const atEnd = p !== null && p.complete && p.until >= this.timeline.keyframes.length && pos >= p.base + p.loaded;
    this.waiters = this.waiters.filter((w) => {
      if (this.next === null && (pos >= w.at || atEnd)) {
        w.resolve(pos);
        return false;
      }
      return true;
    });
    if (this.running && atEnd && this.target >= pos) this.pause();
    if (!this.running) this.setStatus(`Paused at ${clock(pos)}.`);
    else this.setStatus(`Playing at ${this.speed}× speed.`);
  }

  private loading(p: Part): void {
    // size is the response's Content-Length; public, but not in the types.
    const size = Number((p.tunnel as unknown as { size: string | null }).size ?? 0);
    const pct = size > 0 ? Math.min(99, Math.floor((100 * p.bytes) / size)) : 0;
    this.setStatus(size > 0 ? `Loading the recording… ${pct}%` : 'Loading the recording…');
  }

  private tick = (): void => {
    if (!this.running) return;
    this.target = Math.min(this.duration, this.clockFrom + (performance.now() - this.clockStart) * this.speed);
    const p = this.part;
    if (p && !this.next && p.until < this.timeline.keyframes.length && this.target > p.end - prefetchMs * this.speed) {
      this.next = this.open(p.until);
    }
    this.bar.update();
    this.pump();
    if (this.target >= this.duration && !this.busy) {
      this.settle();
    }
    requestAnimationFrame(this.tick);
  };

  play(): void {
    if (this.running) return;
    if (this.position >= this.duration) this.target = 0;
    this.running = true;
    this.clockStart = performance.now();
    this.clockFrom = this.target;
    this.bar.update();
    requestAnimationFrame(this.tick);
    void this.seek(this.target);
  }

  pause(): void {
    this.running = false;
    this.target = this.position;
    this.bar.update();
    this.setStatus(`Paused at ${clock(this.position)}.`);
  }

  setSpeed(x: number): void {
    if (this.running) {
      this.clockFrom = this.target;
      this.clockStart = performance.now();
    }
    this.speed = x;
  }

  private rescale(): void {
    const p = this.part;
    if (!p) return;
    const d = p.rec.getDisplay();
    const w = d.getWidth();
    const h = d.getHeight();
    if (!w || !h) return;
    d.scale(Math.min(this.screen.clientWidth / w, Math.max(this.screen.clientHeight, 1) / h, 1e3));
  }

  private setStatus(text: string): void {
    this.bar.status(text);
  }

  // pixel returns the colour at x, y of the screen shown, for tests.
  pixel(x: number, y: number): number[] {
    const p = this.part;
    if (!p) return [];
    const c = p.rec.getDisplay().flatten().getContext('2d');
    return c ? Array.from(c.getImageData(x, y, 1, 1).data) : [];
  }
}

declare global {
  interface Window {
    // For the end-to-end tests and benchmarks.
    keywayReplay?: Replay;
  }
}

async function start(): Promise<void> {
  const root = document.getElementById('desktop-player');
  if (!root) return;
  const screen = document.getElementById('replay-screen') as HTMLElement;
  const bar = new PlayerBar(root);
  let timeline: Timeline;
  try {
    const resp = await fetch(root.dataset.keyframes ?? '', { credentials: 'same-origin', cache: 'no-store' });
    if (!resp.ok) throw new Error(`the portal answered ${resp.status}`);
    timeline = (await resp.json()) as Timeline;
  } catch (e) {
    bar.status(`The recording could not be loaded: ${(e as Error).message}. Reload the page to try again.`);
    return;
  }
  // ?keyframes=off plays as a player without key frames must: every seek
  // replays from the start. For comparison in the benchmarks.
  if (new URLSearchParams(location.search).get('keyframes') === 'off') timeline.keyframes = [0];
  window.keywayReplay = new Replay(root.dataset.src ?? '', timeline, screen, bar);
}

document.addEventListener('DOMContentLoaded', () => {
  void start();
  const exp = document.getElementById('video-export');
  if (exp) followExport(exp);
});
