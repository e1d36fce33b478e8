// Drain, as a user sees it: the portal gets SIGTERM while a user works in
// a terminal. A banner over the terminal says the portal is restarting
// and counts down, in the user's locale, to the close; a new session is
// refused in words; the second SIGTERM closes the session at once, the
// banner staying, and the portal exits 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, signIn, terminalText, waitFor } from './harness.mjs';

let demo;
let browser;

before(async () => {
  // Long enough that only the second signal ends the session.
  demo = await startDemo(['--drain-timeout', '10m']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

// page opens a page in a German locale and a zone of its own, so that the
// banner's numbers and times are shown as that user reads them.
async function page(url) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: url, locale: 'de-DE', timezoneId: 'Asia/Kolkata',
    viewport: { width: 1100, height: 700 } });
  const p = await context.newPage();
  p.setDefaultTimeout(20000);
  return p;
}

async function openTerminal(p, resource) {
  await p.goto('/');
  await p.locator('[data-resource]', { hasText: resource }).getByRole('button', { name: /^connect to/i }).click();
  await p.waitForURL('**/connect/*');
}

test('a draining portal shows a countdown banner and refuses new sessions', async () => {
  const { info } = demo;
  const user = await page(info.url);
  await signIn(user, info.user.name, info.user.password);
  await openTerminal(user, info.ssh_target.resource);
  await user.locator('#term-status', { hasText: /connected/i }).waitFor();
  await waitFor('a shell prompt', async () => (await terminalText(user)).includes('$'));
  // A second tab opened before the drain, to connect during it.
  const other = await page(info.url);
  await signIn(other, info.user.name, info.user.password);
  await other.goto('/');

  process.kill(demo.pid, 'SIGTERM');
  const banner = user.locator('#drain-banner');
  await banner.waitFor();
  await assert.doesNotReject(banner.getByText(/This portal is restarting: this session will be closed when the countdown ends/).waitFor());
  // The deadline in the user's zone and language (24-hour clock in de-DE),
  // and a countdown that goes down.
  const text = await user.locator('#drain-text').textContent();
  const at = text.match(/Closes at (\d{1,2}:\d{2}:\d{2}), in$/);
  assert.ok(at, text);
  // Ten minutes from now, give or take the time the test took, as a
  // user in Kolkata reading German reads the time.
  const fmt = new Intl.DateTimeFormat('de-DE', { timeZone: 'Asia/Kolkata', hour: 'numeric', minute: '2-digit', second: '2-digit' });
  const near = [];
  for (let s = -60; s <= 60; s++) near.push(fmt.format(Date.now() + 10 * 60 * 1000 + s * 1000));
  assert.ok(near.includes(at[1]), `deadline ${at[1]} is not ten minutes from now in Kolkata`);
  const clock = user.locator('#drain-countdown');
  const first = await clock.textContent();
  assert.match(first, /^(9|10):\d{2}$/, `countdown ${first}`);
  await waitFor('the countdown to go down', async () => (await clock.textContent()) !== first, 5000);
  const secs = (s) => { const [m, x] = s.split(':').map(Number); return m * 60 + x; };
  assert.ok(secs(await clock.textContent()) < secs(first), 'the countdown went up');
  // The session still works while the portal drains.
  await user.keyboard.type('echo drain-$((6*7))\n');
  await waitFor('the shell to answer while draining', async () => (await terminalText(user)).includes('drain-42'));
  await user.locator('#term-status', { hasText: 'Portal restarting' }).waitFor();

  // A new session is refused with the reason; pages still work.
  await openTerminal(other, info.ssh_target.resource);
  await other.locator('#term-status', { hasText: 'This portal is restarting; reconnect in a moment.' }).waitFor();

  // The second signal closes the session at once; the banner stays.
  process.kill(demo.pid, 'SIGTERM');
  await user.locator('#term-status', { hasText: 'This portal is restarting, so the session was closed' }).waitFor();
  await assert.doesNotReject(user.locator('#drain-banner.ended').waitFor());
  assert.equal(await demo.exited(), 0, demo.log());
});
