import anyTest, { type TestFn } from 'ava';
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import { I386_PKG_CONFIG_LIBDIR, XTENSA_PICOLIBC_SPECS } from './system-paths.ts';

// Tests that drive a system tool for real (nginx, curl, cmake, chromium, network
// namespaces...) run where the tool is and are skipped where it is not, each skip with a
// one-line reason naming the Debian package. `npm test` (test/run-suite.ts) collects the
// skips and ends with one line saying what was skipped and the one command that installs
// it all (scripts/install-system-deps.sh, which holds the same package names). Under CI
// nothing is skipped: a missing tool fails the tests that need it, saying which.

interface Requirement {
  /** Why it is missing on this machine, or undefined when it is there. */
  check(): string | undefined;
  /** The Debian packages that bring it (install-system-deps.sh installs them all). */
  packages: string[];
}

const commandIsMissing = (command: string): string | undefined =>
  spawnSync('sh', ['-c', `command -v "$0"`, command], { stdio: 'ignore' }).status === 0 ? undefined : `${command} is not installed`;

const pkgConfigIsMissing = (...modules: string[]): string | undefined => {
  if (commandIsMissing('pkg-config')) return 'pkg-config is not installed';
  const absent = modules.filter((module) => spawnSync('pkg-config', ['--exists', module]).status !== 0);
  return absent.length > 0 ? `no development files for ${absent.join(', ')}` : undefined;
};

const gccM32IsMissing = (): string | undefined =>
  spawnSync('gcc', ['-m32', '-x', 'c', '-', '-o', '/dev/null'], { input: 'int main(void) { return 0; }\n' }).status === 0 ? undefined : 'gcc cannot build 32-bit programs (-m32)';

const pkgConfigI386IsMissing = (...modules: string[]): string | undefined => {
  const env = { ...process.env, PKG_CONFIG_LIBDIR: I386_PKG_CONFIG_LIBDIR };
  const absent = modules.filter((module) => spawnSync('pkg-config', ['--exists', module], { env }).status !== 0);
  return absent.length > 0 ? `no i386 development files for ${absent.join(', ')}` : undefined;
};

const firstOf = (...reasons: (string | undefined)[]): string | undefined => reasons.find((reason) => reason !== undefined);

const NEEDS_ROOT = 'it needs root (run as root, or through .ci/run)';
const notRoot = (): string | undefined => (process.getuid?.() === 0 ? undefined : NEEDS_ROOT);

const REQUIREMENTS = {
  curl: { check: () => commandIsMissing('curl'), packages: ['curl'] },
  openssl: { check: () => commandIsMissing('openssl'), packages: ['openssl'] },
  nginx: { check: () => commandIsMissing('nginx'), packages: ['nginx-light'] },
  rsync: { check: () => commandIsMissing('rsync'), packages: ['rsync'] },
  python3: { check: () => commandIsMissing('python3'), packages: ['python3'] },
  chromium: { check: () => commandIsMissing('chromium'), packages: ['chromium'] },
  promtool: { check: () => commandIsMissing('promtool'), packages: ['prometheus'] },
  flatc: { check: () => commandIsMissing('flatc'), packages: ['flatbuffers-compiler'] },
  'systemd-analyze': { check: () => commandIsMissing('systemd-analyze'), packages: ['systemd'] },
  'systemd-sysusers': { check: () => commandIsMissing('systemd-sysusers'), packages: ['systemd'] },
  'mdns-scan': { check: () => commandIsMissing('mdns-scan'), packages: ['mdns-scan'] },
  'python3-zeroconf': {
    // Debian's interpreter, as test/lan/mdns-peers.ts runs it: the first python3 on PATH may be another one (pyenv).
    check: () => (spawnSync('/usr/bin/python3', ['-c', 'import zeroconf'], { stdio: 'ignore' }).status === 0 ? undefined : "Debian's python3 has no zeroconf module"),
    packages: ['python3-zeroconf'],
  },
  avahi: { check: () => firstOf(commandIsMissing('avahi-daemon'), commandIsMissing('avahi-browse'), commandIsMissing('dbus-daemon')), packages: ['avahi-daemon', 'avahi-utils', 'dbus'] },
  /** The firmware's host build: cmake, a C compiler and the libraries the POSIX port links. */
  'firmware-host': {
    check: () => firstOf(commandIsMissing('cmake'), commandIsMissing('gcc'), commandIsMissing('g++'), commandIsMissing('make'), pkgConfigIsMissing('libcjson', 'libsodium', 'libcurl')),
    packages: ['cmake', 'gcc', 'g++', 'make', 'pkg-config', 'libcjson-dev', 'libsodium-dev', 'libcurl4-openssl-dev'],
  },
  /** The same build as a 32-bit program (-m32): the i386 libraries beside the amd64 ones. */
  'firmware-host-32': {
    check: () => firstOf(commandIsMissing('cmake'), commandIsMissing('gcc'), gccM32IsMissing(), pkgConfigI386IsMissing('libcjson', 'libsodium', 'libcurl')),
    packages: ['gcc-multilib', 'libcjson-dev:i386', 'libsodium-dev:i386', 'libcurl4-openssl-dev:i386'],
  },
  /** The firmware's core cross-compiled for Xtensa (the ESP8266's lx106 and picolibc): what Debian has of Espressif's toolchain. */
  'xtensa-lx106': {
    check: () => firstOf(commandIsMissing('xtensa-lx106-elf-gcc'), existsSync(XTENSA_PICOLIBC_SPECS) ? undefined : 'picolibc for xtensa-lx106 is not installed',
      existsSync('/usr/include/cjson/cJSON.h') && existsSync('/usr/include/sodium.h') ? undefined : 'the cJSON and libsodium headers are not installed'),
    packages: ['gcc-xtensa-lx106', 'picolibc-xtensa-lx106-elf', 'libcjson-dev', 'libsodium-dev'],
  },
  root: { check: notRoot, packages: [] },
  /** A Debian container booted with systemd as its PID 1 (test/helpers/nspawn.ts). */
  nspawn: {
    check: () => firstOf(notRoot(), commandIsMissing('debootstrap'), commandIsMissing('systemd-nspawn'), commandIsMissing('nsenter')),
    packages: ['debootstrap', 'systemd-container'],
  },
  /** Private network namespaces with veth links between them (the LAN harness). */
  netns: {
    check: () => firstOf(notRoot(), commandIsMissing('ip'), commandIsMissing('unshare'), netnsProbe()),
    packages: ['iproute2'],
  },
  /** A loop-mounted ext4 image in a private mount namespace (power cuts). */
  'ext4-image': { check: () => firstOf(notRoot(), commandIsMissing('mkfs.ext4'), commandIsMissing('unshare')), packages: ['e2fsprogs'] },
} satisfies Record<string, Requirement>;

