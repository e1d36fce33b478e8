// The file browser's uploads: files chosen or dropped are sent one request
// each, as the raw body (exact names, no multipart), with a progress bar
// and a cancel button per file; the listing is refreshed as each ends.
// Without script the same form posts multipart and the page reloads.
// It also runs the selection bar (count, select all, the delete question
// naming how many) and shows a row's Rename and Permissions forms in a
// dialog instead of inline.
import './files.css';
import { localizeTimes } from './times';

const maxParallel = 3;

interface Answer { files?: { name: string; ok: boolean; message: string }[] }

function sizeText(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

// Row is one file's line in the upload list.
class Row {
  readonly li = document.createElement('li');
  readonly bar = document.createElement('progress');
  readonly status = document.createElement('span');
  readonly cancel = document.createElement('button');
  onCancel: () => void = () => {};

  constructor(list: HTMLElement, file: File) {
    const name = document.createElement('strong');
    name.textContent = file.name;
    this.bar.max = file.size || 1;
    this.bar.value = 0;
    this.bar.setAttribute('aria-label', `Upload progress of ${file.name}`);
    this.status.textContent = `waiting (${sizeText(file.size)})`;
    this.cancel.type = 'button';
    this.cancel.className = 'link danger';
    this.cancel.textContent = 'Cancel';
    this.cancel.setAttribute('aria-label', `Cancel the upload of ${file.name}`);
    this.cancel.addEventListener('click', () => this.onCancel());
    this.li.append(name, ' ', this.bar, ' ', this.status, ' ', this.cancel);
    list.append(this.li);
  }

  progress(loaded: number, total: number): void {
    this.bar.max = total || 1;
    this.bar.value = loaded;
    this.status.textContent = `${sizeText(loaded)} of ${sizeText(total)}`;
  }

  finish(ok: boolean, message: string): void {
    this.li.className = ok ? 'ok' : 'failed';
    if (ok) this.bar.value = this.bar.max;
    else this.bar.remove();
    this.status.textContent = message;
    this.cancel.remove();
  }
}

function setup(): void {
  const form = document.querySelector<HTMLFormElement>('#upload-form');
  if (!form) return;
  const input = form.querySelector<HTMLInputElement>('#upload-files');
  const zone = form.querySelector<HTMLElement>('#dropzone');
  const list = form.querySelector<HTMLElement>('#uploads');
  const replace = form.querySelector<HTMLInputElement>('input[name="replace"]');
  if (!input || !zone || !list || !replace) return;
  const max = Number(form.dataset.maxUpload || '0');
  // With script, choosing files starts their upload.
  form.querySelector<HTMLElement>('.upload-submit')?.setAttribute('hidden', '');

  const queue: (() => Promise<void>)[] = [];
  let running = 0;
  const pump = () => {
    while (running < maxParallel && queue.length > 0) {
      running++;
      queue.shift()!().finally(() => { running--; pump(); });
    }
  };

  const send = (file: File, row: Row): Promise<void> => new Promise((resolve) => {
    const url = new URL(form.action);
    url.searchParams.set('name', file.name);
    if (replace.checked) url.searchParams.set('replace', '1');
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.addEventListener('progress', (e) => row.progress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener('load', () => {
      let answer: Answer = {};
      try { answer = JSON.parse(xhr.responseText) as Answer; } catch { /* reported below */ }
      const r = answer.files?.[0];
      row.finish(xhr.status === 200 && !!r?.ok, r?.message ?? `The upload of ${file.name} failed (HTTP ${xhr.status}); nothing was saved.`);
      refresh();
      resolve();
    });
    xhr.addEventListener('error', () => {
      row.finish(false, `The connection was lost while sending ${file.name}; nothing was saved under its name.`);
      resolve();
    });
    xhr.addEventListener('abort', () => {
      row.finish(false, `The upload of ${file.name} was cancelled; nothing was saved under its name.`);
      resolve();
    });
    row.onCancel = () => xhr.abort();
    xhr.send(file);
  });

  const add = (files: Iterable<File>) => {
    for (const file of files) {
      const row = new Row(list, file);
      if (max > 0 && file.size > max) {
        row.finish(false, `${file.name} is larger than the ${sizeText(max)} allowed here; it was not sent.`);
        continue;
      }
      let cancelled = false;
      row.onCancel = () => {
        cancelled = true;
        row.finish(false, `The upload of ${file.name} was cancelled before it started.`);
      };
      queue.push(() => (cancelled ? Promise.resolve() : send(file, row)));
    }
    pump();
  };

  input.addEventListener('change', () => {
    if (input.files) add(Array.from(input.files));
    input.value = '';
  });
  form.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  form.addEventListener('dragleave', () => zone.classList.remove('over'));
  form.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    if (e.dataTransfer?.files) add(Array.from(e.dataTransfer.files));
  });

  // refresh swaps in the listing as the server renders it now. A refresh
  // asked for while one is in flight runs again when it ends: the one in
  // flight may have been read before the latest upload landed.
  let refreshing: Promise<void> | null = null;
  let again = false;
  const refresh = () => {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = fetch(form.dataset.listing ?? location.href, { headers: { Accept: 'text/html' } })
      .then((resp) => resp.text())
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, 'text/html').querySelector('#listing');
        const here = document.querySelector('#listing');
        if (fresh && here) {
          here.replaceWith(fresh);
          localizeTimes(fresh);
          updateSelection();
        }
      })
      .catch(() => { /* the listing stays as it was */ })
      .finally(() => {
        refreshing = null;
        if (again) {
          again = false;
          refresh();
        }
      });
  };
}

