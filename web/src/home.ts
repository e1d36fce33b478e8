// The home page's live search: filters the resource list as the user
// types (the same rules as the server's GET search, which works without
// script), `/` focuses the search, Enter opens the only match.

function matches(li: HTMLElement, words: string[], protocol: string, tag: string): boolean {
  if (protocol && li.dataset.protocol !== protocol) return false;
  if (tag && !(li.dataset.tags ?? '').split('\n').includes(tag)) return false;
  const text = li.dataset.search ?? '';
  return words.every((w) => text.includes(w));
}

export function homeSearch(): void {
  const form = document.querySelector<HTMLFormElement>('form#resource-search');
  const q = form?.querySelector<HTMLInputElement>('input#q');
  if (!form || !q) return;
  const protocol = form.querySelector<HTMLSelectElement>('select#protocol-filter');
  const tag = form.querySelector<HTMLSelectElement>('select#tag');
  const items = Array.from(document.querySelectorAll<HTMLLIElement>('ul.cards > li[data-search]'));
  const count = document.getElementById('match-count');
  const none = document.getElementById('no-match');

  const visible = () => items.filter((li) => !li.hidden);
  const apply = () => {
    const words = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    const p = protocol?.value ?? '';
    const t = tag?.value ?? '';
    let n = 0;
    for (const li of items) {
      li.hidden = !matches(li, words, p, t);
      if (!li.hidden) n++;
    }
    // A group whose resources are all hidden hides its heading too.
    document.querySelectorAll<HTMLElement>('section.resource-group').forEach((sec) => {
      sec.hidden = sec.querySelector('li[data-search]:not([hidden])') === null;
    });
    if (none) none.hidden = n > 0;
    if (count) {
      const filtered = words.length > 0 || p !== '' || t !== '';
      count.textContent = !filtered ? '' : n === 1 ? `1 of ${items.length} resources matches.` : `${n} of ${items.length} resources match.`;
    }
    // The address bar follows, so reload and back keep the search.
    const url = new URL(window.location.href);
    for (const [k, val] of [['q', q.value.trim()], ['protocol', p], ['tag', t]] as const) {
      if (val) url.searchParams.set(k, val);
      else url.searchParams.delete(k);
    }
    url.searchParams.delete('view');
    window.history.replaceState(null, '', url);
    document.querySelectorAll<HTMLInputElement>('form.star input[name="back"]').forEach((el) => { el.value = url.pathname + url.search; });
  };

  q.addEventListener('input', apply);
  protocol?.addEventListener('change', apply);
  tag?.addEventListener('change', apply);
  q.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter') return;
    const shown = visible();
    const href = shown.length === 1 ? shown[0].dataset.href : '';
    if (href) {
      ev.preventDefault();
      window.location.assign(href);
    }
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== '/' || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const el = ev.target as HTMLElement | null;
    if (el && (el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName))) return;
    ev.preventDefault();
    q.focus();
    q.select();
  });
  apply();
}
