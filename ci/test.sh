#!/usr/bin/env bash
# The test command: installs what the tests need, builds, checks formatting
# and lints, then runs every test (unit tests, privileged driver tests, and
# one test per scenario file). Run as root on a fresh Debian/Ubuntu machine:
#   sudo ci/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install.sh full

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The scenario tests start the ipvlan-bgp binary: build every target first.
cargo build --workspace --all-targets --locked
# The driver's socket tests run in the VM too: their binary's path. With
# --workspace, as built above (`-p ipvlan-bgp` alone would unify features
# otherwise and relink the driver binary).
socket_test=$(cargo test --workspace --test socket --locked --no-run --message-format=json 2>/dev/null \
  | grep '"name":"socket"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
# The managed plugin's folder, built once from the driver binary for every
# plugin scenario here and in the VMs (the harness checks it holds the same
# binary), with gobgpd 4.x embedded: the scenarios' default line. A run on
# 3.x (the plugin scenario's second line) builds its own folder.
plugin/build.sh --driver target/debug/ipvlan-bgp --out target/plugin-ci --gobgp v4 >/dev/null
export HARNESS_PLUGIN_DIR="$PWD/target/plugin-ci"
# Only the skips listed (with their reasons, per kernel) in ci/expected-skips
# may happen; any other skip fails its test. Every test appends its outcome
# to a trial log, one per kernel, and `harness skips check` at the end fails
# on a listed skip that no longer happens.
export HARNESS_EXPECTED_SKIPS="$PWD/ci/expected-skips"
rm -rf target/trials target/vm target/vm-no-ipvlan
target/debug/harness skips start target/trials/host.jsonl
export HARNESS_TRIAL_LOG="$PWD/target/trials/host.jsonl"
# Scenario tests mostly wait on BGP timers: run more of them at once than there are cores.
RUST_TEST_THREADS=${RUST_TEST_THREADS:-4} cargo test --workspace --locked -- --nocapture

# Another kernel, in QEMU VMs booting Debian's stock kernel (ci/vm/): this
# machine's kernel may have no ipvlan, and a kernel without ipvlan is needed
# where it has one. One boot per kernel runs all of that kernel's work
# (ci/vm/suite.sh): the ipvlan scenarios on the emulator and on real dockerd
# and the driver's socket tests; and, booted without ipvlan, the scenarios
# that check its absence. One VM after the other: under emulation two
# guests on two cores starve each other (dockerd gives containerd 15 s to
# start). Under CI a VM that cannot boot fails the run; elsewhere it is a
# visible skip.
vm_part() {
  local dir=$1 rc=0
  shift
  ci/vm/run.sh --out "$dir" "$@" || rc=$?
  if [ "$rc" -eq 125 ] && [ "${CI:-}" != true ]; then
    echo "SKIPPED the VM part $dir: no VM could boot here (under CI=true this fails)"
    return 0
  fi
  return "$rc"
}
vm_started=$(date +%s)
vm_rc=0
vm_part target/vm -- bash ci/vm/suite.sh ipvlan "$socket_test" || vm_rc=1
vm_part target/vm-no-ipvlan --deny-module ipvlan -- bash ci/vm/suite.sh no-ipvlan || vm_rc=1
echo "ci/test.sh: the VM part took $(($(date +%s) - vm_started)) s"

# Every skip listed for its kernel, every listed skip still happening (a VM
# that did not boot outside CI left no log: its tests did not run).
logs=(target/trials/host.jsonl)
for f in target/vm/trials.jsonl target/vm-no-ipvlan/trials.jsonl; do
  [ -f "$f" ] && logs+=("$f")
done
skips_rc=0
target/debug/harness skips check --expected ci/expected-skips "${logs[@]}" || skips_rc=1
# The VM part's failures, last, where a CI log's reader looks first.
for d in target/vm target/vm-no-ipvlan; do
  if [ -s "$d/failures.txt" ]; then
    echo "ci/test.sh: what failed in $d (its logs: $d/runs, $d/set-*.log):"
    sed 's/^/  /' "$d/failures.txt"
  fi
done
[ "$vm_rc" -eq 0 ] && [ "$skips_rc" -eq 0 ]
