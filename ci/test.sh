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
# Only the skips listed (with their reasons) in ci/expected-skips may happen;
# any other skip fails its test.
export HARNESS_EXPECTED_SKIPS="$PWD/ci/expected-skips"
# Scenario tests mostly wait on BGP timers: run more of them at once than there are cores.
RUST_TEST_THREADS=${RUST_TEST_THREADS:-4} cargo test --workspace --locked -- --nocapture

# ipvlan for real: this machine's kernel may have none, so the scenarios that
# require it also run in one QEMU VM booting Debian's stock kernel (ci/vm/).
# Under CI a VM that cannot boot fails the run; elsewhere it is a visible skip.
# Inside the VM no ipvlan scenario may skip (the harness sets HARNESS_REQUIRE).
mapfile -t ipvlan_scenarios < <(target/debug/harness list --requires ipvlan --engine emulator)
if [ "${#ipvlan_scenarios[@]}" -eq 0 ]; then
  echo "ci/test.sh: harness list --requires ipvlan --engine emulator found no scenario" >&2
  exit 1
fi
# Each run's HTML page (index.html + one per scenario) goes next to its JSON.
target/debug/harness run --vm --json target/vm-reports --html target/vm-reports \
  --junit target/vm-junit.xml "${ipvlan_scenarios[@]}"
# ipvlan L3 (the default data plane) with real dockerd, in the VM as well.
mapfile -t ipvlan_dockerd < <(target/debug/harness list --requires ipvlan --engine dockerd)
target/debug/harness run --vm --engine dockerd --json target/vm-reports-dockerd \
  --html target/vm-reports-dockerd --junit target/vm-junit-dockerd.xml "${ipvlan_dockerd[@]}"

# The driver's privileged tests against a kernel with ipvlan (and 802.1Q):
# the same test binary, run in the VM.
socket_test=$(cargo test -p ipvlan-bgp --test socket --locked --no-run --message-format=json 2>/dev/null \
  | grep '"name":"socket"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
rc=0
# Before the socket tests: the VM's kernel must really create ipvlan and
# 802.1Q links, or those tests would only check the error paths.
ci/vm/run.sh -- bash ci/vm/require-kernel.sh ipvlan vlan -- "$socket_test" --test-threads 1 || rc=$?
if [ "$rc" -eq 125 ] && [ "${CI:-}" != true ]; then
  echo "SKIPPED the driver's socket tests in the VM: no VM could boot here (under CI=true this fails)"
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi
