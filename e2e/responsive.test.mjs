// Phones and narrow windows, in a real Chromium against `portal demo`: at
// 390×844 no page is wider than the window, the navigation folds under a
// Menu that works, and each page's key controls are on screen; at 1366 px
// the admin header is one row.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, newPage, signIn } from './harness.mjs';

const phone = { width: 390, height: 844 };
let demo;
let browser;
let ids; // resource ids by name, from the user's home page

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

// fits asserts that the document is no wider than the window.
async function fits(page, what) {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= inner, `${what}: the page is ${scroll} px wide in a ${inner} px window`);
}

// onScreen asserts that locator is visible and inside the window's width.
async function onScreen(locator, what) {
  await locator.waitFor();
  const box = await locator.boundingBox();
  assert.ok(box && box.width > 0, `${what} is not shown`);
  assert.ok(box.x >= 0 && box.x + box.width <= phone.width + 0.5, `${what} is off screen: x ${box.x}, width ${box.width}`);
}

// menuWorks opens the folded navigation and checks that link is there.
async function menuWorks(page, href) {
  const links = page.locator('header.site .nav-links');
  assert.equal(await links.isVisible(), false, 'the links are not folded');
  await page.locator('header.site .nav-toggle > summary').click();
  await onScreen(links.locator(`a[href="${href}"]`), `the link to ${href} in the menu`);
  await page.locator('header.site .nav-toggle > summary').click();
  assert.equal(await links.isVisible(), false, 'the menu does not close');
}

test('a user on a phone: resources, terminal, desktop, files, account', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url, phone);
  await signIn(page, info.user.name, info.user.password);
  ids = Object.fromEntries(await page.locator('[data-resource]').evaluateAll((els) =>
    els.map((e) => [e.dataset.resource, e.querySelector('a[href^="/connect/"]').getAttribute('href').replace('/connect/', '')])));

  await fits(page, 'home');
  await onScreen(page.getByLabel('Search'), 'the search');
  await onScreen(page.locator('[data-resource="demo-ssh"]').getByRole('button', { name: /^connect to/i }), 'Connect');
  await onScreen(page.getByRole('button', { name: 'Favourite: demo-ssh' }), 'the star');
  await menuWorks(page, '/account');
  // The menu's links lead somewhere.
  await page.locator('header.site .nav-toggle > summary').click();
  await page.locator('header.site a[href="/account"]').click();
  await page.waitForURL('**/account');
  await fits(page, 'account');
  await onScreen(page.getByRole('button', { name: 'Change password' }), 'Change password');

  await page.goto(`/files/${ids['demo-ssh']}`);
  await page.getByRole('heading', { name: /Files on demo-ssh/ }).waitFor();
  await fits(page, 'files');
  const name = page.locator('table.files td.name').first();
  await name.waitFor();
  const nameWidth = (await name.boundingBox()).width;
  assert.ok(nameWidth >= 150, `the name column is ${nameWidth} px: names break letter by letter`);

  await page.goto(`/connect/${ids['demo-ssh']}`);
  await page.locator('#term-status', { hasText: /connected to demo-ssh/i }).waitFor();
  await fits(page, 'terminal');
  await onScreen(page.locator('.termbar a.brand'), 'the way back');
  await onScreen(page.locator('#term-status'), 'the terminal status');

  await page.goto(`/connect/${ids['demo-vnc']}`);
  await page.locator('#desk-status', { hasText: /connected to demo-vnc/i }).waitFor();
  await fits(page, 'desktop');
  for (const label of ['Keys', 'Clipboard']) {
    await onScreen(page.locator('.termbar summary', { hasText: label }), `the desktop's ${label}`);
  }
  await onScreen(page.locator('#desk-cad'), 'Ctrl+Alt+Del');
  await page.locator('.termbar summary', { hasText: 'Clipboard' }).click();
  await onScreen(page.getByRole('button', { name: 'Send to remote desktop' }), 'the clipboard panel');
  await onScreen(page.locator('#desk-clipboard'), 'the clipboard text');
  await page.locator('.termbar summary', { hasText: 'Clipboard' }).click();
  await page.locator('.termbar summary', { hasText: 'Keys' }).click();
  await onScreen(page.locator('.clip-panel button', { hasText: 'Alt+Tab' }), 'the Keys menu');
  await page.goto('/');
});

