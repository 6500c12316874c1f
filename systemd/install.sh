#!/usr/bin/env bash
# Installs, upgrades or removes the modelferry gateway service on a Raspberry Pi (Raspberry
# Pi OS / Debian 12, arm64 or armhf) or any systemd machine.
#
#   sudo systemd/install.sh [--tarball modelferry-X.Y.Z.tgz]   install and start
#   sudo systemd/install.sh --upgrade [--tarball FILE]         replace the code, restart
#   sudo systemd/install.sh --uninstall                         remove it (keeps state and config)
#
# What it writes: the release in /opt/modelferry (production dependencies only), the unit
# /etc/systemd/system/modelferry.service, the system user modelferry (declared in
# /usr/local/lib/sysusers.d/modelferry.conf, created by systemd-sysusers), the command
# /usr/local/bin/modelferry, and once, /etc/modelferry/config.yaml with fresh random tokens
# (never overwritten; root:modelferry 0640 in a root:modelferry 2750 folder, so the service
# reads it and no one else does). The gateway's state (/var/lib/modelferry) and cache
# (/var/cache/modelferry) belong to systemd and the service; nothing here touches them.
#
# Options:
#   --tarball FILE  the release made by `npm pack` (default: the package this script is in,
#                   an unpacked release or a built checkout)
#   --root DIR      install under DIR instead of / (DESTDIR-style, for packaging and tests);
#                   systemctl is not run, and files are owned by whoever runs the script.
#                   The user is created in DIR/etc/passwd only when that file exists (an OS
#                   image) and the script runs as root; else create it on the target with
#                   systemd-sysusers and give it /etc/modelferry (see below).
#   --offline       dependencies from npm's cache only (`npm ci --offline`), no network
#   --no-start      enable the service but do not start it (e.g. to restore a backup first)
#
# Needs: Node.js >= 20.19 at /usr/bin/node (22 LTS recommended; the unit runs that binary)
# with npm, and systemd. LevelDB comes prebuilt for arm64, armv7 (armhf) and x64: no compiler.
set -euo pipefail

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

mode=install root="" tarball="" offline="" start=yes old_version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --upgrade) mode=upgrade ;;
    --uninstall) mode=uninstall ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$(cd "$2" && pwd) || die "no directory $2"; shift ;;
    --tarball) [ $# -ge 2 ] || die "--tarball needs a file"; tarball=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift ;;
    --offline) offline=--offline ;;
    --no-start) start=no ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

[ -z "$tarball" ] || [ "$mode" = uninstall ] || [ -f "$tarball" ] || die "no release tarball at $tarball"

opt="$root/opt/modelferry"
etc="$root/etc/modelferry"
unit="$root/etc/systemd/system/modelferry.service"
sysusers="$root/usr/local/lib/sysusers.d/modelferry.conf"
bin="$root/usr/local/bin/modelferry"
node=${NODE:-/usr/bin/node}

if [ -z "$root" ]; then
  [ "$(id -u)" = 0 ] || die "run as root (sudo), or pass --root DIR to install into a folder"
  [ -d /run/systemd/system ] && command -v systemctl >/dev/null || die "systemd is not running here; this installer sets up a systemd service"
  [ "$mode" = uninstall ] || command -v systemd-sysusers >/dev/null || die "systemd-sysusers is needed to create the service's user (systemd >= 215 has it)"
fi
# Under a root prefix as another user, files stay that user's; as root they are root's.
owner() { [ "$(id -u)" = 0 ] && chown -R root:root "$@" || true; }
systemctl_() {
  if [ -n "$root" ]; then say "skipped (root prefix): systemctl $*"; else systemctl "$@"; fi
}

if [ "$mode" = uninstall ]; then
  systemctl_ disable --now modelferry.service || true
  rm -f "$unit" "$bin" "$sysusers"
  rm -rf "$opt" "$opt".new-* "$opt".old-*
  systemctl_ daemon-reload
  # Under --root, every path named (and the user database) is the image's, never this machine's.
  say "removed the service, $opt and $bin"
  say "kept: $etc (config and tokens), $root/var/lib/modelferry (catalog, devices, gateway id), $root/var/cache/modelferry, and the system user modelferry that owns them"
  leftovers=$(printf ' %q' "$etc" "$root/var/lib/private/modelferry" "$root/var/lib/modelferry" "$root/var/cache/private/modelferry" "$root/var/cache/modelferry")
  say "to remove those too: sudo rm -rf$leftovers && sudo userdel${root:+ --root $(printf '%q' "$root")} modelferry"
  exit 0
