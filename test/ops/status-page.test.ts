import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { testNeeding } from '../helpers/requirements.ts';
import type { BrowserContext } from 'playwright-core';
import { headlessChromium } from '../helpers/chromium.ts';
import { macs, poll } from '../helpers/api.ts';
import { startGateway } from '../helpers/gateway.ts';
import type { HasTeardown } from '../helpers/harness.ts';
import { TEST_TOKENS } from '../helpers/tokens.ts';
import { FAILED, HOSTILE_ERROR, IN_SYNC, PENDING, report, scriptedFleet } from './fleet-scenario.ts';

const test = testNeeding('chromium');

// The status page (GET /) as a technician's phone shows it: headless Chromium at phone
// width, after a scripted fleet. The screenshot is kept in test/artifacts/ (not committed).

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
export const SCREENSHOT = path.join(ARTIFACTS, 'status-page-phone.png');

function phone(t: HasTeardown): Promise<BrowserContext> {
  return headlessChromium(t, { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
}

test('the status page shows the fleet on a phone, out-of-sync and failed devices highlighted, hostile text escaped, refreshed in place', async (t) => {
  const gw = await startGateway(t);
  const fleet = await scriptedFleet(t, gw);
  const context = await phone(t);
  const page = context.pages()[0] ?? await context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()); });
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('dialog', (dialog) => { problems.push(`dialog: ${dialog.message()}`); void dialog.dismiss(); });

  const response = await page.goto(`${gw.url}/`);
  t.is(response?.status(), 200);
  const count = (label: string) => page.locator(`[data-count="${label}"] b`).textContent();
  t.is(await count('devices'), '3');
  t.is(await count('in sync'), '1');
  t.is(await count('out of sync'), '2');
  t.is(await count('failed'), '1');

  const device = (mac: string) => page.locator(`li.device[data-mac="${mac}"]`);
  t.is(await device(IN_SYNC).getAttribute('class'), 'device in-sync');
  t.is(await device(FAILED).getAttribute('class'), 'device failed');
  t.is(await device(PENDING).getAttribute('class'), 'device out-of-sync');
  t.is(await device(PENDING).locator('.badge').textContent(), 'out of sync');
  // Problems first: failed, then out of sync, then in sync.
  t.deepEqual(await page.locator('li.device').evaluateAll((items) => items.map((li) => li.getAttribute('data-mac'))), [FAILED, PENDING, IN_SYNC]);
  // Highlighting is real styling, so the inline style passed the page's CSP.
  t.is(await device(FAILED).evaluate((li) => (globalThis as unknown as { getComputedStyle(e: unknown): { borderLeftColor: string } }).getComputedStyle(li).borderLeftColor), 'rgb(198, 40, 40)');

  // The hostile error is shown as text, and nothing in it ran or became an element.
  t.is(await device(FAILED).locator('.error').textContent(), HOSTILE_ERROR);
  t.is(await page.locator('img').count(), 0);
  t.is(await page.locator('script').count(), 1);
  t.not(await page.title(), 'pwned');
  t.true((await device(FAILED).textContent())!.includes('rssi -81 dBm'));
  t.true((await device(IN_SYNC).textContent())!.includes('kws@2.0'));

  // Models with their devices and assignments; identity; no secret anywhere.
  const text = (await page.locator('body').textContent())!;
  t.regex(text, /2\.0[^]*2 devices, 1 in sync[^]*assigned to default/);
  t.regex(text, /1\.0[^]*1 device, 0 in sync[^]*assigned to group:lab/);
  t.true(text.includes(gw.config.paths.state) === false, 'no file system paths');
  const html = await page.content();
  for (const { token } of TEST_TOKENS) t.false(html.includes(token));
  t.regex(text, /gateway id\s*[0-9a-f]{16}/);

  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  t.log(`screenshot: ${path.relative(process.cwd(), SCREENSHOT)}`);

  // The pending device installs: the page updates without a reload.
  await page.evaluate('window.marker = 42');
  await report(t, gw, PENDING, { state: 'installed', sha256: fleet.v2.sha256, model: 'kws', version: '2.0' });
  await page.locator('#refresh').click();
  await page.locator(`li.device.in-sync[data-mac="${PENDING}"]`).waitFor();
  t.is(await count('out of sync'), '1');
  t.is(await page.evaluate('window.marker'), 42, 'no full reload');

  // Search by MAC, in any notation.
  await page.locator('input[name=q]').fill('CC-00-00-03');
  await Promise.all([page.waitForURL(/q=CC-00-00-03/), page.locator('button[type=submit]').click()]);
  t.deepEqual(await page.locator('li.device').evaluateAll((items) => items.map((li) => li.getAttribute('data-mac'))), [PENDING]);

  t.deepEqual(problems, [], 'no script errors, CSP violations or dialogs');
});

test('the device list is paged, problems-only and search work, and the fragment is the live part alone', async (t) => {
  const gw = await startGateway(t);
  const fleet = await scriptedFleet(t, gw);
  for (const mac of macs(117)) t.is((await poll(gw, mac)).status, 200);
  const html = async (query: string) => {
    const response = await gw.fetch(`/${query}`);
    t.is(response.status, 200);
    t.regex(response.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    return response.text();
  };
  const rows = (page: string) => [...page.matchAll(/<li class="device [a-z-]+" data-mac="([^"]+)"/g)].map((m) => m[1]);

  const first = await html('');
  // Never-reporting devices are out of sync: failed first, then out of sync, by MAC.
  const order = [FAILED, ...macs(117), PENDING, IN_SYNC];
  t.deepEqual(rows(first), order.slice(0, 50));
  t.true(first.includes('1–50 of 120'));
  t.true(first.includes('href="/?page=2"'));
  const last = await html('?page=3');
  t.deepEqual(rows(last), order.slice(100));
  t.true(last.includes('101–120 of 120'));
  t.deepEqual(rows(await html('?page=99')), rows(last), 'a page past the end shows the last one');

  const problems = await html('?show=problems&page=3');
  t.deepEqual(rows(problems), order.slice(100, 119));
  t.true(problems.includes('101–119 of 119'));
  t.deepEqual(rows(await html('?q=020000000074')), ['02:00:00:00:00:74']);
  t.deepEqual(rows(await html('?q=zz')).length, 50, 'no hex digit in the search: everything');

  const fragment = await html('?fragment=1&page=2');
  t.false(fragment.includes('<html'));
  t.false(fragment.includes('<script'));
  t.deepEqual(rows(fragment), order.slice(50, 100));
  t.true(fragment.includes(fleet.v2.version));
});

test('a failing upstream is shown as such, with its last error and without credentials or query', async (t) => {
  const gw = await startGateway(t, { 'upstream.url': 'http://127.0.0.1:9/store/manifest.json?sig=secret-in-query' });
  let page = '';
  for (let i = 0; i < 200 && !page.includes('last error'); i++) {
    page = await (await gw.fetch('/')).text();
    if (!page.includes('last error')) await new Promise((resolve) => setTimeout(resolve, 25));
  }
  t.regex(page, /<p id="upstream" class="stale"><code>http:\/\/127\.0\.0\.1:9\/store\/manifest\.json<\/code>, failing; no successful sync yet<\/p>/);
  t.regex(page, /<p class="error">last error [^<]+<\/p>/);
  t.false(page.includes('secret-in-query'));
});
