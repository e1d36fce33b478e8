// The desktop page: guacamole-common-js over one WebSocket to the portal,
// which relays the gateway's Guacamole instructions. The screen scales to
// fit the window (or shows at 1:1 with scrolling, remembered per browser).
import Guacamole from 'guacamole-common-js';
import './desktop.css';
import { installIndexed } from './indexed';
import { parseSeconds, restartStatus, showDrainBanner, stopDrainBanner } from './drainbanner';

declare global {
  interface Window {
    keywayDesktop?: Guacamole.Client;
  }
}

const container = document.getElementById('desktop') as HTMLDivElement;
const statusEl = document.getElementById('desk-status') as HTMLElement;
const reconnectBtn = document.getElementById('desk-reconnect') as HTMLButtonElement;
const cadBtn = document.getElementById('desk-cad') as HTMLButtonElement;
const fitBox = document.getElementById('desk-fit') as HTMLInputElement;
const clipText = document.getElementById('desk-clipboard') as HTMLTextAreaElement;
const clipSend = document.getElementById('desk-clip-send') as HTMLButtonElement;
const clipNote = document.getElementById('desk-clip-note') as HTMLParagraphElement;
// The most clipboard text the gateway takes, in bytes of UTF-8.
const clipMax = Number(container.dataset.clipboardMax) || 1 << 20;
let clipSentTimer: number | undefined;

// showClipNote says in the clipboard panel why sent text did not reach the
// remote clipboard (empty hides it), opening the panel so it is seen.
function showClipNote(text: string): void {
  clipNote.textContent = text;
  clipNote.hidden = text === '';
  if (text) {
    (clipNote.closest('details') as HTMLDetailsElement | null)?.setAttribute('open', '');
    window.clearTimeout(clipSentTimer);
    clipSend.textContent = 'Send to remote desktop';
  }
}

const FIT_KEY = 'keyway.desktop.fit';
fitBox.checked = localStorage.getItem(FIT_KEY) !== '0';

// portalWarning is the msg code of the portal's warnings (guacMsgWarning
// in portal/httpui).
const portalWarning = 0x4b57;

function setStatus(text: string, kind: 'ok' | 'bad' | 'info'): void {
  statusEl.textContent = text;
  statusEl.dataset.kind = kind;
}

let client: Guacamole.Client | null = null;
let keyboard: Guacamole.Keyboard | null = null;
// failed is set once an error was shown, so the disconnect that follows
// does not replace it.
let failed = false;

function rescale(): void {
  if (!client) return;
  const display = client.getDisplay();
  const w = display.getWidth();
  const h = display.getHeight();
  if (!w || !h) return;
  container.classList.toggle('fit', fitBox.checked);
  display.scale(fitBox.checked ? Math.min(container.clientWidth / w, container.clientHeight / h) : 1);
}

// requestSize asks the remote desktop to take the window's size; servers
// that cannot resize ignore it and the view scales instead.
let sizeTimer: number | undefined;
function requestSize(): void {
  window.clearTimeout(sizeTimer);
  sizeTimer = window.setTimeout(() => {
    client?.sendSize(container.clientWidth, container.clientHeight);
  }, 250);
}

