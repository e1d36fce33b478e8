// The video export on a desktop recording's page. The form starts the
// export and the page comes back showing it queued or running; this
// follows it through the portal's small JSON status, once a second, and
// shows the download once the video is made (or why it failed). Without
// script the page says to reload it.

interface ExportStatus {
  state: 'none' | 'queued' | 'running' | 'done' | 'failed';
  percent: number;
  reason?: string;
  video_url?: string;
  size?: number;
}

const pollMs = 1000;

// byteSize shows a size as web/ui does: B, KiB, MiB or GiB.
export function byteSize(n: number): string {
  const units = ['KiB', 'MiB', 'GiB'];
  if (n < 1024) return `${n} B`;
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${v.toFixed(1)} ${units[u]}`;
}

const busy = (s: string | undefined): boolean => s === 'queued' || s === 'running';

export function followExport(section: HTMLElement): void {
  const src = section.dataset.status;
  if (!src || !busy(section.dataset.state)) return;
  const el = (id: string): HTMLElement | null => document.getElementById(id);
  const start = el('video-start');
  const progress = el('video-progress');
  const bar = el('video-bar') as HTMLProgressElement | null;
  const text = el('video-progress-text');
  const done = el('video-done');
  const failed = el('video-failed');
  const reason = el('video-reason');
  const size = el('video-size');
  const download = el('video-download') as HTMLAnchorElement | null;

  const show = (st: ExportStatus): void => {
    section.dataset.state = st.state === 'none' ? '' : st.state;
    if (start) start.hidden = busy(st.state) || st.state === 'done';
    if (progress) progress.hidden = !busy(st.state);
    if (done) done.hidden = st.state !== 'done';
    if (failed) failed.hidden = st.state !== 'failed';
    if (bar) bar.value = st.percent;
    if (text) {
      text.textContent = st.state === 'queued' ? 'Waiting for another export to finish…' : `Exporting the video… ${st.percent}%`;
    }
    if (st.state === 'failed' && reason) reason.textContent = st.reason ?? '';
    if (st.state === 'done') {
      if (size) size.textContent = byteSize(st.size ?? 0);
      if (download && st.video_url) download.href = st.video_url;
      download?.focus();
    }
  };

  const poll = async (): Promise<void> => {
    let st: ExportStatus;
    try {
      const resp = await fetch(src, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
      if (!resp.ok) throw new Error(`the portal answered ${resp.status}`);
      st = (await resp.json()) as ExportStatus;
    } catch (e) {
      if (text) text.textContent = `Lost track of the export (${(e as Error).message}); reload the page to see how far it is.`;
      return;
    }
    show(st);
    if (busy(st.state)) setTimeout(() => { void poll(); }, pollMs);
  };
  setTimeout(() => { void poll(); }, pollMs);
}
