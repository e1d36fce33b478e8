// The terminal page: xterm.js over one WebSocket to the portal. Binary
// frames carry terminal bytes both ways; small JSON text frames carry
// control (resize from here; connected, exit, error, warning and refused
// from the portal).
import '@xterm/xterm/css/xterm.css';
import './terminal.css';
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { InputQueue } from './inputqueue';
import { parseSeconds, restartStatus, showDrainBanner, stopDrainBanner } from './drainbanner';

interface Control {
  type: 'connected' | 'exit' | 'error' | 'warning' | 'refused';
  message?: string;
  code?: string;
  status?: number;
  // A warning that the session will be closed (the portal restarts):
  // the words without the time, and the seconds left.
  notice?: string;
  seconds?: number;
}

declare global {
  interface Window {
    keywayTerminal?: Terminal;
  }
}

const container = document.getElementById('terminal') as HTMLDivElement;
const statusEl = document.getElementById('term-status') as HTMLElement;
const toolbar = document.getElementById('term-tools') as HTMLElement;
const reconnectBtn = document.getElementById('term-reconnect') as HTMLButtonElement;
const disconnectBtn = document.getElementById('term-disconnect') as HTMLButtonElement;
const fullscreenBtn = document.getElementById('term-fullscreen') as HTMLButtonElement;
const fontSelect = document.getElementById('term-font') as HTMLSelectElement;
const pasteEl = document.getElementById('term-paste') as HTMLElement;
const stopPasteBtn = document.getElementById('term-stop-paste') as HTMLButtonElement;

// A watched session is read-only: nothing typed or resized here is sent.
const watching = container.dataset.watch === '1';

// The font size is remembered per browser.
const FONT_KEY = 'keyway.terminal.fontSize';
const MIN_FONT = 6;
const MAX_FONT = 48;
function savedFontSize(): number {
  const n = Number(localStorage.getItem(FONT_KEY) ?? fontSelect.value);
  return Number.isInteger(n) && n >= MIN_FONT && n <= MAX_FONT ? n : Number(fontSelect.value);
}
const fontSize = savedFontSize();
if (![...fontSelect.options].some((o) => Number(o.value) === fontSize)) {
  fontSelect.add(new Option(String(fontSize), String(fontSize)));
}
fontSelect.value = String(fontSize);

const term = new Terminal({
  cursorBlink: !watching,
  disableStdin: watching,
  fontFamily: '"DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace',
  fontSize,
  scrollback: 5000,
  allowProposedApi: false,
  theme: { background: '#11151c', foreground: '#e6e6e6' },
});
const fit = new FitAddon();
term.loadAddon(fit);
term.open(container);
fit.fit();
term.focus();
window.keywayTerminal = term;
// Screen readers announce how to leave the terminal.
term.textarea?.setAttribute('aria-describedby', 'term-keyhint');
term.textarea?.setAttribute('aria-keyshortcuts', 'Control+Shift+F10');

const encoder = new TextEncoder();
let socket: WebSocket | null = null;
// ended is set once the portal (or the user) said why the session ended,
// so a following close is not reported as a lost connection.
let ended = false;

function setStatus(text: string, kind: 'ok' | 'bad' | 'info'): void {
  statusEl.textContent = text;
  statusEl.dataset.kind = kind;
}

function notice(text: string, color: 'dim' | 'red' | 'green'): void {
  const code = { dim: '2', red: '31', green: '32' }[color];
  term.write(`\r\n\x1b[${code}m${text}\x1b[0m\r\n`);
}

function showEnded(): void {
  disconnectBtn.hidden = true;
  reconnectBtn.hidden = false;
}

// Input (keys and pastes) goes out in pieces with flow control (see
// inputqueue.ts); a paste this large shows its progress and a Stop button.
const SHOW_PROGRESS = 256 << 10;
const input = new InputQueue({ chunk: 16 << 10, highWater: 256 << 10, retryMs: 10, onProgress: showProgress });

function showProgress(): void {
  const large = input.total >= SHOW_PROGRESS && input.pending > 0;
  pasteEl.hidden = !large;
  stopPasteBtn.hidden = !large;
  if (large) {
    const pct = Math.floor((100 * (input.total - input.pending)) / input.total);
    pasteEl.textContent = `Sending paste: ${pct} % of ${formatBytes(input.total)}`;
  }
}

function formatBytes(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  return `${Math.ceil(n / 1024)} KB`;
}

function sendInput(bytes: Uint8Array): void {
  if (watching || socket?.readyState !== WebSocket.OPEN) return;
  // What is typed after a resize runs at the new size.
  if (resizeTimer !== undefined) sendResize();
  input.push(bytes);
}

// Resizes are coalesced: a window dragged or a font changed sends the
// size it ends at, once; input typed meanwhile sends it first, so that
// what runs on the remote side sees the size the user sees.
const RESIZE_DELAY_MS = 100;
const MAX_TERM_SIZE = 1000; // the portal's bound
let sentSize = '';
let resizeTimer: number | undefined;
function scheduleResize(): void {
  if (watching) return;
  window.clearTimeout(resizeTimer);
  resizeTimer = window.setTimeout(sendResize, RESIZE_DELAY_MS);
}
function sendResize(): void {
  window.clearTimeout(resizeTimer);
  resizeTimer = undefined;
  const cols = Math.min(Math.max(term.cols, 1), MAX_TERM_SIZE);
  const rows = Math.min(Math.max(term.rows, 1), MAX_TERM_SIZE);
  const size = `${cols}x${rows}`;
  if (size === sentSize || socket?.readyState !== WebSocket.OPEN) return;
  sentSize = size;
  socket.send(JSON.stringify({ type: 'resize', cols, rows }));
}

