// Finding things, in a real Chromium against `portal demo`: the resource
// list's search (live, and without script), `/` and Enter, favourites,
// recent connections and the compact view; an admin without grants is
// led to grant themselves access; the tunnel switch and grant modes save
// on change; every page finds its icon; the skip link leads to the content.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, newPage, signIn, waitFor } from './harness.mjs';

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

// shown returns the names of the resources the list shows, in order.
async function shown(page) {
  return page.locator('ul.cards > li:not([hidden]) [data-resource]').evaluateAll((els) => els.map((e) => e.dataset.resource));
}

// notFound collects the addresses that answered 404 while page was used.
function notFound(page) {
  const missing = [];
  page.on('response', (r) => { if (r.status() === 404) missing.push(r.url()); });
  return missing;
}

test('user searches, opens the only match with Enter, stars and lists compactly', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  const missing = notFound(page);
  await signIn(page, info.user.name, info.user.password);
  assert.deepEqual(await shown(page), ['demo-rdp', 'demo-ssh', 'demo-vnc']);

  // The skip link is the first stop for the keyboard and leads to the content.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');

  // `/` focuses the search; typing filters at once, without a page load.
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'q');
  const loads = [];
  page.on('load', () => loads.push(page.url()));
  await page.keyboard.type('xvnc');
  await waitFor('the live filter', async () => (await shown(page)).join() === 'demo-vnc');
  await page.getByText('1 of 3 resources matches.').waitFor();
  assert.deepEqual(loads, []);
  assert.match(page.url(), /\?q=xvnc(#main)?$/);
  await page.keyboard.press('Backspace');
  await page.keyboard.press('Backspace');
  await page.keyboard.press('Backspace');
  await page.keyboard.press('Backspace');
  await page.keyboard.type('127.0.0.1'); // the host: every resource
  await waitFor('all three again', async () => (await shown(page)).length === 3);
  await page.getByLabel('Protocol').selectOption('rdp');
  await waitFor('the protocol filter', async () => (await shown(page)).join() === 'demo-rdp');

  // Enter connects to the only match.
  await page.getByLabel('Protocol').selectOption('');
  await page.getByLabel('Search').fill('');
  await page.getByLabel('Search').fill('vnc');
  await waitFor('one match', async () => (await shown(page)).join() === 'demo-vnc');
  await page.getByLabel('Search').press('Enter');
  await page.waitForURL('**/connect/*');
  await page.locator('#desk-status', { hasText: /connected to demo-vnc/i }).waitFor();

  // Back home, it is offered under Recent.
  await page.goto('/');
  await page.getByRole('navigation', { name: 'Recently used' }).getByRole('link', { name: 'demo-vnc' }).waitFor();

  // A favourite comes first, and stays first.
  await page.getByRole('button', { name: 'Favourite: demo-vnc' }).click();
  await page.getByText('“demo-vnc” is now a favourite').waitFor();
  await page.getByRole('heading', { name: 'Favourites' }).waitFor();
  assert.deepEqual(await shown(page), ['demo-vnc', 'demo-rdp', 'demo-ssh']);
  assert.equal(await page.getByRole('button', { name: 'Favourite: demo-vnc' }).getAttribute('aria-pressed'), 'true');

  // The compact list, remembered.
  await page.getByRole('link', { name: 'Show as a compact list' }).click();
  await page.locator('ul.cards.compact').first().waitFor();
  const rowHeight = await page.locator('ul.cards.compact > li').first().evaluate((li) => li.getBoundingClientRect().height);
  assert.ok(rowHeight < 80, `a compact row is ${rowHeight} px tall`);
  await page.goto('/');
  await page.locator('ul.cards.compact').first().waitFor();
  await page.getByRole('link', { name: 'Show as cards' }).click();
  await page.locator('ul.cards:not(.compact)').first().waitFor();

  assert.deepEqual(missing.filter((u) => !u.includes('/connect/')), [], 'pages asked for missing files (the icon?)');
});

test('the search works without script', async () => {
  const { info } = demo;
  const context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: info.url, javaScriptEnabled: false });
  const page = await context.newPage();
  await signIn(page, info.user.name, info.user.password);
  await page.getByLabel('Search').fill('openssh');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/\?q=openssh/);
  assert.deepEqual(await shown(page), ['demo-ssh']);
  await page.getByText('1 of 3 resources matches.').waitFor();
  await page.getByLabel('Search').fill('no-such-thing');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText('No resource matches this search.').waitFor();
  await context.close();
});

test('an admin without grants grants themselves access; switches save on change', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  const missing = notFound(page);
  await signIn(page, info.admin.name, info.admin.password);
  await page.getByText(/none is granted to you/).waitFor();
  assert.equal(await page.getByText('Ask an administrator').count(), 0);
  await page.getByRole('button', { name: 'Grant yourself access' }).click();
  await page.waitForURL('**/admin/grants?subject=user:*');
  await page.getByText('No grant matches these filters.').waitFor();
  assert.match(await page.getByLabel('User or group').locator('option:checked').textContent(), new RegExp(`user: ${info.admin.name}`));
  await page.getByLabel('Resource', { exact: true }).selectOption({ label: 'demo-ssh' });
  await page.getByRole('button', { name: /add grant/i }).click();
  await page.getByText(`User “${info.admin.name}” may now use “demo-ssh”`).waitFor();

  // The grant's mode changes in place (demo-ssh has files).
  await page.goto('/admin/grants');
  const mode = page.getByLabel(`Allows, for demo-ssh to user ${info.admin.name}`);
  await mode.selectOption('both');
  await page.getByText(`now allows terminal and files`).waitFor();
  await page.goto('/');
  const card = page.locator('[data-resource="demo-ssh"]');
  await card.getByRole('button', { name: /^files on/i }).waitFor();

  // The tunnel switch saves as it changes; its Save is for browsers without script.
  await page.goto('/admin/gateways');
  assert.equal(await page.getByRole('button', { name: 'Save', exact: true }).count(), 0);
  const tunnel = page.getByRole('switch');
  assert.equal(await tunnel.isChecked(), true);
  await tunnel.click();
  await page.getByText('Tunnel mode is off for new connections.').waitFor();
  assert.equal(await page.getByRole('switch').isChecked(), false);
  await page.getByRole('switch').click();
  await page.getByText('Tunnel mode is on for new connections.').waitFor();

  // New gateway, with only the default segment: asks for a segment, then continues.
  await page.getByRole('button', { name: 'New gateway' }).click();
  await page.getByText(/holds only the portal's own embedded gateway/).waitFor();
  await page.getByLabel('Segment name').fill('e2e-office');
  await page.getByRole('button', { name: 'Create segment and continue' }).click();
  await page.getByText('Segment “e2e-office” was created.').waitFor();
  assert.equal(await page.getByLabel('Segment', { exact: true }).locator('option:checked').textContent(), 'e2e-office');
  await page.getByLabel('Gateway name').waitFor();

  assert.deepEqual(missing, []);
});
