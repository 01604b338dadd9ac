#!/usr/bin/env bash
# e5-hash.sh [DESIGN]: how the host spreads container flows over its two
# uplinks, read from the uplinks' packet counters (ip -s link: the
# statistics files). RUNS times each: 16 UDP flows c1->c2 (distinct ports),
#   connected     sockets connect()ed, as most applications do
#   unconnected   sendto() from unconnected sockets
# with net.ipv4.fib_multipath_hash_policy=1 (L4) on the hosts, then once with
# policy 0 (L3). Prints per run the share of H1's transmitted packets on up1
# and how many flows that is. DESIGN defaults to macvlan-int.
set -u
. "$(dirname "$0")/lib.sh"
D=${1:-macvlan-int} RUNS=${RUNS:-10} N=${FLOWS:-16}
fabric
attach_host "$D" 1; attach_ctr "$D" 1 c1 10.23.1.10
attach_host "$D" 2; attach_ctr "$D" 2 c2 10.23.2.10
echo_start c2 10.23.2.10 "$N" 40000
flows c1 10.23.1.10 c2 10.23.2.10 "$N" 40000 0.02 0.3 >/dev/null
measure() { # measure LABEL: one run of N flows, 1 s; prints the shares
    local b a
    b=$(snap)
    FLOW_OPTS=$2 flows c1 10.23.1.10 c2 10.23.2.10 "$N" 40000 0.02 1 >/dev/null
    a=$(snap)
    share "$b" "$a" | $PY -c '
import json,sys; j=json.load(sys.stdin); n=int(sys.argv[2])
print("%-28s H1 tx on up1 %5.1f %% (%2d of %d flows)   H2 tx on up1 %5.1f %%" % (sys.argv[1], j["h1_tx_up1_pct"], round(j["h1_tx_up1_pct"]*n/100), n, j["h2_tx_up1_pct"]))' "$1" "$N"
}
for mode in connected unconnected; do
    opt=; [ $mode = unconnected ] && opt=--unconnected
    for r in $(seq "$RUNS"); do measure "policy 1, $mode, run $r" "$opt"; done
done
for h in H1 H2; do nx $h sysctl -qw net.ipv4.fib_multipath_hash_policy=0; done
measure "policy 0, connected" ""
measure "policy 0, unconnected" "--unconnected"
echo
echo "The chance that one uplink carries less than 25 % of N flows when each"
echo "flow picks an uplink at random (binomial, p = 1/2):"
$PY -c '
from math import comb
for n in (16, 32, 64, 128):
    k = -(-n // 4)  # at least 25 %: k flows
    p = sum(comb(n, i) for i in range(0, k)) / 2**n * 2
    print("  N = %3d: %.2g (%.3f %%)" % (n, p, 100 * p))'
