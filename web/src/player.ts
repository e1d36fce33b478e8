// The terminal recording player: asciinema-player replays the recording
// the page names in data-src, without controls of its own: the shared
// control bar (playerbar.ts) drives it through its API, as it drives the
// desktop player. Fetching the file is what the portal audits as viewing
// the recording.
import * as AsciinemaPlayer from 'asciinema-player';
import type { Player } from 'asciinema-player';
import 'asciinema-player/dist/bundle/asciinema-player.css';
import { PlayerBar, clock, type Playback } from './playerbar';
import './player.css';

// CoreEvent names the player's events beyond those its types declare
// (index.js passes every name to its core).
type CoreEvent = 'ready' | 'metadata' | 'play' | 'playing' | 'pause' | 'ended' | 'seeked' | 'error' | 'loading';

class TerminalReplay implements Playback {
  private player: Player;
  // generation counts players made: a replaced player's late events are
  // ignored.
  private generation = 0;
  private running = false;
  private speed = 1;
  private durationMs = 0;
  // switching is a speed change under way (a new player being made);
  // commands wait for it.
  private switching: Promise<void> = Promise.resolve();
  private frame = 0;

  constructor(
    private readonly src: string,
    private readonly screen: HTMLElement,
    private readonly bar: PlayerBar,
  ) {
    this.player = this.create(0);
  }

  get duration(): number { return this.durationMs; }
  get playing(): boolean { return this.running; }
  get shownTime(): number { return Math.min(this.durationMs, (this.player.getCurrentTime() ?? 0) * 1000); }

  // For the end-to-end tests, in seconds as asciinema-player counts.
  getCurrentTime(): number { return this.player.getCurrentTime() ?? 0; }
  getDuration(): number | undefined { return this.player.getDuration(); }

  // create makes a player at speed from startAt (s); asciinema-player
  // takes its speed only when made.
  private create(startAt: number): Player {
    const gen = ++this.generation;
    const player = AsciinemaPlayer.create(
      { url: this.src, fetchOpts: { credentials: 'same-origin', cache: 'no-store' } },
      this.screen,
      {
        preload: true, fit: 'both', controls: false, speed: this.speed, startAt,
        terminalFontFamily: 'DejaVu Sans Mono, monospace',
      },
    );
    const on = (name: CoreEvent, f: (e: unknown) => void): void => {
      (player.addEventListener as (n: string, h: (e: unknown) => void) => void)(name, (e) => {
        if (gen === this.generation) f(e);
      });
    };
    on('metadata', (e) => {
      this.durationMs = ((e as { duration?: number }).duration ?? 0) * 1000;
      this.bar.attach(this);
      this.report();
    });
    on('play', () => { this.running = true; this.report(); this.follow(); });
    on('playing', () => this.report());
    on('pause', () => { this.running = false; this.report(); });
    on('ended', () => { this.running = false; this.report(); });
    on('seeked', () => this.report());
    on('loading', () => this.bar.status('Loading the recording…'));
    on('error', (e) => {
      this.running = false;
      const msg = (e as { message?: string }).message ?? 'unknown error';
      this.bar.status(`The recording could not be played: ${msg}. Reload the page to try again.`);
    });
    return player;
  }

  // follow moves the bar with the clock while playing.
  private follow(): void {
    cancelAnimationFrame(this.frame);
    const tick = (): void => {
      this.bar.update();
      if (this.running) this.frame = requestAnimationFrame(tick);
    };
    this.frame = requestAnimationFrame(tick);
  }

  private report(): void {
    this.bar.update();
    if (this.running) this.bar.status(`Playing at ${this.speed}× speed.`);
    else this.bar.status(`Paused at ${clock(this.shownTime)}.`);
  }

  play(): void {
    void this.switching.then(() => this.player.play());
  }

  pause(): void {
    void this.switching.then(() => this.player.pause());
  }

  // seek shows the screen at ms, playing or not; the promise resolves
  // once it is on screen.
  seek(ms: number): Promise<unknown> {
    const s = Math.max(0, Math.min(ms, this.durationMs)) / 1000;
    return this.switching.then(async () => {
      await this.player.seek(s);
      this.report();
    });
  }

  // setSpeed makes a new player at speed x where this one is, playing if
  // it was.
  setSpeed(x: number): void {
    this.switching = this.switching.then(async () => {
      if (x === this.speed) return;
      const old = this.player;
      const wasPlaying = this.running;
      const at = old.getCurrentTime() ?? 0;
      await old.pause();
      this.speed = x;
      old.dispose();
      this.screen.replaceChildren();
      this.running = false;
      this.player = this.create(at);
      // The new player starts at startAt only once played; a seek draws
      // the screen there now.
      await this.player.seek(at);
      if (wasPlaying) await this.player.play();
      this.report();
    }).catch((e: Error) => this.bar.status(`The speed could not be changed: ${e.message}`));
  }
}

declare global {
  interface Window {
    // For the end-to-end tests.
    keywayPlayer?: TerminalReplay;
  }
}

function start(): void {
  const root = document.getElementById('terminal-player');
  const screen = document.getElementById('player');
  const src = root?.dataset.src;
  if (!root || !screen || !src) return;
  window.keywayPlayer = new TerminalReplay(src, screen, new PlayerBar(root));
}

document.addEventListener('DOMContentLoaded', start);
