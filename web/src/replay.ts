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
}

const seekStep = 5000;

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

function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
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

class Replay {
  private part: Part | null = null;
  // next is a part being prepared for a seek; it replaces part once the
  // sought frame is drawn, so the screen never goes blank meanwhile.
  private next: Part | null = null;
  private busy = false;
  private target = 0;
  private playing = false;
  private speed = 1;
  private clockStart = 0;
  private clockFrom = 0;
  private waiters: Array<{ at: number; resolve: (ms: number) => void }> = [];

  constructor(
    private src: string,
    private timeline: Timeline,
    private screen: HTMLElement,
    private playBtn: HTMLButtonElement,
    private range: HTMLInputElement,
    private timeEl: HTMLElement,
    private statusEl: HTMLElement,
  ) {
    range.max = String(timeline.duration_ms);
    range.disabled = false;
    playBtn.disabled = false;
    this.updateTime();
    this.seek(0);
    new ResizeObserver(() => this.rescale()).observe(screen);
  }

  get duration(): number { return this.timeline.duration_ms; }
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
      tunnel, rec, loaded: -1, bytes: 0, complete: false, times: [], frame: -1, shown: -1,
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
    rec.onprogress = (duration: number, parsed: number) => {
      ends.push([parsed, duration]);
      part.times.push(duration);
      part.bytes = parsed;
    };
    const receive = tunnel.oninstruction;
    tunnel.oninstruction = (opcode: string, args: unknown[]) => {
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
    ms = Math.max(0, Math.min(ms, this.duration));
    this.target = ms;
    if (this.playing) {
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
    if (p.loaded < 0 || (want > p.loaded && !p.complete)) {
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
    const frame = atOrBefore(p.times, to);
    if (frame === p.frame) {
      p.shown = to;
      this.updateTime();
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
        this.updateTime();
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
    if (this.playing && atEnd && this.target >= pos) this.pause();
    if (!this.playing) this.setStatus(`Paused at ${clock(pos)}.`);
    else this.setStatus(`Playing at ${this.speed}× speed.`);
  }

  private loading(p: Part): void {
    // size is the response's Content-Length; public, but not in the types.
    const size = Number((p.tunnel as unknown as { size: string | null }).size ?? 0);
    const pct = size > 0 ? Math.min(99, Math.floor((100 * p.bytes) / size)) : 0;
    this.setStatus(size > 0 ? `Loading the recording… ${pct}%` : 'Loading the recording…');
  }

  private tick = (): void => {
    if (!this.playing) return;
    this.target = Math.min(this.duration, this.clockFrom + (performance.now() - this.clockStart) * this.speed);
    const p = this.part;
    if (p && !this.next && p.until < this.timeline.keyframes.length && this.target > p.end - prefetchMs * this.speed) {
      this.next = this.open(p.until);
    }
    this.updateTime();
    this.pump();
    if (this.target >= this.duration && !this.busy) {
      this.settle();
    }
    requestAnimationFrame(this.tick);
  };

  play(): void {
    if (this.playing) return;
    if (this.position >= this.duration) this.target = 0;
    this.playing = true;
    this.clockStart = performance.now();
    this.clockFrom = this.target;
    this.playBtn.textContent = 'Pause';
    this.playBtn.setAttribute('aria-pressed', 'true');
    requestAnimationFrame(this.tick);
    this.seek(this.target);
  }

  pause(): void {
    this.playing = false;
    this.target = this.position;
    this.playBtn.textContent = 'Play';
    this.playBtn.setAttribute('aria-pressed', 'false');
    this.setStatus(`Paused at ${clock(this.position)}.`);
  }

  toggle(): void {
    if (this.playing) this.pause();
    else this.play();
  }

  setSpeed(x: number): void {
    if (this.playing) {
      this.clockFrom = this.target;
      this.clockStart = performance.now();
    }
    this.speed = x;
  }

  private updateTime(): void {
    const shown = this.playing ? this.target : this.position;
    if (document.activeElement !== this.range) this.range.value = String(Math.round(shown));
    this.timeEl.textContent = `${clock(shown)} / ${clock(this.duration)}`;
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
    if (this.statusEl.textContent !== text) this.statusEl.textContent = text;
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
  const playBtn = document.getElementById('replay-play') as HTMLButtonElement;
  const range = document.getElementById('replay-timeline') as HTMLInputElement;
  const timeEl = document.getElementById('replay-time') as HTMLElement;
  const speed = document.getElementById('replay-speed') as HTMLSelectElement;
  const statusEl = document.getElementById('replay-status') as HTMLElement;
  let timeline: Timeline;
  try {
    const resp = await fetch(root.dataset.keyframes ?? '', { credentials: 'same-origin', cache: 'no-store' });
    if (!resp.ok) throw new Error(`the portal answered ${resp.status}`);
    timeline = (await resp.json()) as Timeline;
  } catch (e) {
    statusEl.textContent = `The recording could not be loaded: ${(e as Error).message}. Reload the page to try again.`;
    return;
  }
  // ?keyframes=off plays as a player without key frames must: every seek
  // replays from the start. For comparison in the benchmarks.
  if (new URLSearchParams(location.search).get('keyframes') === 'off') timeline.keyframes = [0];
  const r = new Replay(root.dataset.src ?? '', timeline, screen, playBtn, range, timeEl, statusEl);
  window.keywayReplay = r;
  playBtn.addEventListener('click', () => r.toggle());
  range.addEventListener('input', () => { timeEl.textContent = `${clock(Number(range.value))} / ${clock(r.duration)}`; });
  range.addEventListener('change', () => { r.seek(Number(range.value)); });
  speed.addEventListener('change', () => r.setSpeed(Number(speed.value)));
  document.addEventListener('keydown', (e) => {
    const t = e.target as HTMLElement;
    if (t.closest('input, select, textarea, button')) return;
    if (e.key === ' ') { e.preventDefault(); r.toggle(); }
    if (e.key === 'ArrowLeft') r.seek(r.position - seekStep);
    if (e.key === 'ArrowRight') r.seek(r.position + seekStep);
  });
}

document.addEventListener('DOMContentLoaded', () => {
  void start();
  const exp = document.getElementById('video-export');
  if (exp) followExport(exp);
});
