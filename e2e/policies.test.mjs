// Access policies, in a real Chromium against `portal demo`: an admin finds
// Policies in the Manage menu, is told what is wrong with a bad network,
// time and zone without losing what they typed, creates the policy, sees
// it listed, disables it and deletes it after a question.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, newPage, signIn } from './harness.mjs';

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

test('admin creates, corrects, disables and deletes a policy', async () => {
  const { info } = demo;
  const page = await newPage(browser, info.url);
  await signIn(page, info.admin.name, info.admin.password);

  await page.getByText('Manage', { exact: true }).click();
  await page.getByRole('link', { name: 'Policies' }).click();
  await page.waitForURL('**/admin/policies');
  await page.getByText('No policies yet').waitFor();
  await page.getByRole('button', { name: 'New policy' }).first().click();
  await page.waitForURL('**/admin/policies/new');

  await page.getByLabel('Name', { exact: true }).fill('office hours');
  await page.getByLabel('Applies to').selectOption({ label: 'Resource demo-ssh' });
  await page.getByLabel('Allowed client networks').fill('127.0.0.0/8\n10.0.0.0/33');
  await page.getByLabel('Allowed times').fill('Mon-Fri 09:00-17:00\nSat 9-12');
  await page.getByLabel('Time zone of the times').fill('Europe/Pariss');
  await page.getByLabel('Maximum session length (minutes)').fill('90');
  await page.getByLabel('Upload files').uncheck();
  await page.getByRole('button', { name: 'Create policy' }).click();

  // Three fields in error, each marked and explained; what was typed stays.
  await page.getByText('Please correct the 3 highlighted fields.').waitFor();
  for (const [label, words] of [
    ['Allowed client networks', '"10.0.0.0/33" is not a network'],
    ['Allowed times', 'Line 2: "9" is not a time of day'],
    ['Time zone of the times', '"Europe/Pariss" is not a time zone name'],
  ]) {
    const field = page.getByLabel(label);
    assert.equal(await field.getAttribute('aria-invalid'), 'true', label);
    const errId = await field.getAttribute('aria-errormessage');
    assert.match(await page.locator(`#${errId}`).textContent(), new RegExp(words.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  }
  assert.equal(await page.getByLabel('Maximum session length (minutes)').inputValue(), '90');
  assert.equal(await page.getByLabel('Upload files').isChecked(), false);
  assert.equal(await page.getByLabel('Applies to').evaluate((s) => s.selectedOptions[0].label), 'Resource demo-ssh');

  await page.getByLabel('Allowed client networks').fill('127.0.0.0/8');
  await page.getByLabel('Allowed times').fill('Mon-Fri 09:00-17:00\nSat 09:00-12:00');
  await page.getByLabel('Time zone of the times').fill('Europe/Paris');
  await page.getByRole('button', { name: 'Create policy' }).click();
  await page.waitForURL('**/admin/policies');
  await page.getByText('Policy “office hours” was created').waitFor();
  const row = page.getByRole('row', { name: /office hours/ });
  for (const text of ['Connections to “demo-ssh”', '127.0.0.0/8', 'Mon–Fri 09:00–17:00', 'Sat 09:00–12:00', 'Europe/Paris', '90 min per session', 'no upload', 'enabled']) {
    await row.getByText(text, { exact: false }).first().waitFor();
  }

  // Disable it.
  await row.getByRole('link', { name: 'office hours' }).click();
  await page.getByLabel('Enabled').uncheck();
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.waitForURL('**/admin/policies');
  await page.getByRole('row', { name: /office hours/ }).getByText('disabled').waitFor();

  // Delete it, after a question.
  await page.getByRole('link', { name: 'office hours' }).click();
  const asked = [];
  page.once('dialog', (d) => { asked.push(d.message()); d.accept(); });
  await page.getByRole('button', { name: 'Delete policy' }).click();
  await page.waitForURL('**/admin/policies');
  assert.match(asked[0], /Delete policy office hours\?/);
  await page.getByText('No policies yet').waitFor();
  await page.context().close();
});

// status waits until the terminal page's status line says text.
async function termStatus(page, text) {
  await page.locator('#term-status', { hasText: text }).waitFor();
}

test('an admin changes a policy and the next connection follows it', async () => {
  const { info } = demo;
  const admin = await newPage(browser, info.url);
  await signIn(admin, info.admin.name, info.admin.password);
  await admin.goto('/admin/policies/new');
  await admin.getByLabel('Name', { exact: true }).fill('lab only');
  await admin.getByLabel('Applies to').selectOption({ label: 'Resource demo-ssh' });
  await admin.getByLabel('Allowed client networks').fill('10.0.0.0/8');
  await admin.getByRole('button', { name: 'Create policy' }).click();
  await admin.waitForURL('**/admin/policies');

  // The user, from 127.0.0.1, is refused, told which policy and why.
  const user = await newPage(browser, info.url);
  await signIn(user, info.user.name, info.user.password);
  const open = async () => {
    await user.goto('/');
    await user.locator('[data-resource]', { hasText: 'demo-ssh' }).getByRole('button', { name: /^connect to/i }).click();
    await user.waitForURL('**/connect/*');
  };
  await open();
  await termStatus(user, 'Policy "lab only"');
  await termStatus(user, '10.0.0.0/8');

  // The admin lets the loopback network in; the next connection opens.
  await admin.getByRole('link', { name: 'lab only' }).click();
  await admin.getByLabel('Allowed client networks').fill('127.0.0.0/8\n::1/128');
  await admin.getByRole('button', { name: 'Save changes' }).click();
  await admin.waitForURL('**/admin/policies');
  await open();
  await termStatus(user, 'Connected');

  // Tidy up for the other journeys on this demo.
  await admin.getByRole('link', { name: 'lab only' }).click();
  admin.once('dialog', (d) => d.accept());
  await admin.getByRole('button', { name: 'Delete policy' }).click();
  await admin.waitForURL('**/admin/policies');
  await admin.context().close();
  await user.context().close();
});