function connect(): void {
  ended = false;
  input.attach(null);
  reconnectBtn.hidden = true;
  disconnectBtn.hidden = false;
  setStatus('Connecting…', 'info');
  const url = new URL(container.dataset.ws ?? '', window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('cols', String(term.cols));
  url.searchParams.set('rows', String(term.rows));
  sentSize = `${term.cols}x${term.rows}`;
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  socket = ws;
  ws.onopen = () => input.attach(ws);

  ws.onmessage = (ev: MessageEvent) => {
    if (ev.data instanceof ArrayBuffer) {
      term.write(new Uint8Array(ev.data));
      return;
    }
    let c: Control;
    try {
      c = JSON.parse(ev.data as string) as Control;
    } catch {
      return;
    }
    switch (c.type) {
      case 'connected':
        setStatus(c.message ?? 'Connected', 'ok');
        // The window may have changed while the session started.
        scheduleResize();
        term.focus();
        break;
      case 'exit':
        ended = true;
        stopDrainBanner();
        setStatus(c.message ?? 'Session ended', 'info');
        notice(c.message ?? 'Session ended', 'dim');
        showEnded();
        break;
      case 'warning': {
        // The session ends soon (idle, or its maximum length): said in the
        // status line, which screen readers announce, not in the terminal.
        // A restart of the portal or gateway also gets a banner counting
        // down to the close.
        const secs = parseSeconds(c.seconds);
        if (secs !== null && c.notice) {
          showDrainBanner(container, { notice: c.notice, seconds: secs, code: c.code });
          setStatus(restartStatus(c.code), 'bad');
        } else {
          setStatus(c.message ?? 'This session will close soon', 'bad');
        }
        break;
      }
      case 'error':
        ended = true;
        stopDrainBanner();
        setStatus(c.message ?? 'The connection failed', 'bad');
        notice(c.message ?? 'The connection failed', 'red');
        showEnded();
        break;
      case 'refused':
        // The portal ignored one message; the session goes on.
        setStatus(c.message ?? 'The portal refused a message from this page.', 'bad');
        break;
    }
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    input.attach(null);
    stopDrainBanner();
    if (!ended) {
      setStatus('Connection lost', 'bad');
      notice('Connection lost. Press Reconnect to open a new session.', 'red');
    }
    showEnded();
  };
}

// disconnect ends the session from this side.
function disconnect(): void {
  const ws = socket;
  if (!ws) return;
  ended = true;
  socket = null;
  input.attach(null);
  ws.close(1000, 'closed by the user');
  const msg = watching ? 'You stopped watching.' : 'Disconnected: you closed the session.';
  setStatus(msg, 'info');
  notice(`${msg} Press Reconnect to open a new one.`, 'dim');
  showEnded();
  reconnectBtn.focus();
}

term.onData((data) => sendInput(encoder.encode(data)));
term.onBinary((data) => {
  const bytes = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
  sendInput(bytes);
});
term.onResize(() => scheduleResize());

// Keys the page takes before the terminal: Ctrl+Shift+F10 leaves the
// terminal for the toolbar (Tab stays the shell's), Ctrl+Shift+C copies
// the selection, and Ctrl+Shift+V is left to the browser, whose paste
// event xterm.js takes.
term.attachCustomKeyEventHandler((ev: KeyboardEvent) => {
  if (!ev.ctrlKey || !ev.shiftKey || ev.altKey || ev.metaKey) return true;
  if (ev.key === 'F10') {
    if (ev.type === 'keydown') {
      ev.preventDefault();
      toolbar.querySelector<HTMLElement>('button:not([hidden]), select, a[href], summary')?.focus();
    }
    return false;
  }
  if (ev.code === 'KeyC') {
    if (ev.type === 'keydown' && term.hasSelection()) {
      ev.preventDefault();
      navigator.clipboard?.writeText(term.getSelection()).catch(() => {
        setStatus('The browser did not allow copying: use right-click and Copy.', 'bad');
      });
    }
    return false;
  }
  if (ev.code === 'KeyV') return false;
  return true;
});

// Refit when the window or container changes size; the resize event above
// tells the remote pty.
let fitTimer: number | undefined;
new ResizeObserver(() => {
  window.clearTimeout(fitTimer);
  fitTimer = window.setTimeout(() => fit.fit(), 80);
}).observe(container);

fontSelect.addEventListener('change', () => {
  const n = Number(fontSelect.value);
  if (!Number.isInteger(n) || n < MIN_FONT || n > MAX_FONT) return;
  localStorage.setItem(FONT_KEY, String(n));
  term.options.fontSize = n;
  fit.fit();
});

if (!document.fullscreenEnabled) fullscreenBtn.hidden = true;
fullscreenBtn.addEventListener('click', () => {
  const done = document.fullscreenElement ? document.exitFullscreen() : document.documentElement.requestFullscreen();
  done.catch(() => setStatus('The browser did not allow full screen.', 'bad')).finally(() => term.focus());
});
document.addEventListener('fullscreenchange', () => {
  const on = document.fullscreenElement !== null;
  fullscreenBtn.textContent = on ? 'Exit full screen' : 'Full screen';
  fullscreenBtn.setAttribute('aria-pressed', String(on));
});

stopPasteBtn.addEventListener('click', () => {
  const left = input.pending;
  input.clear();
  setStatus(`Paste stopped: ${formatBytes(left)} were not sent.`, 'info');
  term.focus();
});
disconnectBtn.addEventListener('click', () => disconnect());
reconnectBtn.addEventListener('click', () => {
  term.reset();
  connect();
  term.focus();
});

connect();
