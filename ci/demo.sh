#!/usr/bin/env bash
# The demo: installs what it needs (ci/install.sh demo: gobgpd, iproute2),
# builds, and plays the two-host scenario (the original project's example)
# with real gobgpd and the driver in network namespaces. Run as root:
#   sudo ci/demo.sh [more harness run flags, e.g. --html target/demo.html]
# The harness line below is the README's quick start, word for word
# (harness/tests/docs/ checks that, and runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install.sh demo
cargo build --workspace --release --locked
exec target/release/harness run scenarios/two-hosts.toml --json target/demo-report.json "$@"
