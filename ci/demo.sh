#!/usr/bin/env bash
# The demo: installs what it needs, builds, and plays the two-host scenario
# (the original project's example) with real gobgpd and the driver in
# network namespaces. Run as root:  sudo ci/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install.sh
cargo build --workspace --release --locked
exec target/release/harness run scenarios/two-hosts.toml --json target/demo-report.json "$@"
