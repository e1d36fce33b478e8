// The connection log, end to end in a real Chromium against `portal demo`:
// an auditor whose browser is in Paris opens the Sessions page's History
// tab, reads attempts in their own time zone with sizes and durations in
// words, filters by a time typed in their zone, pages back, and exports
// what matches as CSV. The rows are written into the demo's database with
// the sqlite3 tool (a test dependency), as portal/sessions writes them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDemo, launchBrowser } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

// seed writes a finished session (05:06 UTC, 62 s, 2 KiB in, 3 MiB out),
// a refusal by the hook (05:08 UTC) and 60 failed attempts an hour
// earlier, one a second.
function seed(dbPath) {
  const t0 = Date.UTC(2026, 2, 4, 5, 6, 0);
  const sql = `.timeout 10000
INSERT INTO connections (session_id, start_ms, username, client_addr, resource, protocol, gateway, segment, result, reason, message, posture, end_ms, bytes_in, bytes_out)
VALUES ('E2E-FIN', ${t0}, 'demo-user', '192.0.2.7', 'demo-ssh', 'ssh', 'embedded', 'default', 'connected', '', '', '["disk-encrypted"]', ${t0 + 62000}, 2048, 3145728);
INSERT INTO connections (session_id, start_ms, username, client_addr, resource, protocol, gateway, segment, result, reason, message, posture)
VALUES ('', ${t0 + 120000}, 'mallory', '198.51.100.9', 'demo-ssh', 'sftp', 'embedded', 'default', 'refused', 'client-connect-failed', 'Your laptop is not managed.', '["no-mdm","av-stale"]');
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 60)
INSERT INTO connections (session_id, start_ms, username, client_addr, resource, protocol, gateway, segment, result, reason, message)
SELECT '', ${t0 - 3600000} - i * 1000, 'bulk' || i, '192.0.2.8', 'demo-vnc', 'vnc', 'embedded', 'default', 'failed', 'dial', 'The desktop did not answer.' FROM seq;
`;
  execFileSync('sqlite3', [dbPath], { input: sql });
}

test('an auditor reads, filters, pages and exports the connection history in their time zone', async () => {
  const { info, data } = demo;
  seed(join(data, 'keyway.db'));
  const context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: info.url, viewport: { width: 1400, height: 900 },
    timezoneId: 'Europe/Paris', locale: 'en-GB', acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  try {
    await page.goto('/signin');
    await page.getByLabel('Username').fill(info.auditor.name);
    await page.getByLabel('Password').fill(info.auditor.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => !u.pathname.startsWith('/signin'));

    // From the live view to History by its tab.
    await page.goto('/sessions');
    const tabs = page.getByRole('navigation', { name: 'Sessions views' });
    assert.equal(await tabs.getByRole('link', { name: 'Live' }).getAttribute('aria-current'), 'page');
    await tabs.getByRole('link', { name: 'History' }).click();
    await page.waitForURL('**/sessions/history');
    await page.getByRole('heading', { name: 'Connection history' }).waitFor();
    assert.equal(await tabs.getByRole('link', { name: 'History' }).getAttribute('aria-current'), 'page');

    // The finished session: 05:06 UTC is 06:06 in Paris.
    const fin = page.locator('tr', { hasText: 'demo-user' });
    const finText = await fin.innerText();
    for (const want of ['06:06', '192.0.2.7', 'demo-ssh', 'connected', 'disk-encrypted', '1m02s', '2.0 KiB', '3.0 MiB']) {
      assert.ok(finText.includes(want), `the finished session's row lacks ${want}: ${finText}`);
    }
    assert.equal(await page.locator('tbody tr').count(), 50, 'the first page holds 50 attempts');

    // A time typed in Paris: from 06:07 there (05:07 UTC) only the refusal
    // at 05:08 UTC is left; read as UTC, nothing would be.
    await page.getByLabel('From').fill('2026-03-04T06:07');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL(/since=/);
    assert.match(page.url(), /tz=Europe%2FParis/);
    assert.equal(await page.locator('tbody tr').count(), 1);
    const refused = await page.locator('tbody tr').innerText();
    for (const want of ['06:08', 'mallory', 'refused', 'Your laptop is not managed.', 'client-connect-failed', 'no-mdm', 'av-stale']) {
      assert.ok(refused.includes(want), `the refusal's row lacks ${want}: ${refused}`);
    }

    // Filters by result, then back to all by Clear; paging to the older
    // attempts and back.
    await page.getByRole('link', { name: 'Clear' }).click();
    await page.waitForURL((u) => u.search === '');
    await page.getByLabel('Result').selectOption('failed');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL(/result=failed/);
    await page.getByRole('button', { name: 'Older attempts' }).click();
    await page.waitForURL(/after=/);
    assert.equal(await page.locator('tbody tr').count(), 10);
    assert.equal(await page.getByRole('button', { name: 'Older attempts' }).count(), 0);
    assert.equal(await page.getByLabel('Result').inputValue(), 'failed', 'the second page keeps the filter');
    await page.getByRole('button', { name: 'Newest attempts' }).click();
    await page.waitForURL((u) => !u.search.includes('after='));
    assert.equal(await page.locator('tbody tr').count(), 50);

    // The export holds every failed attempt, not one page.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Export all matching attempts as CSV' }).click(),
    ]);
    assert.match(download.suggestedFilename(), /^keyway-connections-\d{8}-\d{6}\.csv$/);
    const lines = readFileSync(await download.path(), 'utf8').trim().split('\n');
    assert.equal(lines.length, 61, 'a header and 60 failed attempts');
    assert.ok(lines[0].startsWith('id,start_utc,end_utc,duration_seconds,user,client_address,resource,'));
    assert.ok(lines.slice(1).every((l) => l.includes(',failed,dial,')));

    // An empty result says so.
    await page.getByLabel('User').fill('nobody-at-all');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByText('No connection attempts match these filters.').waitFor();
  } finally {
    await context.close();
  }
});
