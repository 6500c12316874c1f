import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { testNeeding } from '../helpers/requirements.ts';
import { BUILD, buildFirmware } from './firmware.ts';

const test = testNeeding('firmware-host');

// The firmware's portable core and POSIX port: built with cmake under AddressSanitizer and
// UndefinedBehaviorSanitizer, every unit test run by ctest. Any failure or sanitizer report
// fails this test with ctest's output.

const run = promisify(execFile);

test('the firmware host build passes every ctest unit test under ASan and UBSan', async (t) => {
  t.timeout(180_000);
  await buildFirmware();
  let output: string;
  try {
    const result = await run('ctest', ['--test-dir', BUILD, '--output-on-failure', '-j2'], { maxBuffer: 16 * 1024 * 1024 });
    output = result.stdout + result.stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    t.fail(`ctest failed:\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    return;
  }
  const summary = /(\d+)% tests passed, (\d+) tests failed out of (\d+)/.exec(output);
  t.truthy(summary, output);
  t.is(summary![2], '0', output);
  t.true(Number(summary![3]) >= 8, output);
});
