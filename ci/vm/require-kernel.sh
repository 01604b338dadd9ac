#!/usr/bin/env bash
# Checks that this kernel really creates the given link kinds (ipvlan, vlan,
# macvlan) in a scratch namespace, then runs the command after `--`.
# Exits 1, naming the kind, when one cannot be created: a kernel whose modules
# did not load must fail the run, not turn the tests that need it into skips.
#   bash ci/vm/require-kernel.sh ipvlan vlan -- CMD ARGS...
set -euo pipefail
kinds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do kinds+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
ns="ibk-$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip -n "$ns" link add kc0 type veth peer name kc1
for k in "${kinds[@]}"; do
  case "$k" in
    ipvlan) args=(type ipvlan mode l3) ;;
    macvlan) args=(type macvlan mode bridge) ;;
    vlan) args=(type vlan id 10) ;;
    *) echo "require-kernel: unknown kind $k" >&2; exit 2 ;;
  esac
  if ! err=$(ip -n "$ns" link add link kc0 name "k-$k" "${args[@]}" 2>&1); then
    echo "require-kernel: this kernel ($(uname -r)) cannot create $k links: $err" >&2
    exit 1
  fi
  echo "require-kernel: $k links work on $(uname -r)"
done
ip netns del "$ns"
trap - EXIT
[ $# -eq 0 ] || exec "$@"
