// The terminal page: xterm.js over one WebSocket to the portal. Binary
// frames carry terminal bytes both ways; small JSON text frames carry
// control (resize from here; connected, exit and error from the portal).
import '@xterm/xterm/css/xterm.css';
import './terminal.css';
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';

interface Control {
  type: 'connected' | 'exit' | 'error' | 'warning';
  message?: string;
  code?: string;
  status?: number;
}

declare global {
  interface Window {
    keywayTerminal?: Terminal;
  }
}

const container = document.getElementById('terminal') as HTMLDivElement;
const statusEl = document.getElementById('term-status') as HTMLElement;
const reconnectBtn = document.getElementById('term-reconnect') as HTMLButtonElement;

// A watched session is read-only: nothing typed or resized here is sent.
const watching = container.dataset.watch === '1';

const term = new Terminal({
  cursorBlink: !watching,
  disableStdin: watching,
  fontFamily: '"DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace',
  fontSize: 14,
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

const encoder = new TextEncoder();
let socket: WebSocket | null = null;
// ended is set once the portal said why the session ended, so a following
// close is not reported as a lost connection.
let ended = false;

function setStatus(text: string, kind: 'ok' | 'bad' | 'info'): void {
  statusEl.textContent = text;
  statusEl.dataset.kind = kind;
}

function notice(text: string, color: 'dim' | 'red' | 'green'): void {
  const code = { dim: '2', red: '31', green: '32' }[color];
  term.write(`\r\n\x1b[${code}m${text}\x1b[0m\r\n`);
}

function send(data: string | Uint8Array): void {
  if (watching) return;
  if (socket?.readyState === WebSocket.OPEN) socket.send(data);
}

function connect(): void {
  ended = false;
  reconnectBtn.hidden = true;
  setStatus('Connecting…', 'info');
  const url = new URL(container.dataset.ws ?? '', window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('cols', String(term.cols));
  url.searchParams.set('rows', String(term.rows));
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  socket = ws;

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
        term.focus();
        break;
      case 'exit':
        ended = true;
        setStatus(c.message ?? 'Session ended', 'info');
        notice(c.message ?? 'Session ended', 'dim');
        reconnectBtn.hidden = false;
        break;
      case 'warning':
        // The session ends soon (idle, or its maximum length): said in the
        // status line, which screen readers announce, not in the terminal.
        setStatus(c.message ?? 'This session will close soon', 'bad');
        break;
      case 'error':
        ended = true;
        setStatus(c.message ?? 'The connection failed', 'bad');
        notice(c.message ?? 'The connection failed', 'red');
        reconnectBtn.hidden = false;
        break;
    }
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    if (!ended) {
      setStatus('Connection lost', 'bad');
      notice('Connection lost. Press Reconnect to open a new session.', 'red');
    }
    reconnectBtn.hidden = false;
  };
}

term.onData((data) => send(encoder.encode(data)));
term.onBinary((data) => {
  const bytes = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
  send(bytes);
});
term.onResize(({ cols, rows }) => send(JSON.stringify({ type: 'resize', cols, rows })));

// Refit when the window or container changes size; the resize event above
// tells the remote pty.
let fitTimer: number | undefined;
new ResizeObserver(() => {
  window.clearTimeout(fitTimer);
  fitTimer = window.setTimeout(() => fit.fit(), 80);
}).observe(container);

reconnectBtn.addEventListener('click', () => {
  term.reset();
  connect();
});

connect();
