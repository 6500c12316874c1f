import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { testNeeding } from '../helpers/requirements.ts';
import { Metrics } from '../../daemon/metrics.ts';

// config/alerts.yml: valid rules (promtool check), firing when and only when they should
// (promtool test, alerts.promtest.yml), on metric names the gateway really exports.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RULES = `${ROOT}config/alerts.yml`;

const promtoolTest = testNeeding('promtool');

promtoolTest('promtool check rules accepts config/alerts.yml', async (t) => {
  const { stdout } = await run('promtool', ['check', 'rules', RULES]);
  t.regex(stdout, /SUCCESS: 5 rules found/);
});

promtoolTest('promtool test rules: each alert fires after its time and not before', async (t) => {
  const { stdout } = await run('promtool', ['test', 'rules', `${ROOT}test/ops/alerts.promtest.yml`]);
  t.regex(stdout, /SUCCESS/);
});

test('the rules use only metric names the gateway exports', async (t) => {
  const used = new Set(readFileSync(RULES, 'utf8').match(/modelferry_[a-z0-9_]+/g));
  t.true(used.size >= 4);
  const exported = await new Metrics().text();
  for (const name of used) t.regex(exported, new RegExp(`^# TYPE ${name} `, 'm'), name);
});
