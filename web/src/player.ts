// The recording player page: asciinema-player replays the terminal
// recording the page names in data-src, with its own controls (play and
// pause, speed, seek on the progress bar, full screen). Fetching the file
// is what the portal audits as viewing the recording.
import * as AsciinemaPlayer from 'asciinema-player';
import type { Player } from 'asciinema-player';
import 'asciinema-player/dist/bundle/asciinema-player.css';
import './player.css';

declare global {
  interface Window {
    // For the end-to-end tests.
    keywayPlayer?: Player;
  }
}

function start(): void {
  const el = document.getElementById('player');
  const src = el?.dataset.src;
  if (!el || !src) return;
  const player = AsciinemaPlayer.create(
    { url: src, fetchOpts: { credentials: 'same-origin', cache: 'no-store' } },
    el,
    { preload: true, fit: 'both', controls: true, terminalFontFamily: 'DejaVu Sans Mono, monospace' },
  );
  window.keywayPlayer = player;
}

document.addEventListener('DOMContentLoaded', start);