function rowBoxes(): HTMLInputElement[] {
  return Array.from(document.querySelectorAll<HTMLInputElement>('#listing input[type="checkbox"][form="bulk"]'));
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

// updateSelection tells how many rows are ticked, in the bar and in the
// delete question, and sets the select-all box to match.
function updateSelection(): void {
  const boxes = rowBoxes();
  const n = boxes.filter((b) => b.checked).length;
  const all = document.querySelector<HTMLInputElement>('#select-all');
  if (all) {
    all.hidden = false;
    all.checked = n > 0 && n === boxes.length;
    all.indeterminate = n > 0 && n < boxes.length;
  }
  const count = document.querySelector('#bulk-count');
  if (count) count.textContent = n === 0 ? 'Nothing selected: tick files and folders to download or delete several at once.' : `${plural(n, 'item', 'items')} selected.`;
  const bar = document.querySelector<HTMLFormElement>('#bulk');
  bar?.querySelectorAll<HTMLButtonElement>('button[type="submit"]').forEach((b) => { b.disabled = n === 0; });
  const question = document.querySelector('#bulk-question');
  if (question) {
    question.textContent = n === 0
      ? 'Nothing is selected.'
      : `Delete ${plural(n, 'selected item', 'selected items')}? Folders are deleted with everything in them. This cannot be undone.`;
  }
  const del = bar?.querySelector<HTMLButtonElement>('.bulk-delete button');
  if (del) del.textContent = n === 0 ? 'Delete selected' : `Delete ${plural(n, 'item', 'items')}`;
}

function setupSelection(): void {
  document.addEventListener('change', (ev) => {
    const t = ev.target;
    if (!(t instanceof HTMLInputElement)) return;
    if (t.id === 'select-all') {
      rowBoxes().forEach((b) => { b.checked = t.checked; });
    } else if (t.getAttribute('form') !== 'bulk') {
      return;
    }
    updateSelection();
  });
  // The browser may restore ticks on back/forward.
  window.addEventListener('pageshow', updateSelection);
  updateSelection();
}

// setupMenus: a row's Rename… and Permissions… open their form in a
// modal dialog (Escape or Cancel closes it, focus returns to the row's
// menu); Escape or a click elsewhere closes an open row menu.
function setupMenus(): void {
  const dialog = document.querySelector<HTMLDialogElement>('#file-dialog');
  const title = dialog?.querySelector('#file-dialog-title');
  const body = dialog?.querySelector('.dialog-body');
  if (!dialog || !title || !body || typeof dialog.showModal !== 'function') return;
  let opener: HTMLElement | null = null;

  const open = (details: HTMLDetailsElement) => {
    const form = details.querySelector('form');
    if (!form) return;
    const copy = form.cloneNode(true) as HTMLFormElement;
    const submit = copy.querySelector('button[type="submit"]');
    const buttons = document.createElement('div');
    buttons.className = 'dialog-buttons';
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.className = 'secondary';
    cancel.textContent = 'Cancel';
    cancel.addEventListener('click', () => dialog.close());
    if (submit) buttons.append(submit);
    buttons.append(cancel);
    copy.append(buttons);
    title.textContent = details.dataset.title ?? '';
    body.replaceChildren(copy);
    const menu = details.closest<HTMLDetailsElement>('details.row-menu');
    opener = menu?.querySelector<HTMLElement>('summary') ?? null;
    if (menu) menu.open = false;
    dialog.showModal();
    const input = copy.querySelector<HTMLInputElement>('input:not([type="hidden"])');
    input?.focus();
    input?.select();
  };
  dialog.addEventListener('close', () => {
    body.replaceChildren();
    opener?.focus();
    opener = null;
  });

  document.addEventListener('click', (ev) => {
    const t = ev.target instanceof Element ? ev.target : null;
    const summary = t?.closest('details.menu-form > summary');
    if (summary) {
      ev.preventDefault();
      open(summary.parentElement as HTMLDetailsElement);
      return;
    }
    document.querySelectorAll<HTMLDetailsElement>('details.row-menu[open]').forEach((d) => {
      if (!t || !d.contains(t)) d.open = false;
    });
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || dialog.open) return;
    const t = ev.target instanceof Element ? ev.target : null;
    const menu = t?.closest<HTMLDetailsElement>('details.row-menu[open]');
    if (menu) {
      menu.open = false;
      menu.querySelector<HTMLElement>('summary')?.focus();
    }
  });
}

document.addEventListener('DOMContentLoaded', () => {
  setup();
  setupSelection();
  setupMenus();
});