fi

# ---- what the gateway needs
[ -x "$node" ] || die "Node.js >= 20.19 is needed at $node (the unit runs it); on Raspberry Pi OS install Node 22 LTS (e.g. from NodeSource: https://github.com/nodesource/distributions) or set NODE=/path/to/node for this check"
node_version=$("$node" -p 'process.versions.node')
"$node" -e '
  const [major, minor] = process.versions.node.split(".").map(Number);
  process.exit(major > 20 || (major === 20 && minor >= 19) ? 0 : 1);' \
  || die "Node.js $node_version at $node is too old: modelferry needs >= 20.19 (22 LTS recommended)"
case "$node_version" in 20.*) say "note: Node.js $node_version works, but Node 20 is out of upstream support; 22 LTS is recommended" ;; esac
command -v npm >/dev/null || die "npm is needed to install the production dependencies (Debian: apt-get install npm)"
case "$(uname -m)" in
  aarch64|arm64|armv7l|x86_64) ;;
  armv6l) say "warning: armv6 (Pi Zero / Pi 1): Node.js >= 20 has no official build for it; use an unofficial build" ;;
  *) say "warning: $(uname -m) is untested; LevelDB may have no prebuilt binary for it" ;;
esac

if [ "$mode" = upgrade ]; then
  [ -f "$opt/package.json" ] || die "nothing to upgrade in $opt: install first (without --upgrade)"
  old_version=$("$node" -p "require('$opt/package.json').version")
fi

# ---- the release, unpacked into a staging folder beside the live one
mkdir -p "$root/opt"
stage="$opt.new-$$"
rm -rf "$stage"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"
if [ -n "$tarball" ]; then
  tar -xzf "$tarball" -C "$stage" --strip-components=1 --no-same-owner
  # npm pack leaves package-lock.json out; the release carries it under another name.
  [ -f "$stage/release-lock.json" ] || die "$tarball has no release-lock.json: make releases with npm pack from this repository"
  mv "$stage/release-lock.json" "$stage/package-lock.json"
else
  here=$(cd "$(dirname "$0")/.." && pwd)
  [ -f "$here/dist/cli/main.js" ] || die "$here is not built: run npm ci && npm run build there, or pass --tarball (a release made by npm pack)"
  lock="$here/package-lock.json"; [ -f "$lock" ] || lock="$here/release-lock.json"
  [ -f "$lock" ] || die "$here has no package-lock.json"
  for item in package.json README.md docs dist config systemd; do cp -a "$here/$item" "$stage/"; done
  cp "$lock" "$stage/package-lock.json"
fi
[ -f "$stage/dist/cli/main.js" ] || die "the release has no dist/cli/main.js"
new_version=$("$node" -p "require('$stage/package.json').version")

# Production dependencies only, no install scripts (LevelDB loads its prebuilt binary at run
# time). An upgrade with the same lock file keeps the installed ones: no network needed.
if [ -d "$opt/node_modules" ] && cmp -s "$opt/package-lock.json" "$stage/package-lock.json"; then
  cp -a "$opt/node_modules" "$stage/node_modules"
  say "dependencies unchanged: reusing the installed ones"
else
  (cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error $offline) \
    || die "npm ci failed${offline:+ (offline: is every package in the npm cache? run once with network)}"
fi
owner "$stage"
chmod -R u+rwX,go+rX,go-w "$stage"

# ---- swap it in; the old release stays until the new one runs
old="$opt.old-$$"
if [ -d "$opt" ]; then mv "$opt" "$old"; fi
mv "$stage" "$opt"
trap - EXIT

