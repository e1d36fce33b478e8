// The file browser in a real Chromium against `portal demo` (embedded
// gateway, real OpenSSH sshd with internal-sftp): the demo user drops two
// files, watches them upload, downloads one, renames and deletes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
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

  // Two files dropped at once: a larger one, to see progress, and a small one.
  const bigSize = 16 << 20;
  const big = Buffer.from(pseudoRandom(7, bigSize));
  const dataTransfer = await page.evaluateHandle(([gen, size]) => {
    const pseudo = new Function(`return ${gen}`)();
    const dt = new DataTransfer();
    dt.items.add(new File([pseudo(7, size)], 'big.bin'));
    dt.items.add(new File(['small file ✓\n'], 'small ü.txt'));
    return dt;
  }, [pseudoRandom.toString(), bigSize]);
  await page.dispatchEvent('#dropzone', 'dragover', { dataTransfer });
  await page.dispatchEvent('#dropzone', 'drop', { dataTransfer });
  // Each file has its own line with a progress bar until it is done.
  await page.locator('#uploads li', { hasText: 'big.bin' }).waitFor();
  assert.equal(await page.locator('#uploads li').count(), 2);
  assert.ok(await page.locator('#uploads li progress').count() >= 1, 'uploads show progress bars');
  await page.locator('#uploads li.ok', { hasText: 'big.bin was uploaded' }).waitFor({ timeout: 60000 });
  await page.locator('#uploads li.ok', { hasText: 'small ü.txt was uploaded' }).waitFor();
  // The listing updates without a reload.
  await row(page, 'big.bin').waitFor();
  await row(page, 'small ü.txt').waitFor();
  const onTarget = `/home/${info.ssh_target.login}/${folder}/big.bin`;
  if (existsSync(onTarget)) assert.ok(readFileSync(onTarget).equals(big), 'the target holds the bytes sent');

  // Download one and compare bytes.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    row(page, 'big.bin').getByRole('link', { name: 'big.bin' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'big.bin');
  assert.ok(readFileSync(await download.path()).equals(big), 'the download has the uploaded bytes');

  // Rename.
  await row(page, 'small ü.txt').locator('summary').click();
  await row(page, 'small ü.txt').getByLabel('New name').fill('renamed ✓.txt');
  await row(page, 'small ü.txt').getByRole('button', { name: 'Rename' }).click();
  await flash(page, 'was renamed to renamed ✓.txt');
  await row(page, 'renamed ✓.txt').waitFor();
  assert.equal(await row(page, 'small ü.txt').count(), 0);

  // Delete, after confirming.
  page.once('dialog', (d) => d.accept());
  await row(page, 'big.bin').locator('summary').click();
  await row(page, 'big.bin').getByRole('button', { name: 'Delete' }).click();
  await flash(page, 'big.bin was deleted');
  await waitFor('big.bin to leave the listing', async () => (await row(page, 'big.bin').count()) === 0);

  // Clean up: the folder, with what is left in it.
  await page.locator('nav.crumbs li').nth(-2).getByRole('link').click();
  page.once('dialog', (d) => d.accept());
  await row(page, folder).locator('summary').click();
  await row(page, folder).getByRole('button', { name: 'Delete' }).click();
  await flash(page, 'was deleted');
});
