// The banner a terminal or desktop page shows when the portal (or the
// session's gateway) restarts: the portal's words, and a countdown to
// when the session is closed, in the user's language and time zone.
import './drainbanner.css';

// DrainNotice is what the portal sends: its words without the time left,
// the seconds left when it was sent, and a code ("draining",
// "gateway_draining").
export interface DrainNotice {
  notice: string;
  seconds: number;
  code?: string;
}

// maxSeconds bounds what the page believes: a day (the most the portal's
// --drain-timeout takes).
const maxSeconds = 24 * 60 * 60;

let timer = 0;

// parseSeconds reads the seconds of a notice, or null when they are not a
// sane number.
export function parseSeconds(v: unknown): number | null {
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) return null;
  return Math.min(Math.floor(n), maxSeconds);
}

// countdown words the time left: "29:41" or "1:02:03", digits in the
// user's locale.
function countdown(secs: number): string {
  const two = new Intl.NumberFormat(undefined, { minimumIntegerDigits: 2 });
  const one = new Intl.NumberFormat(undefined);
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  return h > 0 ? `${one.format(h)}:${two.format(m)}:${two.format(s)}` : `${one.format(m)}:${two.format(s)}`;
}

// showDrainBanner shows (or updates) the banner above the session's
// screen, before.
export function showDrainBanner(before: HTMLElement, n: DrainNotice): void {
  let banner = document.getElementById('drain-banner');
  if (!banner) {
    banner = document.createElement('div');
    banner.id = 'drain-banner';
    banner.className = 'drain-banner';
    // Said once by screen readers; the ticking clock is not.
    const text = document.createElement('span');
    text.id = 'drain-text';
    text.setAttribute('role', 'alert');
    const clock = document.createElement('strong');
    clock.id = 'drain-countdown';
    clock.setAttribute('aria-hidden', 'true');
    banner.append(text, ' ', clock);
    before.parentElement?.insertBefore(banner, before);
  }
  const deadline = Date.now() + n.seconds * 1000;
  const at = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit', second: '2-digit' }).format(deadline);
  (document.getElementById('drain-text') as HTMLElement).textContent = `${n.notice} Closes at ${at}, in`;
  const clock = document.getElementById('drain-countdown') as HTMLElement;
  banner.dataset.code = n.code ?? '';
  const tick = (): void => {
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    clock.textContent = countdown(left);
    if (left === 0) window.clearInterval(timer);
  };
  window.clearInterval(timer);
  tick();
  timer = window.setInterval(tick, 1000);
}

// stopDrainBanner stops the countdown once the session has ended; the
// banner stays, saying what happened.
export function stopDrainBanner(): void {
  window.clearInterval(timer);
  document.getElementById('drain-banner')?.classList.add('ended');
}

// restartStatus is the status line beside the banner, which says the rest.
export function restartStatus(code?: string): string {
  return code === 'gateway_draining' ? 'Gateway restarting: see the banner' : 'Portal restarting: see the banner';
}
