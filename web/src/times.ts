// Local times: shared by app.ts and the pages that add rows later.
const dateFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZoneName: 'short',
});

// localizeTimes shows every <time datetime> in the browser's time zone.
export function localizeTimes(root: ParentNode): void {
  root.querySelectorAll<HTMLTimeElement>('time[datetime]').forEach((el) => {
    const d = new Date(el.dateTime);
    if (Number.isNaN(d.getTime())) return;
    el.title = d.toISOString();
    el.textContent = dateFormat.format(d);
  });
}
