import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import anyTest from 'ava';
import { testNeeding } from '../helpers/requirements.ts';
import { CORE, CORE_TEXT_BUDGET, FIRMWARE, crossCompileCore } from './firmware.ts';

// The core as the ESP32-S3 gets it: cross-compiled for Xtensa at -Os with warnings as
// errors and int32_t as `long` (Espressif's compilers define it so, where a host has
// `int`), and within its code budget. bench/firmware-size.ts records the sizes per file.

testNeeding('xtensa-lx106')('the core cross-compiles for Xtensa without a warning, int32_t as long, within 32 KiB of .text', async (t) => {
  t.timeout(180_000);
  const sizes = await crossCompileCore();
  const sources = (await readdir(CORE)).filter((name) => name.endsWith('.c'));
  t.is(sizes.length, sources.length);
  const text = sizes.reduce((sum, size) => sum + size.text, 0);
  t.true(text <= CORE_TEXT_BUDGET, `${text} bytes of .text: over the ${CORE_TEXT_BUDGET}-byte budget\n${JSON.stringify(sizes, null, 1)}`);
  t.true(text > 8 * 1024, `${text} bytes: too little to be the whole core`);
});

anyTest('the ESP-IDF component compiles every core source the host build does, but the POSIX port\'s DNS parser', async (t) => {
  const cmake = await readFile(path.join(FIRMWARE, 'components', 'modelferry', 'CMakeLists.txt'), 'utf8');
  const list = /set\(core_srcs([^)]*)\)/.exec(cmake);
  t.truthy(list, 'CMakeLists.txt has set(core_srcs ...)');
  const listed = [...list![1]!.matchAll(/core\/(mf_\w+\.c)/g)].map((m) => m[1]!).sort();
  const sources = (await readdir(CORE)).filter((name) => name.endsWith('.c') && name !== 'mf_dns.c').sort();
  t.deepEqual(listed, sources);
});
