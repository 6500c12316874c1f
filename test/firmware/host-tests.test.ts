import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { testNeeding } from '../helpers/requirements.ts';
import { BUILD, BUILD_32, buildFirmware, buildFirmware32 } from './firmware.ts';

// The firmware's portable core and POSIX port: built with cmake under AddressSanitizer and
// UndefinedBehaviorSanitizer, every unit test run by ctest; and the same again as 32-bit
// programs, as the core runs on the ESP32-S3 (pointers, size_t and long of 32 bits). Any
// failure or sanitizer report fails the test with ctest's output.

const run = promisify(execFile);

async function ctestPasses(t: ExecutionContext, dir: string): Promise<void> {
  let output: string;
  try {
    const result = await run('ctest', ['--test-dir', dir, '--output-on-failure', '-j2'], { maxBuffer: 16 * 1024 * 1024 });
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
}

testNeeding('firmware-host')('the firmware host build passes every ctest unit test under ASan and UBSan', async (t) => {
  t.timeout(180_000);
  await buildFirmware();
  await ctestPasses(t, BUILD);
});

testNeeding('firmware-host-32')('built as 32-bit programs (-m32), it passes every ctest unit test under ASan and UBSan too', async (t) => {
  t.timeout(300_000);
  await buildFirmware32();
  const elf = await readFile(`${BUILD_32}/test_client`);
  t.is(elf[4], 1, 'test_client is a 32-bit ELF program (EI_CLASS ELFCLASS32)');
  await ctestPasses(t, BUILD_32);
});
