#!/usr/bin/env bash
# Installs what the demo or the tests need on a fresh Debian/Ubuntu machine
# (as root). Idempotent: skips apt when every package is already there.
#
#   ci/install.sh [--dry-run] [demo|full]
#
# demo  what ci/demo.sh builds and plays (scenarios/two-hosts.toml on the
#       emulator engine): gobgpd (with its gobgp CLI), iproute2 (ip),
#       util-linux (nsenter, for a failed run's diagnostics), kmod (the
#       kernel's module autoloading of macvlan, veth and bridge calls its
#       modprobe), protoc and the well-known .proto files (the etcd-client
#       crate compiles etcd's protos with protoc at build time).
# full  (the default; ci/test.sh) everything the test suite needs: the demo's
#       packages, FRR, BIRD, dockerd, etcd (server and etcdctl: the IPAM's
#       store, started by the tests), openssl (the IPAM TLS test makes its
#       certificates), busybox (the plugin's and the dockerd scenarios'
#       image), nftables, binutils (strip, for plugin/build.sh), docker-registry
#       (distribution 2.x: the registry plugin-upgrade's `docker plugin
#       upgrade` pulls from, run by the harness in a namespace), Chromium (the
#       HTML report's test renders a page in it), and QEMU with Debian's
#       kernel for the ipvlan VM (ci/vm/run.sh setup), and the pinned GoBGP v4
#       (gobgpd-v4, gobgp-v4) built with `go install` from the Go module proxy
#       beside Debian's v3 (skipped when /usr/local/bin/gobgpd-v4 already
#       reports the pinned version).
# --dry-run  print the profile, its packages, those missing and the other
#       steps it would take; change nothing (needs no root).
set -euo pipefail

profile=full
dry_run=false
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=true ;;
    demo | full) profile=$arg ;;
    -h | --help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) echo "ci/install.sh: unknown argument '$arg' (use: [--dry-run] [demo|full])" >&2; exit 2 ;;
  esac
done

packages=(gobgpd iproute2 util-linux kmod protobuf-compiler libprotobuf-dev)
# rustc links through cc: a machine with cargo but no C toolchain cannot build.
if ! command -v cc >/dev/null 2>&1; then
  packages+=(gcc libc6-dev)
fi
if [ "$profile" = full ]; then
  packages+=(iputils-ping busybox-static frr bird2 xz-utils tar nftables binutils
    etcd-server etcd-client openssl docker-registry)
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
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if $dry_run; then
  echo "ci/install.sh: profile $profile"
  echo "ci/install.sh: packages: ${packages[*]}"
  echo "ci/install.sh: missing: ${missing[*]:-(none)}"
  if [ "$profile" = full ]; then
    echo "ci/install.sh: would run: ci/vm/run.sh setup (QEMU and Debian's kernel for the ipvlan VM, cached)"
    echo "ci/install.sh: would build GoBGP v4.8.0 with go install (gobgpd-v4, gobgp-v4) unless installed"
  fi
  command -v cargo >/dev/null || echo "ci/install.sh: cargo is not installed (install Rust with rustup)"
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "ci/install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# FRR, BIRD, etcd, dockerd and the registry are started by the harness inside namespaces: stop the
# machine-wide services that installing them may have started (only those we
# just installed; a developer's own services are left alone).
for p in "${missing[@]}"; do
  case "$p" in
    frr) svc=frr ;; bird2) svc=bird ;; etcd-server) svc=etcd ;; docker.io) svc=docker ;;
    docker-registry) svc=docker-registry ;; *) continue ;;
  esac
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done

if [ "$profile" = full ]; then
  # The VM runner (ci/vm/run.sh, for the ipvlan scenarios): QEMU and Debian's
  # kernel, cached. Not in the package list above: installing Debian's
  # qemu-system-x86 would remove a newer qemu-utils where there is one; the
  # runner then unpacks QEMU into its cache instead.
  "$(dirname "$0")/vm/run.sh" setup
fi

