import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FolderObjects } from '../../daemon/central-store/folder-objects.ts';
import type { SiteReport } from '../../daemon/site-reports/site-report.ts';
import { fleetPage, readFleet } from '../../daemon/site-reports/fleet-view.ts';
import { headlessChromium } from '../helpers/chromium.ts';
import { tempDir } from '../helpers/harness.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { HOSTILE_ERROR } from './fleet-scenario.ts';

const test = testNeeding('chromium');

// The fleet page `modelferry fleet --write-page` puts into the store (docs/central-store.md
// "Every site reports"), as a browser shows it: self-contained, stale sites and failures
// marked, device text escaped. The screenshot is kept in test/artifacts/ (not committed).

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));

function siteReport(gateway: string, name: string, ageMinutes: number, devices: Partial<SiteReport['devices']>, extra: Partial<SiteReport> = {}): SiteReport {
  return {
    format: 'modelferry-site-report/1', gateway, name, version: '0.1.0',
    reportedAt: new Date(Date.now() - ageMinutes * 60_000).toISOString(),
    syncPeriodSeconds: 300,
    reportIntervalSeconds: 60,
    lastSync: { at: new Date().toISOString(), result: 'unchanged', revision: 'r1', error: null },
    lastSuccessAt: null, revision: 'r1',
    models: { count: 1, bytes: 1072, listed: [] },
    devices: { total: 0, inSync: 0, failed: 0, pending: 0, incompatible: 0, rolledBack: 0, unassigned: 0, pendingAdmission: 0, ...devices },
    rollouts: [], failures: { count: 0, listed: [] },
    ...extra,
  };
}

test('the fleet page shows every site in one table, stale and failing sites marked, device text escaped, nothing loaded from elsewhere', async (t) => {
  const dir = await tempDir(t);
  await mkdir(path.join(dir, 'gateways'));
  const reports = [
    siteReport('a000000000000001', 'site-a', 1, { total: 40, inSync: 40 }),
    siteReport('b000000000000002', 'site-b', 2, { total: 12, inSync: 10, failed: 2 }, {
      rollouts: [{ selector: 'default', model: 'kws', version: '2', percent: 10, halted: true, haltedBy: 'failures' }],
      failures: { count: 2, listed: [{ mac: 'aa:bb:cc:00:00:02', model: 'kws', version: '2', reason: HOSTILE_ERROR, rolledBack: true, at: null }] },
    }),
    siteReport('c000000000000003', 'site-c', 45, { total: 7, inSync: 7 }),
    // Reports hourly (upstream.reportIntervalSeconds 3600): 45 minutes is not long for it.
    siteReport('e000000000000005', 'site-e', 45, { total: 3, inSync: 3 }, { reportIntervalSeconds: 3600 }),
  ];
  for (const report of reports) await writeFile(path.join(dir, 'gateways', `${report.gateway}.json`), JSON.stringify(report));
  const store = new FolderObjects(dir);
  await store.writeBytes('fleet.html', Buffer.from(fleetPage(await readFleet(store, new Date()))), { contentType: 'text/html' });

  const context = await headlessChromium(t, { viewport: { width: 1024, height: 700 } });
  const page = context.pages()[0] ?? await context.newPage();
  const problems: string[] = [];
  const requests: string[] = [];
  page.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()); });
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('request', (request) => requests.push(request.url()));
  const url = pathToFileURL(path.join(dir, 'fleet.html')).href;
  await page.goto(url);

  const rows = await page.locator('tr.site').evaluateAll((items) => items.map((tr) => tr.getAttribute('data-gateway')));
  t.deepEqual(rows, ['c000000000000003', 'b000000000000002', 'a000000000000001', 'e000000000000005'], 'stale first, then failing, then by name');
  t.is(await page.locator('tr.site.stale').count(), 1);
  t.regex((await page.locator('tr.site.stale').textContent())!, /site-c.*45 min ago stale/);
  // The marking is real styling: the inline style passed the page's own CSP.
  const color = (selector: string) => page.locator(selector).first().evaluate((td) => (globalThis as unknown as { getComputedStyle(e: unknown): { color: string } }).getComputedStyle(td).color);
  t.is(await color('tr.stale td'), 'rgb(179, 89, 0)');
  t.not(await color('tr.site:not(.stale) td'), 'rgb(179, 89, 0)');
  t.is(await page.locator('td.failed.some').textContent(), '2');
  t.regex((await page.locator('tr[data-gateway="b000000000000002"] td.halted').textContent())!, /default kws@2/);
  await page.locator('tr.failures summary').click();
  t.true((await page.locator('tr.failures li').textContent())!.includes('document.title'), 'the hostile reason is shown as text');
  t.not(await page.title(), 'pwned');
  t.is(await page.locator('script').count(), 0);
  t.is(await page.locator('img').count(), 0);
  t.deepEqual(requests, [url], 'nothing but the page itself is loaded');
  t.deepEqual(problems, []);
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'fleet-page.png'), fullPage: true });
});