test('an admin and an auditor on a phone: every page fits, the menu works', async () => {
  const { info } = demo;
  const anon = await newPage(browser, info.url, phone);
  await anon.goto('/signin');
  await fits(anon, 'sign-in');
  await onScreen(anon.getByRole('button', { name: 'Sign in' }), 'Sign in');

  const admin = await newPage(browser, info.url, phone);
  await signIn(admin, info.admin.name, info.admin.password);
  const pages = {
    '/': 'Grant yourself access',
    '/admin/users': 'New user',
    '/admin/users/new': 'Create user',
    '/admin/groups': 'Create group',
    '/admin/resources': 'New resource',
    '/admin/resources/new': 'Create resource',
    [`/admin/resources/${ids['demo-rdp']}`]: 'Save changes',
    '/admin/grants': 'Add grant',
    '/admin/gateways': 'Create segment',
    '/admin/gateways/new': 'Create segment and continue',
    '/audit': null, // the filters are folded
    '/sessions': null,
    '/recordings': 'Search',
    '/account': 'Change password',
  };
  for (const [path, button] of Object.entries(pages)) {
    await admin.goto(path);
    await fits(admin, path);
    if (button) await onScreen(admin.getByRole('button', { name: button, exact: true }).first(), `${button} on ${path}`);
  }
  // The Manage menu inside the folded navigation.
  await admin.goto('/audit');
  await menuWorks(admin, '/audit');
  await admin.locator('header.site .nav-toggle > summary').click();
  await admin.locator('header.site summary', { hasText: 'Manage' }).click();
  await onScreen(admin.getByRole('link', { name: 'Gateways', exact: true }), 'Manage > Gateways');
  await admin.getByRole('link', { name: 'Grants', exact: true }).click();
  await admin.waitForURL('**/admin/grants');

  // The audit table scrolls inside its frame; its last column can be reached.
  await admin.goto('/audit');
  const wrap = admin.locator('.table-wrap').first();
  const [scrollW, clientW] = await wrap.evaluate((el) => [el.scrollWidth, el.clientWidth]);
  assert.ok(scrollW > clientW, 'the audit table fits a phone without scrolling? then the test is wrong');
  await wrap.evaluate((el) => { el.scrollLeft = el.scrollWidth; });
  await onScreen(admin.locator('table.audit thead th').last(), 'the audit table\'s last column, scrolled to');

  const auditor = await newPage(browser, info.url, phone);
  await signIn(auditor, info.auditor.name, info.auditor.password);
  for (const path of ['/recordings', '/audit', '/sessions', '/account', '/']) {
    await auditor.goto(path);
    await fits(auditor, `${path} as auditor`);
  }
  await menuWorks(auditor, '/recordings');
});

test('at 1366 px the admin header is one row', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url, { width: 1366, height: 768 });
  await signIn(page, info.admin.name, info.admin.password);
  await page.goto('/admin/users');
  assert.equal(await page.locator('header.site .nav-toggle').isVisible(), false);
  // One row: every item's middle within a few pixels of the others'.
  const middles = await page.locator('header.site nav > ul > li').evaluateAll((lis) => lis.map((li) => {
    const r = li.getBoundingClientRect();
    return (r.top + r.bottom) / 2;
  }));
  const spread = Math.max(...middles) - Math.min(...middles);
  assert.ok(spread < 8, `the header's items are ${spread} px apart vertically: more than one row (${middles.join(', ')})`);
  assert.equal(await page.getByText('Resource admin').count(), 0);
  // Manage opens a menu of the admin pages and closes on Escape.
  await page.locator('header.site summary', { hasText: 'Manage' }).click();
  await page.getByRole('link', { name: 'Resources', exact: true }).waitFor();
  await page.keyboard.press('Escape');
  assert.equal(await page.getByRole('link', { name: 'Resources', exact: true }).isVisible(), false);
  await fits(page, '/admin/users at 1366 px');
});

test('between phone and laptop widths, the pages fit', async () => {
  const { info } = demo;
  for (const width of [600, 800, 1024]) {
    const user = await newPage(browser, info.url, { width, height: 800 });
    await signIn(user, info.user.name, info.user.password);
    for (const path of ['/?view=list', '/?view=cards', `/files/${ids['demo-ssh']}`]) {
      await user.goto(path);
      await fits(user, `${path} at ${width} px`);
    }
    await user.context().close();
    const admin = await newPage(browser, info.url, { width, height: 800 });
    await signIn(admin, info.admin.name, info.admin.password);
    for (const path of ['/admin/grants', '/admin/resources', '/audit', '/admin/gateways']) {
      await admin.goto(path);
      await fits(admin, `${path} at ${width} px`);
    }
    await admin.context().close();
  }
});
