// The file browser in a real Chromium against `portal demo` (embedded
// gateway, real OpenSSH sshd with internal-sftp): the demo user drops
// files, watches them upload, downloads one, renames one in its dialog,
// selects two and downloads them as one zip, deletes them after the
// confirmation; names keep their spaces and, on a phone, their words.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { unzipSync } from 'fflate';
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

// pseudoRandom is size bytes from a seed (xorshift32), made the same way
// here and in the page, so large test files need not cross into the page.
function pseudoRandom(seed, size) {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

// row is the listing's row of the file called name.
function row(page, name) {
  return page.locator(`#listing tr[data-name="${name}"]`);
}

async function flash(page, text) {
  await page.locator('.flash', { hasText: text }).waitFor();
}

test('user uploads by drag and drop, downloads, renames and deletes', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  await signIn(page, info.user.name, info.user.password);
  const card = page.locator('[data-resource]', { hasText: info.ssh_target.resource });
  await card.getByRole('button', { name: /^files on/i }).click();
  await page.waitForURL('**/files/*');
  await page.getByRole('heading', { name: `Files on ${info.ssh_target.resource}` }).waitFor();

  // A fresh folder to work in, with a name that needs care.
  const folder = `e2e dossier ü ${randomBytes(3).toString('hex')}`;
  await page.getByLabel('New folder').fill(folder);
  await page.getByRole('button', { name: 'Create' }).click();
  await flash(page, 'was created');
  await row(page, folder).getByRole('link', { name: folder }).click();
  await page.locator('nav.crumbs [aria-current="page"]', { hasText: folder }).waitFor();
  await page.getByText('This folder is empty').waitFor();

  // Three files dropped at once: a larger one, to see progress, a small
  // one and one whose name has two spaces and a 12-letter word.
  const bigSize = 16 << 20;
  const big = Buffer.from(pseudoRandom(7, bigSize));
  const spaced = 'Jahresbilanz  two spaces.txt';
  const dataTransfer = await page.evaluateHandle(([gen, size, spacedName]) => {
    const pseudo = new Function(`return ${gen}`)();
    const dt = new DataTransfer();
    dt.items.add(new File([pseudo(7, size)], 'big.bin'));
    dt.items.add(new File(['small file ✓\n'], 'small ü.txt'));
    dt.items.add(new File(['spaces\n'], spacedName));
    return dt;
  }, [pseudoRandom.toString(), bigSize, spaced]);
  await page.dispatchEvent('#dropzone', 'dragover', { dataTransfer });
  await page.dispatchEvent('#dropzone', 'drop', { dataTransfer });
  // Each file has its own line with a progress bar until it is done.
  await page.locator('#uploads li', { hasText: 'big.bin' }).waitFor();
  assert.equal(await page.locator('#uploads li').count(), 3);
  assert.ok(await page.locator('#uploads li progress').count() >= 1, 'uploads show progress bars');
  await page.locator('#uploads li.ok', { hasText: 'big.bin was uploaded' }).waitFor({ timeout: 60000 });
  await page.locator('#uploads li.ok', { hasText: 'small ü.txt was uploaded' }).waitFor();
  await page.locator('#uploads li.ok', { hasText: 'two spaces.txt was uploaded' }).waitFor();
  // The listing updates without a reload.
  await row(page, 'big.bin').waitFor();
  await row(page, 'small ü.txt').waitFor();
  await row(page, spaced).waitFor();
  const onTarget = `/home/${info.ssh_target.login}/${folder}/big.bin`;
  if (existsSync(onTarget)) assert.ok(readFileSync(onTarget).equals(big), 'the target holds the bytes sent');

  // Runs of spaces are shown as they are (innerText is what is rendered).
  assert.equal(await row(page, spaced).locator('.fname').evaluate((el) => el.innerText), spaced);

  // Download one and compare bytes.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    row(page, 'big.bin').getByRole('link', { name: 'big.bin' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'big.bin');
  assert.ok(readFileSync(await download.path()).equals(big), 'the download has the uploaded bytes');

  // Rename, from the row's menu, in a dialog, by keyboard.
  const menu = row(page, 'small ü.txt').locator('details.row-menu > summary');
  await menu.focus();
  await page.keyboard.press('Enter');
  await row(page, 'small ü.txt').locator('summary', { hasText: 'Rename…' }).focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Rename small ü.txt' });
  await dialog.waitFor();
  const newName = dialog.getByLabel('New name');
  assert.equal(await newName.evaluate((el) => el === document.activeElement), true, 'the name field has the focus');
  // Escape closes the dialog without a change, and focus goes back to the menu.
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  // The dialog's close event, which returns the focus, follows its hiding.
  await waitFor('focus back on the row menu', () => menu.evaluate((el) => el === document.activeElement), 5000);
  await page.keyboard.press('Enter');
  await row(page, 'small ü.txt').locator('summary', { hasText: 'Rename…' }).click();
  await newName.fill('renamed ✓.txt');
  await page.keyboard.press('Enter');
  await flash(page, 'was renamed to renamed ✓.txt');
  await row(page, 'renamed ✓.txt').waitFor();
  assert.equal(await row(page, 'small ü.txt').count(), 0);

  // Select two files, download them as one zip, then delete them.
  await row(page, 'big.bin').getByRole('checkbox').check();
  await row(page, 'renamed ✓.txt').getByRole('checkbox').check();
  await page.locator('#bulk-count', { hasText: '2 items selected' }).waitFor();
  const [zipped] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download selected (zip)' }).click(),
  ]);
  assert.equal(zipped.suggestedFilename(), `${folder}.zip`);
  const entries = unzipSync(readFileSync(await zipped.path()));
  assert.deepEqual(Object.keys(entries).sort(), ['big.bin', 'renamed ✓.txt']);
  assert.ok(Buffer.from(entries['big.bin']).equals(big), 'the zip has the bytes of big.bin');
  assert.equal(Buffer.from(entries['renamed ✓.txt']).toString(), 'small file ✓\n');

  await page.locator('summary', { hasText: 'Delete selected…' }).click();
  await page.getByText('Delete 2 selected items? Folders are deleted with everything in them. This cannot be undone.').waitFor();
  await page.getByRole('button', { name: 'Delete 2 items' }).click();
  await flash(page, '2 deleted.');
  assert.equal(await row(page, 'big.bin').count(), 0);
  assert.equal(await row(page, 'renamed ✓.txt').count(), 0);
  await row(page, spaced).waitFor();

  // Select all ticks every row.
  await page.getByRole('checkbox', { name: 'Select all files and folders' }).check();
  assert.equal(await row(page, spaced).getByRole('checkbox').isChecked(), true);

  // On a phone the name column keeps a 12-letter word on one line.
  const phone = await newPage(browser, info.url, { width: 390, height: 844 });
  await signIn(phone, info.user.name, info.user.password);
  await phone.goto(page.url());
  const lines = await row(phone, spaced).locator('.fname').evaluate((el) => {
    const range = document.createRange();
    range.setStart(el.firstChild, 0);
    range.setEnd(el.firstChild, 'Jahresbilanz'.length);
    return new Set(Array.from(range.getClientRects(), (r) => Math.round(r.top))).size;
  });
  assert.equal(lines, 1, 'Jahresbilanz is not broken across lines at 390 px');
  const box = await row(phone, spaced).locator('td.name').boundingBox();
  assert.ok(box.x + box.width <= 390, `the name column is on screen (right edge at ${box.x + box.width})`);
  await phone.context().close();

  // Without script the menu's forms open in place and the selection bar
  // still deletes, asking first in its disclosure.
  const plainContext = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: info.url, javaScriptEnabled: false });
  const plain = await plainContext.newPage();
  plain.setDefaultTimeout(20000);
  await signIn(plain, info.user.name, info.user.password);
  await plain.goto(page.url());
  await row(plain, spaced).locator('details.row-menu > summary').click();
  await row(plain, spaced).locator('summary', { hasText: 'Rename…' }).click();
  await row(plain, spaced).getByLabel('New name').fill('no script.txt');
  await row(plain, spaced).getByRole('button', { name: 'Rename' }).click();
  await flash(plain, 'was renamed to no script.txt');
  await row(plain, 'no script.txt').getByRole('checkbox').check();
  await plain.locator('summary', { hasText: 'Delete selected…' }).click();
  await plain.getByRole('button', { name: 'Delete selected' }).click();
  await flash(plain, '1 deleted.');
  assert.equal(await row(plain, 'no script.txt').count(), 0);
  await plainContext.close();

  // Clean up: the folder, with what is left in it.
  await page.locator('nav.crumbs li').nth(-2).getByRole('link').click();
  page.once('dialog', (d) => d.accept());
  await row(page, folder).locator('details.row-menu > summary').click();
  await row(page, folder).getByRole('button', { name: 'Delete…' }).click();
  await flash(page, 'was deleted');
});
