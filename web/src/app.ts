// Loaded on every page: local times, confirmations and copy buttons. Pages
// work without it; it only makes them friendlier.
import '@picocss/pico/css/pico.classless.min.css';
import './site.css';

import { localizeTimes } from './times';

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

// The resource form follows its protocol: the port while it still holds
// another protocol's default, and only the options that apply are shown
// (elements with data-protocols="rdp vnc"). Without script every option
// shows and the server ignores those of other protocols.
const defaultPorts: Record<string, string> = { ssh: '22', vnc: '5900', rdp: '3389' };
function protocolForm(): void {
  const protocol = document.querySelector<HTMLSelectElement>('select#protocol');
  const port = document.querySelector<HTMLInputElement>('input#port');
  if (!protocol || !port) return;
  const apply = () => {
    document.querySelectorAll<HTMLElement>('[data-protocols]').forEach((el) => {
      const on = (el.dataset.protocols ?? '').split(' ').includes(protocol.value);
      el.hidden = !on;
      if (el instanceof HTMLOptionElement) el.disabled = !on;
      if (el instanceof HTMLFieldSetElement) el.disabled = !on;
    });
    // A colour depth the protocol lacks falls back to its default.
    const depth = document.querySelector<HTMLSelectElement>('select#color_depth');
    if (depth && depth.selectedOptions[0]?.disabled) depth.value = protocol.value === 'rdp' ? '32' : '24';
  };
  protocol.addEventListener('change', () => {
    if (Object.values(defaultPorts).includes(port.value) || port.value === '') {
      port.value = defaultPorts[protocol.value] ?? port.value;
    }
    apply();
  });
  apply();
}

// Regions with data-refresh="URL" are fetched again every few seconds while
// the page is visible (the live sessions list). Without script the page
// shows what it had when loaded.
const refreshEvery = 5000;
function refreshRegions(): void {
  document.querySelectorAll<HTMLElement>('[data-refresh]').forEach((el) => {
    const url = el.dataset.refresh ?? '';
    const tick = async () => {
      if (document.hidden) return;
      try {
        const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'text/html' } });
        // Signed out meanwhile: the next page load shows the sign-in page.
        if (!res.ok || res.redirected) return;
        el.innerHTML = await res.text();
        localizeTimes(el);
      } catch {
        // The portal is unreachable for now: keep what is shown.
      }
    };
    window.setInterval(tick, refreshEvery);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) void tick(); });
  });
}

document.addEventListener('DOMContentLoaded', () => {
  localizeTimes(document);
  refreshRegions();
  protocolForm();
  confirmForms();
  copyButtons();
  timeZoneFields();
});
