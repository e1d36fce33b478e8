// The one control bar of both recording players (the templ component
// playerControls): Play/Pause, the timeline, the time, Speed, Full screen
// and a status line, with the same keys everywhere: Space plays or
// pauses, ← and → move 5 s, F goes full screen. The terminal player
// (asciinema-player) and the desktop one (Guacamole.SessionRecording)
// each implement Playback; the bar drives it and shows its state.
import './playerbar.css';

// Playback is a recording player as the bar sees it; times in ms.
export interface Playback {
  readonly duration: number;
  // shownTime is the time the bar shows: where the clock is while
  // playing, the frame on screen while paused.
  readonly shownTime: number;
  readonly playing: boolean;
  play(): void;
  pause(): void;
  seek(ms: number): Promise<unknown>;
  setSpeed(x: number): void;
}

export const seekStep = 5000;

// clock formats ms as m:ss or h:mm:ss.
export function clock(ms: number): string {
  const s = Math.floor(Math.max(0, ms) / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function byId<T extends HTMLElement>(root: HTMLElement, id: string): T {
  const el = root.querySelector<T>(`#${id}`);
  if (!el) throw new Error(`the player page has no #${id}`);
  return el;
}

export class PlayerBar {
  private readonly playBtn: HTMLButtonElement;
  private readonly timeline: HTMLInputElement;
  private readonly timeEl: HTMLElement;
  private readonly speed: HTMLSelectElement;
  private readonly fullBtn: HTMLButtonElement;
  private readonly statusEl: HTMLElement;
  private p: Playback | null = null;
  // scrubbing is set while a pointer drags the timeline: playing must
  // not move the thumb from under it.
  private scrubbing = false;

  // root holds the screen and the bar; it is what goes full screen.
  constructor(private readonly root: HTMLElement) {
    this.playBtn = byId(root, 'player-play');
    this.timeline = byId(root, 'player-timeline');
    this.timeEl = byId(root, 'player-time');
    this.speed = byId(root, 'player-speed');
    this.fullBtn = byId(root, 'player-fullscreen');
    this.statusEl = byId(root, 'player-status');
    // Full screen needs no recording: it works from the start.
    this.fullBtn.disabled = !root.requestFullscreen;
    this.fullBtn.addEventListener('click', () => this.toggleFullscreen());
    document.addEventListener('fullscreenchange', () => {
      this.fullBtn.textContent = document.fullscreenElement === root ? 'Exit full screen' : 'Full screen';
    });
    // Capturing on the document puts these keys before any player's own
    // (asciinema-player has its own for the same keys).
    document.addEventListener('keydown', (e) => this.key(e), true);
  }

  // attach binds the controls to p and enables them.
  attach(p: Playback): void {
    const first = this.p === null;
    this.p = p;
    if (!first) {
      this.update();
      return;
    }
    this.playBtn.addEventListener('click', () => this.toggle());
    this.timeline.addEventListener('input', () => {
      this.scrubbing = true;
      this.showTime(Number(this.timeline.value));
    });
    this.timeline.addEventListener('change', () => {
      this.scrubbing = false;
      void this.p?.seek(Number(this.timeline.value));
    });
    this.speed.addEventListener('change', () => this.p?.setSpeed(Number(this.speed.value)));
    this.playBtn.disabled = this.timeline.disabled = this.speed.disabled = false;
    this.update();
  }

  // update shows the playback's state; players call it on every change.
  update(): void {
    const p = this.p;
    if (!p) return;
    const words = p.playing ? 'Pause' : 'Play';
    if (this.playBtn.textContent !== words) this.playBtn.textContent = words;
    this.timeline.max = String(Math.round(p.duration));
    if (!this.scrubbing) this.timeline.value = String(Math.round(p.shownTime));
    this.showTime(this.scrubbing ? Number(this.timeline.value) : p.shownTime);
  }

  status(text: string): void {
    if (this.statusEl.textContent !== text) this.statusEl.textContent = text;
  }

  private showTime(ms: number): void {
    const d = this.p?.duration ?? 0;
    this.timeEl.textContent = `${clock(ms)} / ${clock(d)}`;
    this.timeline.setAttribute('aria-valuetext', `${clock(ms)} of ${clock(d)}`);
  }

  private toggle(): void {
    const p = this.p;
    if (!p) return;
    if (p.playing) p.pause();
    else p.play();
  }

  private toggleFullscreen(): void {
    if (document.fullscreenElement) {
      void document.exitFullscreen();
      return;
    }
    this.root.requestFullscreen().catch((e: Error) => this.status(`The browser refused full screen: ${e.message}`));
  }

  private key(e: KeyboardEvent): void {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const t = e.target instanceof HTMLElement ? e.target : null;
    // Fields keep their keys; the timeline's arrows are ours.
    if (t?.closest('textarea, select, [contenteditable], input:not([type=range])')) return;
    const p = this.p;
    switch (e.key) {
      case ' ':
        // A focused button or link activates itself.
        if (t?.closest('button, a, summary')) return;
        this.toggle();
        break;
      case 'ArrowLeft':
      case 'ArrowRight':
        if (!p) return;
        void p.seek(p.shownTime + (e.key === 'ArrowLeft' ? -seekStep : seekStep));
        break;
      case 'f':
      case 'F':
        this.toggleFullscreen();
        break;
      default:
        return;
    }
    e.preventDefault();
    e.stopPropagation();
  }
}