if [ "$profile" = full ]; then
  # GoBGP v4 (BFD from v4.6), pinned, built with `go install` from the Go module
  # proxy; Debian ships only the 3.x line. Installed as gobgpd-v4 and gobgp-v4 so
  # Debian's gobgpd/gobgp (v3) stay as they are. Everything Go downloads or
  # builds stays in one cache folder, so a rerun (or a second version) is fast.
  GOBGP_V4=4.8.0
  # The `go` directive of github.com/osrg/gobgp/v4@v4.8.0's go.mod.
  GOBGP_V4_GO=1.25.0
  gobgp_v4_cache=/var/cache/ipvlan-bgp/gobgp-v${GOBGP_V4}
  go_version() { "$1" env GOVERSION 2>/dev/null | sed -n 's/^go\([0-9][0-9.]*\).*/\1/p'; }
  # true when version $1 >= version $2 (dotted numbers)
  version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }
  gobgp_v4_installed() {
    /usr/local/bin/gobgpd-v4 --version 2>/dev/null | grep -qx "gobgpd version ${GOBGP_V4}" \
      && /usr/local/bin/gobgp-v4 --version 2>/dev/null | grep -qx "gobgp version ${GOBGP_V4}"
  }
  if ! gobgp_v4_installed; then
    t0=$(date +%s)
    # A go older than the module's `go` line still builds it when it is 1.21 or
    # later: it fetches the newer toolchain itself (a Go module on the proxy).
    # Go 1.20 and older cannot, so Debian 12's golang-go (1.19) is not enough.
    if ! command -v go >/dev/null 2>&1; then
      candidate=$(apt-cache policy golang-go 2>/dev/null | sed -n 's/^ *Candidate: *\([0-9]*:\)\{0,1\}\([0-9][0-9.]*\).*/\2/p')
      if [ -n "$candidate" ] && version_ge "$candidate" 1.21; then
        echo "ci/install.sh: installing golang-go $candidate (to build GoBGP v${GOBGP_V4})"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends golang-go ca-certificates >/dev/null
      else
        echo "ci/install.sh: GoBGP v${GOBGP_V4} needs Go ${GOBGP_V4_GO} (or Go 1.21+, which fetches it), and there is no go" \
          "command; this system's golang-go is ${candidate:-not available}. Install Go from https://go.dev/dl/ and rerun." >&2
        exit 1
      fi
    fi
    gov=$(go_version go)
    if [ -z "$gov" ] || ! version_ge "$gov" 1.21; then
      echo "ci/install.sh: GoBGP v${GOBGP_V4} needs Go ${GOBGP_V4_GO} (or Go 1.21+, which fetches it); $(command -v go) is ${gov:-unknown}." \
        "Install Go from https://go.dev/dl/ and rerun." >&2
      exit 1
    fi
    mkdir -p "$gobgp_v4_cache"
    echo "ci/install.sh: building GoBGP v${GOBGP_V4} with go $gov (cache $gobgp_v4_cache)"
    (
      export GOPATH="$gobgp_v4_cache/gopath" GOMODCACHE="$gobgp_v4_cache/gopath/pkg/mod"
      export GOCACHE="$gobgp_v4_cache/gocache" GOBIN="$gobgp_v4_cache/bin"
      export GOFLAGS=-modcacherw GOTOOLCHAIN=auto CGO_ENABLED=0
      go install "github.com/osrg/gobgp/v4/cmd/gobgpd@v${GOBGP_V4}" "github.com/osrg/gobgp/v4/cmd/gobgp@v${GOBGP_V4}"
    )
    install -m 0755 "$gobgp_v4_cache/bin/gobgpd" /usr/local/bin/gobgpd-v4
    install -m 0755 "$gobgp_v4_cache/bin/gobgp" /usr/local/bin/gobgp-v4
    gobgp_v4_installed || { echo "ci/install.sh: /usr/local/bin/gobgpd-v4 does not report version ${GOBGP_V4}" >&2; exit 1; }
    echo "ci/install.sh: GoBGP v${GOBGP_V4} installed in $(( $(date +%s) - t0 )) s"
  fi
fi

command -v cargo >/dev/null || { echo "ci/install.sh: cargo is not installed (install Rust with rustup)"; exit 1; }
if [ "$profile" = full ]; then
  echo "ci/install.sh: ready for the full profile ($(gobgpd --version); $(gobgpd-v4 --version))"
else
  echo "ci/install.sh: ready for the demo profile ($(gobgpd --version))"
fi
