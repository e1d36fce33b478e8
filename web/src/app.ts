// Loaded on every page: local times, confirmations and copy buttons. Pages
// work without it; it only makes them friendlier.
import '@picocss/pico/css/pico.classless.min.css';
import './site.css';

const dateFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZoneName: 'short',
});

// localizeTimes shows every <time datetime> in the browser's time zone.
function localizeTimes(root: ParentNode): void {
  root.querySelectorAll<HTMLTimeElement>('time[datetime]').forEach((el) => {
    const d = new Date(el.dateTime);
    if (Number.isNaN(d.getTime())) return;
    el.title = d.toISOString();
    el.textContent = dateFormat.format(d);
  });
}

// Forms with data-confirm ask before submitting (delete, revoke…).
function confirmForms(): void {
  document.addEventListener('submit', (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement)) return;
    const msg = form.dataset.confirm;
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
}

// Buttons with data-copy="#selector" copy that element's text.
function copyButtons(): void {
  document.querySelectorAll<HTMLButtonElement>('button[data-copy]').forEach((btn) => {
    btn.addEventListener('click', async () => {
      const src = document.querySelector(btn.dataset.copy ?? '');
      if (!src?.textContent) return;
      try {
        await navigator.clipboard.writeText(src.textContent.trim());
        btn.textContent = 'Copied';
      } catch {
        const range = document.createRange();
        range.selectNodeContents(src);
        window.getSelection()?.removeAllRanges();
        window.getSelection()?.addRange(range);
        btn.textContent = 'Press Ctrl+C';
      }
    });
  });
}

// Filter forms send the browser's time zone so typed times mean local time.
function timeZoneFields(): void {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  document.querySelectorAll<HTMLInputElement>('input[data-timezone]').forEach((el) => {
    if (!el.value) el.value = tz;
  });
}

// The resource form's port follows the protocol while it still holds the
// other protocol's default port.
const defaultPorts: Record<string, string> = { ssh: '22', vnc: '5900' };
function protocolPorts(): void {
  const protocol = document.querySelector<HTMLSelectElement>('select#protocol');
  const port = document.querySelector<HTMLInputElement>('input#port');
  if (!protocol || !port) return;
  protocol.addEventListener('change', () => {
    if (Object.values(defaultPorts).includes(port.value) || port.value === '') {
      port.value = defaultPorts[protocol.value] ?? port.value;
    }
  });
}

document.addEventListener('DOMContentLoaded', () => {
  localizeTimes(document);
  protocolPorts();
  confirmForms();
  copyButtons();
  timeZoneFields();
});