install -d -m 0755 "$root/etc/systemd/system" "$root/usr/local/bin"
install -m 0644 "$opt/systemd/modelferry.service" "$unit"
cat > "$bin.tmp" <<'SH'
#!/bin/sh
# The modelferry command, as installed by systemd/install.sh. Run as root, it sees the
# service's config (/etc/modelferry/config.yaml) and folders (for doctor, restore).
: "${STATE_DIRECTORY:=/var/lib/modelferry}"
: "${CACHE_DIRECTORY:=/var/cache/modelferry}"
export STATE_DIRECTORY CACHE_DIRECTORY
exec /usr/bin/node /opt/modelferry/dist/cli/main.js "$@"
SH
chmod 0755 "$bin.tmp"
mv "$bin.tmp" "$bin"
install -d -m 0755 "$(dirname "$sysusers")"
install -m 0644 "$opt/systemd/modelferry.sysusers" "$sysusers"
owner "$unit" "$bin" "$sysusers"

# ---- the service's user, and the config folder it may read
# A static user, so the config can be granted to it: the service reads the file itself and
# sees every edit (a systemd credential would be a copy taken at start).
group=""
if [ -z "$root" ]; then
  systemd-sysusers "$sysusers" || die "systemd-sysusers could not create the user modelferry"
  group=modelferry
elif [ -f "$root/etc/passwd" ] && [ "$(id -u)" = 0 ]; then
  systemd-sysusers --root="$root" "$sysusers" || die "systemd-sysusers could not create the user modelferry in $root"
  group=$(awk -F: '$1 == "modelferry" { print $3 }' "$root/etc/group")
  [ -n "$group" ] || die "systemd-sysusers made no group modelferry in $root/etc/group"
else
  say "skipped (root prefix without etc/passwd, or not root): creating the user modelferry; on the target run systemd-sysusers, then chgrp -R modelferry /etc/modelferry"
fi
# The folder is set-group-id: a config that an editor or a tool replaces by rename is made
# in the service's group too. Mode 2750 keeps everyone else out even if that new file is
# created readable by all.
install -d "$etc"
if [ -n "$group" ]; then chown "root:$group" "$etc"; fi
chmod 2750 "$etc"
if [ -e "$etc/config.yaml" ]; then
  say "kept $etc/config.yaml"
else
  # Fresh random tokens in place of the example's placeholders.
  "$node" -e '
    const fs = require("fs"), crypto = require("crypto");
    const [example, target] = process.argv.slice(1);
    const text = fs.readFileSync(example, "utf8")
      .replace(/replace-with-a-long-random-secret-\d/g, () => crypto.randomBytes(24).toString("hex"));
    fs.writeFileSync(target + ".tmp", text, { mode: 0o640 });
    fs.renameSync(target + ".tmp", target);
  ' "$opt/config/example.yaml" "$etc/config.yaml"
  say "wrote $etc/config.yaml with new tokens (readable by root and the service): the jenkins and ops tokens are in it"
fi
# Also for a config kept from an older release, which was root's alone (0600) and reached
# the service as a credential: the service now reads it itself.
if [ -n "$group" ]; then chown "root:$group" "$etc/config.yaml"; fi
chmod 0640 "$etc/config.yaml"

systemctl_ daemon-reload
if [ "$mode" = install ]; then systemctl_ enable modelferry.service; fi
if [ "$mode" = upgrade ] || [ "$start" = yes ]; then
  systemctl_ restart modelferry.service
  if [ -z "$root" ]; then
    sleep 3
    if ! systemctl is-active --quiet modelferry.service; then
      systemctl --no-pager --lines=20 status modelferry.service || true
      if [ -d "$old" ]; then
        say "the new release did not stay up: putting $old_version${old_version:+ }back"
        rm -rf "$opt.failed"; mv "$opt" "$opt.failed"; mv "$old" "$opt"
        systemctl restart modelferry.service || true
        die "upgrade to $new_version failed and was rolled back (the failed release is in $opt.failed); see journalctl -u modelferry -p warning"
      fi
      die "the service did not stay up; see journalctl -u modelferry -p warning"
    fi
  fi
else
  say "not started (--no-start): sudo systemctl start modelferry"
fi
rm -rf "$old"
if [ "$mode" = upgrade ]; then say "upgraded modelferry $old_version -> $new_version"; else say "installed modelferry $new_version"; fi
say "status: systemctl status modelferry; logs: journalctl -u modelferry -f; check: sudo modelferry doctor"