export type RequirementName = keyof typeof REQUIREMENTS;

function netnsProbe(): string | undefined {
  const probe = `mf-probe-${process.pid}`;
  const added = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (added.status !== 0) return `cannot create a network namespace with ip(8): ${(added.stderr ?? '').split('\n')[0]}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

const checked = new Map<RequirementName, string | undefined>();

/** What is missing of `names` on this machine, each with the reason and its Debian packages. */
export function missing(...names: RequirementName[]): { name: RequirementName; reason: string; packages: string[] }[] {
  return names.flatMap((name) => {
    if (!checked.has(name)) checked.set(name, REQUIREMENTS[name].check());
    const reason = checked.get(name);
    // No package brings root: a skip for want of it names none.
    return reason === undefined ? [] : [{ name, reason, packages: reason === NEEDS_ROOT ? [] : REQUIREMENTS[name].packages }];
  });
}

/** Every Debian package a requirement names: the list scripts/install-system-deps.sh must cover. */
export function allRequiredPackages(): string[] {
  return [...new Set(Object.values(REQUIREMENTS).flatMap((requirement) => requirement.packages))].sort();
}

/** True where nothing may be skipped: CI, or anyone who asks for the whole suite. */
export const mustRunEverything = process.env.CI === 'true' || process.env.MODELFERRY_REQUIRE_ALL === '1';

/**
 * ava's `test` for tests that need `names`. Where all are present it is `test` itself.
 * Where one is missing, every test declared through it is skipped (recorded for the run's
 * summary, reason printed once) and its hooks do not run; under CI every such test fails
 * with the reason instead.
 */
export function testNeeding(...names: RequirementName[]): TestFn {
  const absent = missing(...names);
  if (absent.length === 0) return anyTest;
  const reason = absent.map(({ reason, packages }) => (packages.length > 0 ? `${reason} (Debian: ${packages.join(' ')})` : reason)).join('; ');
  if (mustRunEverything) return standIn((title) => anyTest(title, (t) => t.fail(`this test needs what is missing: ${reason}`)), (title) => anyTest.serial(title, (t) => t.fail(`this test needs what is missing: ${reason}`)));
  console.log(`skipped: ${reason}`);
  const record = (title: string) => {
    const log = process.env.MODELFERRY_SKIP_LOG;
    if (log) appendFileSync(log, `${JSON.stringify({ title, needs: absent.map(({ name, packages }) => ({ name, packages })) })}\n`);
  };
  const skipped = (title: string) => {
    record(title);
    anyTest.skip(title, () => undefined);
  };
  const skippedSerial = (title: string) => {
    record(title);
    anyTest.serial.skip(title, () => undefined);
  };
  return standIn(skipped, skippedSerial);
}

/** A `test` whose tests are declared by `declare` and whose hooks are never run. */
function standIn(declare: (title: string) => void, declareSerial: (title: string) => void): TestFn {
  const hook = Object.assign(() => undefined, { always: () => undefined, skip: () => undefined });
  const serial = Object.assign((title: string) => declareSerial(title), {
    before: hook, after: hook, beforeEach: hook, afterEach: hook, skip: (title: string) => declareSerial(title), only: (title: string) => declareSerial(title),
  });
  const fn = Object.assign((title: string) => declare(title), {
    serial, before: hook, after: hook, beforeEach: hook, afterEach: hook,
    skip: (title: string) => declare(title), only: (title: string) => declare(title),
    todo: (title: string) => anyTest.todo(title), meta: anyTest.meta,
  });
  return fn as unknown as TestFn;
}
