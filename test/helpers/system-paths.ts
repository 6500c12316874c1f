// Where Debian puts what some tests and benchmarks build with, for the requirement checks
// (requirements.ts) and the builds themselves (test/firmware/firmware.ts, bench/).

/** The i386 libraries' pkg-config files (multiarch), for a 32-bit build beside the amd64 one. */
export const I386_PKG_CONFIG_LIBDIR = '/usr/lib/i386-linux-gnu/pkgconfig:/usr/share/pkgconfig';

/** picolibc's specs for xtensa-lx106-elf-gcc (picolibc-xtensa-lx106-elf). */
export const XTENSA_PICOLIBC_SPECS = '/usr/lib/xtensa-lx106-elf/picolibc.specs';
