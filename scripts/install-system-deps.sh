#!/usr/bin/env bash
# Installs every Debian/Ubuntu package the test suite and the benchmarks drive for real, so
# `npm test` skips nothing. One list; test/helpers/requirements.ts names the same packages
# in its skip reasons (test/build/system-deps.test.ts keeps the two in step). Run as root:
#   sudo scripts/install-system-deps.sh
# The gateway itself needs none of these: Node.js >= 20.19 is enough to run it.
set -euo pipefail

packages=(
  # the pipeline's client, and plain TCP tricks in fault tests
  curl python3
  # an independent check of certificates, pins and signatures
  openssl
  # a static store and the speed reference
  nginx-light
  # the unit under systemd: systemd-analyze, systemd-sysusers, and a Debian container
  # booted with systemd (debootstrap, systemd-nspawn)
  systemd debootstrap systemd-container
  # the LAN harness (network namespaces, veth, tc), power cuts on an ext4 image
  iproute2 e2fsprogs
  # independent mDNS browsers
  mdns-scan avahi-utils avahi-daemon dbus python3-zeroconf
  # the firmware's host build, also as a 32-bit program, and its core cross-compiled for Xtensa
  cmake gcc g++ make pkg-config libcjson-dev libsodium-dev libcurl4-openssl-dev
  gcc-multilib libcjson-dev:i386 libsodium-dev:i386 libcurl4-openssl-dev:i386
  gcc-xtensa-lx106 picolibc-xtensa-lx106-elf
  # drop-folder copies
  rsync openssh-client
  # the status page in a real browser
  chromium
  # alert rules (promtool)
  prometheus
  # the program schema against ExecuTorch's layout
  flatbuffers-compiler
  # benchmarks
  wrk hyperfine
)

if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps.sh: run it as root (sudo $0)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system-deps.sh: all ${#packages[@]} packages are installed"
  exit 0
fi
echo "install-system-deps.sh: installing ${missing[*]}"
# Packages for another architecture (libcjson-dev:i386) need it added to dpkg first.
for p in "${missing[@]}"; do
  case "$p" in
    *:*) arch=${p##*:}
      dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch" ;;
  esac
done
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
