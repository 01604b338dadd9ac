#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian/Ubuntu
# machine (as root): gobgpd (and its gobgp CLI), iproute2, FRR, BIRD,
# Chromium (the HTML report's test renders a page in it), binutils (strip,
# for plugin/build.sh), etcd (server and etcdctl: the IPAM's store, started
# by the tests), openssl (the IPAM TLS test makes its certificates), protoc
# and the well-known .proto files (the etcd-client crate compiles etcd's
# protos with protoc at build time).
# Idempotent: skips apt when every package is already there.
set -euo pipefail

packages=(gobgpd iproute2 util-linux iputils-ping busybox-static frr bird2 kmod xz-utils tar nftables binutils
  etcd-server etcd-client openssl protobuf-compiler libprotobuf-dev)
# Docker: Debian's docker.io, unless a Docker is already installed (GitHub's
# Ubuntu images ship Moby's docker-ce/containerd.io, which docker.io would
# conflict with; the harness only needs a dockerd binary of 20.10 or later).
if ! command -v dockerd >/dev/null 2>&1; then
  packages+=(docker.io)
fi
# Headless Chromium: Debian's chromium, unless a Chromium or Chrome is
# already there (GitHub's Ubuntu images ship Google Chrome; Ubuntu's chromium
# package is only a snap wrapper).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
  && ! command -v google-chrome >/dev/null 2>&1; then
  # (--no-install-recommends below: name a font, or the pages render without text.)
  packages+=(chromium fonts-liberation)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ci/install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# FRR, BIRD, etcd and dockerd are started by the harness inside namespaces: stop the
# machine-wide services that installing them may have started (only those we
# just installed; a developer's own services are left alone).
for p in "${missing[@]}"; do
  case "$p" in
    frr) svc=frr ;; bird2) svc=bird ;; etcd-server) svc=etcd ;; docker.io) svc=docker ;; *) continue ;;
  esac
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done

# The VM runner (ci/vm/run.sh, for the ipvlan scenarios): QEMU and Debian's
# kernel, cached. Not in the package list above: installing Debian's
# qemu-system-x86 would remove a newer qemu-utils where there is one; the
# runner then unpacks QEMU into its cache instead.
"$(dirname "$0")/vm/run.sh" setup

command -v cargo >/dev/null || { echo "ci/install.sh: cargo is not installed (install Rust with rustup)"; exit 1; }
echo "ci/install.sh: ready ($(gobgpd --version))"
