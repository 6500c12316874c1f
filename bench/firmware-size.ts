// `node --import tsx bench/firmware-size.ts`: the firmware core's code size per source file,
// cross-compiled for Xtensa as test/firmware/cross-compile.test.ts does it (Debian's
// gcc-xtensa-lx106 with picolibc, -Os, int32_t as long), against its budget of 32 KiB of
// .text. Writes bench/firmware-size.md. A size, not a time: the test fails above budget.

import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CORE_TEXT_BUDGET, crossCompileCore } from '../test/firmware/firmware.ts';

const run = promisify(execFile);
const OUT = fileURLToPath(new URL('firmware-size.md', import.meta.url));

// Linked only by the POSIX port (the ESP-IDF port browses with the espressif/mdns component).
const POSIX_ONLY = new Set(['mf_dns.c']);

const sizes = await crossCompileCore();
const { stdout: version } = await run('xtensa-lx106-elf-gcc', ['--version']);
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const device = sizes.filter((size) => !POSIX_ONLY.has(size.file));
const deviceText = device.reduce((sum, size) => sum + size.text, 0);
const allText = sizes.reduce((sum, size) => sum + size.text, 0);
const lines = [
  '# Firmware core code size',
  '',
  `Recorded by \`node --import tsx bench/firmware-size.ts\` on ${new Date().toISOString().slice(0, 10)} with`,
  `${version.split('\n')[0]} and picolibc:`,
  "`-Os`, `-ffunction-sections`, int32_t as `long` as with Espressif's compilers. `text` is",
  'what `size` reports (code, literals and read-only data);',
  'the core has no initialised data and no static storage of its own (the client is one',
  "struct the application owns). The ESP32-S3's Xtensa LX7 is not the ESP8266's LX106, so",
  'these are close to, not exactly, what `idf.py build` gives.',
  '',
  '| file | text | data | bss |',
  '|---|---:|---:|---:|',
  ...sizes.map((size) => `| \`${size.file}\`${POSIX_ONLY.has(size.file) ? ' (POSIX port only)' : ''} | ${size.text} | ${size.data} | ${size.bss} |`),
  `| **on the device** (all but the POSIX-only file) | **${deviceText}** (${kib(deviceText)}) | | |`,
  `| every core file | ${allText} (${kib(allText)}) | | |`,
  '',
  `Budget: ${kib(CORE_TEXT_BUDGET)} of text for every core file (the test's bound): ${allText <= CORE_TEXT_BUDGET ? 'within' : '**over**'} it`,
  `(${Math.round((allText / CORE_TEXT_BUDGET) * 100)} %). Not counted: cJSON, libsodium, the ESP-IDF port and ESP-IDF itself.`,
  '',
];
await writeFile(OUT, lines.join('\n'));
console.log(lines.join('\n'));
console.log(`wrote ${path.relative(process.cwd(), OUT)}`);
