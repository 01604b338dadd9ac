#!/usr/bin/env bash
# Builds the ipvlan-bgp managed (v2) Docker plugin folder: config.json plus a
# root filesystem with the driver, gobgpd and gobgp (for the embedded BGP
# node), busybox (the entry point's shell) and the shared libraries they use.
#
#   plugin/build.sh [--driver PATH] [--out DIR] [--gobgp v3|v4] [--create NAME]
#
# --driver  the ipvlan-bgp binary (default: target/release/ipvlan-bgp, built if missing)
# --out     the plugin folder to write (default: target/plugin)
# --gobgp   which GoBGP line the plugin embeds as /usr/bin/gobgpd and gobgp:
#           v3 (default: Debian's /usr/bin/gobgpd, gobgp) or v4 (gobgpd-v4 and
#           gobgp-v4 from PATH, as ci/install.sh full installs them); written
#           to OUT/gobgp.line
# --create  also run `docker plugin create NAME OUT` (e.g. ipvlan-bgp:latest)
#
# Needs: gobgpd and gobgp (Debian: gobgpd; or gobgpd-v4, gobgp-v4), busybox
# (Debian: busybox-static).
set -euo pipefail
cd "$(dirname "$0")/.."

driver=target/release/ipvlan-bgp
out=target/plugin
create=
line=v3
while [ $# -gt 0 ]; do
  case "$1" in
  --driver) driver=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --create) create=$2; shift 2 ;;
  --gobgp) line=$2; shift 2 ;;
  *) echo "plugin/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$driver" = target/release/ipvlan-bgp ] && [ ! -x "$driver" ]; then
  cargo build --release -p ipvlan-bgp --bin ipvlan-bgp --locked
fi
case "$line" in
v3) gobgpd=/usr/bin/gobgpd gobgp=/usr/bin/gobgp ;;
v4) gobgpd=$(command -v gobgpd-v4 || echo gobgpd-v4) gobgp=$(command -v gobgp-v4 || echo gobgp-v4) ;;
*) echo "plugin/build.sh: --gobgp $line: use v3 or v4" >&2; exit 2 ;;
esac
for f in "$driver" "$gobgpd" "$gobgp" /bin/busybox; do
  [ -x "$f" ] || { echo "plugin/build.sh: $f is missing (see the header of this script)" >&2; exit 1; }
done
# (the applet list is read whole: `busybox --list | grep -q` under pipefail
# fails whenever grep exits before busybox has written its last line)
applets=$(/bin/busybox --list)
if ! grep -qx sh <<<"$applets" || ldd /bin/busybox >/dev/null 2>&1; then
  echo "plugin/build.sh: /bin/busybox must be the static build with sh (Debian: busybox-static)" >&2
  exit 1
fi

rm -rf "$out"
root=$out/rootfs
mkdir -p "$root"/{bin,usr/bin,etc,tmp,proc,sys,dev,run/docker/plugins,var/lib/ipvlan-bgp,var/run/docker/netns}
cp plugin/config.json "$out/"
install -m 0755 plugin/entrypoint.sh "$root/entrypoint.sh"
install -m 0755 "$driver" "$root/usr/bin/ipvlan-bgp"
strip --strip-debug "$root/usr/bin/ipvlan-bgp" 2>/dev/null || true
install -m 0755 "$gobgpd" "$root/usr/bin/gobgpd"
install -m 0755 "$gobgp" "$root/usr/bin/gobgp"
install -m 0755 /bin/busybox "$root/bin/busybox"
for app in sh sleep mkdir cat ls ps kill ip; do
  ln -sf busybox "$root/bin/$app"
done
# The shared libraries of the dynamically linked binaries, at the paths
# their loader looks for them.
for bin in "$root/usr/bin/ipvlan-bgp" "$root/usr/bin/gobgpd" "$root/usr/bin/gobgp"; do
  # (gobgpd-v4 is static: ldd then fails, and there is nothing to copy)
  { ldd "$bin" || true; } | awk '/=>/ { print $3 } /^\t\// { print $1 }' | while read -r lib; do
    [ -n "$lib" ] && [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
# Which driver binary this folder holds (size and mtime): the harness reuses
# a folder built beforehand (HARNESS_PLUGIN_DIR) only for that same binary.
stat -L -c '%s %Y' "$driver" >"$out/driver.stamp"
echo "$line" >"$out/gobgp.line"
echo "plugin/build.sh: wrote $out ($(du -sh "$out" | cut -f1))"

if [ -n "$create" ]; then
  docker plugin create "$create" "$out"
fi
