#!/usr/bin/env bash
# Checks that this kernel really creates the given link kinds (ipvlan, vlan,
# macvlan) in a scratch namespace, or with `no-KIND` that it really cannot,
# then runs the command after `--`.
# Exits 1, naming the kind, when one cannot be created (or can, for no-KIND):
# a kernel whose modules did not load must fail the run, not turn the tests
# that need it into skips; a kernel meant to lack ipvlan must lack it.
#   bash ci/vm/require-kernel.sh ipvlan vlan -- CMD ARGS...
#   bash ci/vm/require-kernel.sh no-ipvlan -- CMD ARGS...
set -euo pipefail
kinds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do kinds+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
ns="ibk-$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip -n "$ns" link add kc0 type veth peer name kc1
for want in "${kinds[@]}"; do
  k=${want#no-}
  case "$k" in
    ipvlan) args=(type ipvlan mode l3) ;;
    macvlan) args=(type macvlan mode bridge) ;;
    vlan) args=(type vlan id 10) ;;
    *) echo "require-kernel: unknown kind $k" >&2; exit 2 ;;
  esac
  if err=$(ip -n "$ns" link add link kc0 name "k-$k" "${args[@]}" 2>&1); then
    if [ "$want" != "$k" ]; then
      echo "require-kernel: this kernel ($(uname -r)) creates $k links, but must not have $k here" >&2
      exit 1
    fi
    echo "require-kernel: $k links work on $(uname -r)"
  elif [ "$want" != "$k" ]; then
    case "$err" in
      *"Unknown device type"* | *"not supported"*) ;;
      *) echo "require-kernel: cannot tell whether $(uname -r) has $k: $err" >&2; exit 1 ;;
    esac
    echo "require-kernel: $(uname -r) has no $k, as required ($err)"
  else
    echo "require-kernel: this kernel ($(uname -r)) cannot create $k links: $err" >&2
    exit 1
  fi
done
ip netns del "$ns"
trap - EXIT
[ $# -eq 0 ] || exec "$@"