function connect(): void {
  reconnectBtn.hidden = true;
  failed = false;
  setStatus('Connecting…', 'info');
  container.replaceChildren();
  const url = new URL(container.dataset.ws ?? '', window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const c = new Guacamole.Client(new Guacamole.WebSocketTunnel(url.toString()));
  client = c;
  window.keywayDesktop = c;
  const display = c.getDisplay();
  installIndexed(display);
  const el = display.getElement();
  container.appendChild(el);

  c.onstatechange = (state: number) => {
    // Guacamole.Client.State: 3 connected, 5 disconnected.
    if (state === 3) {
      setStatus(`Connected to ${container.dataset.resource}`, 'ok');
      requestSize();
    }
    if (state === 5) {
      stopDrainBanner();
      if (!failed) setStatus('Disconnected', 'info');
      reconnectBtn.hidden = false;
    }
  };
  c.onerror = (status: Guacamole.Status) => {
    failed = true;
    setStatus(status.message || 'The connection failed', 'bad');
    reconnectBtn.hidden = false;
  };
  display.onresize = () => rescale();
  // The portal warns with a msg instruction of its own code that the
  // session ends soon (idle, or its maximum length). guacamole-common-js
  // 1.5 has onmsg; its type definitions lack it.
  (c as unknown as { onmsg: (code: number, args: string[]) => boolean }).onmsg = (code, args) => {
    if (code !== portalWarning) return true;
    // A restart of the portal or gateway: [words with the time fixed,
    // words without it, seconds left, code]; pages from before restarts
    // were announced show only the first.
    const secs = parseSeconds(args[2]);
    if (args.length >= 3 && secs !== null && args[1]) {
      showDrainBanner(container, { notice: args[1], seconds: secs, code: args[3] });
      setStatus(restartStatus(args[3]), 'bad');
      return false;
    }
    setStatus(args[0] ?? 'This session will close soon', 'bad');
    return false;
  };

  // The remote clipboard: shown in the panel, and copied to the local
  // clipboard where the browser allows it.
  c.onclipboard = (stream: Guacamole.InputStream, mimetype: string) => {
    if (!/^text\//.test(mimetype)) return;
    const reader = new Guacamole.StringReader(stream);
    let text = '';
    reader.ontext = (t: string) => { text += t; };
    reader.onend = () => {
      clipText.value = text;
      navigator.clipboard?.writeText(text).catch(() => {});
    };
  };

  // The gateway's word on text that did not reach the remote clipboard
  // (gateway/display.ClipboardNoticePipe).
  c.onpipe = (stream: Guacamole.InputStream, mimetype: string, name: string) => {
    if (name !== 'keyway-clipboard-notice' || !/^text\//.test(mimetype)) return;
    const reader = new Guacamole.StringReader(stream);
    let text = '';
    reader.ontext = (t: string) => { text += t; };
    reader.onend = () => showClipNote(text);
  };

  const mouse = new Guacamole.Mouse(el);
  // The remote pointer's shape becomes the local CSS cursor: movement
  // then shows at once, without a round trip to the desktop.
  display.oncursor = (canvas: HTMLCanvasElement, x: number, y: number) => {
    mouse.setCursor(canvas, x, y);
  };
  const send = (e: Guacamole.Mouse.Event) => c.sendMouseState(e.state, true);
  mouse.onEach(['mousedown', 'mouseup', 'mousemove'], send as (e: Guacamole.Event) => void);

  keyboard?.reset();
  keyboard = new Guacamole.Keyboard(document);
  // Keys typed into the page's own fields (the clipboard panel) stay there.
  const typingInPage = () => document.activeElement instanceof HTMLTextAreaElement || document.activeElement instanceof HTMLInputElement;
  keyboard.onkeydown = (keysym: number) => {
    if (typingInPage()) return true;
    c.sendKeyEvent(1, keysym);
    return false; // the remote desktop gets the key, not the page
  };
  keyboard.onkeyup = (keysym: number) => {
    if (!typingInPage()) c.sendKeyEvent(0, keysym);
  };

  // The window's size: an RDP desktop that fits the browser starts at it;
  // and the image formats this page decodes beyond PNG and JPEG.
  c.connect(new URLSearchParams({
    width: String(container.clientWidth), height: String(container.clientHeight), indexed: '1',
  }).toString());
}

function megabytes(n: number): string {
  return `${(n / (1 << 20)).toFixed(n < 1 << 20 ? 2 : 1)} MB`;
}

// The clipboard goes as a Guacamole clipboard stream: StringWriter cuts it
// into blobs of 6048 bytes, each its own WebSocket message, so its size
// meets no message limit; the gateway's own limit is checked here.
clipSend.addEventListener('click', () => {
  if (!client) return;
  const size = new TextEncoder().encode(clipText.value).length;
  if (size > clipMax) {
    showClipNote(`This text is ${megabytes(size)}; at most ${megabytes(clipMax)} can go to the remote clipboard. Nothing was sent.`);
    return;
  }
  const writer = new Guacamole.StringWriter(client.createClipboardStream('text/plain'));
  writer.sendText(clipText.value);
  writer.sendEnd();
  showClipNote('');
  clipSend.textContent = 'Sent';
  window.clearTimeout(clipSentTimer);
  clipSentTimer = window.setTimeout(() => { clipSend.textContent = 'Send to remote desktop'; }, 1500);
});

// pressKeys presses keysyms in order and releases them in reverse: a
// combination the browser or the local system would otherwise take.
function pressKeys(keys: number[]): void {
  if (!client) return;
  keys.forEach((k) => client?.sendKeyEvent(1, k));
  [...keys].reverse().forEach((k) => client?.sendKeyEvent(0, k));
}
cadBtn.addEventListener('click', () => pressKeys([0xffe3, 0xffe9, 0xffff])); // Control_L, Alt_L, Delete
document.querySelectorAll<HTMLButtonElement>('button[data-keys]').forEach((btn) => {
  btn.addEventListener('click', () => {
    pressKeys((btn.dataset.keys ?? '').split(',').map((k) => Number(k)).filter((k) => k > 0));
    btn.closest('details')?.removeAttribute('open');
    container.focus();
  });
});
fitBox.addEventListener('change', () => {
  localStorage.setItem(FIT_KEY, fitBox.checked ? '1' : '0');
  rescale();
});
reconnectBtn.addEventListener('click', () => connect());
new ResizeObserver(() => {
  rescale();
  requestSize();
}).observe(container);
window.addEventListener('beforeunload', () => client?.disconnect());

connect();
