#!/usr/bin/env bash
# screen.sh DESIGN_H1 [DESIGN_H2]: builds the fabric of lib.sh, attaches c1
# to H1 with DESIGN_H1 and c2 to H2 with DESIGN_H2 (default: the same), then
#   steady   FLOWS UDP flows c1<->c2 (INTERVAL s apart, DURATION s): echoes,
#            per-uplink packet shares from the uplinks' counters
#   for U in up1 up2 on H1:
#     U-down      ip link set U down on H1; only the kernel reacts
#     U-conv      + what BGP would do once the session over U is gone: the
#                 ToR behind U drops its route to H1's block, H2 keeps one hop
#     U-back      U up again, routes as in steady: shares again
# FAM=6 runs the flows over IPv6 (hosts keep their IPv6 addresses on link
# down, keep_addr_on_down=1, as a host whose network manager re-adds them). Prints one JSON line per step.
set -u
. "$(dirname "$0")/lib.sh"
D1=$1 D2=${2:-$1}
N=${FLOWS:-16} IV=${INTERVAL:-0.01} DUR=${DURATION:-2} FAM=${FAM:-4}
if [ "$FAM" = 6 ]; then SRC=fd00:23:1::10 DST=fd00:23:2::10; else SRC=10.23.1.10 DST=10.23.2.10; fi
fabric
attach_host "$D1" 1
attach_ctr "$D1" 1 c1 10.23.1.10
attach_host "$D2" 2
attach_ctr "$D2" 2 c2 10.23.2.10
[ -n "${DU_DEBUG:-}" ] && { for n in H1 H2; do ipn $n -d link; ipn $n route; ipn $n rule; done; }

step() { # step NAME
    local b a j
    b=$(snap)
    j=$(flows c1 $SRC c2 $DST "$N" 40000 "$IV" "$DUR" | tail -1)
    a=$(snap)
    $PY - "$1" "$D1" "$D2" "$FAM" "$j" "$(share "$b" "$a")" <<'PY'
import json, sys
name, d1, d2, fam, j, s = sys.argv[1:]
j = json.loads(j); s = json.loads(s)
print(json.dumps({"step": name, "h1": d1, "h2": d2, "ipv": int(fam), "sent": j["sent"], "echoed": j["echoed"],
  "flows_with_loss": j["flows_with_loss"], "flows": len(j["flows"]),
  "flows_losing_forward": j["flows_losing_forward"], "flows_losing_back": j["flows_losing_back"],
  "longest_outage_ms": max(f["longest_outage_ms"] for f in j["flows"]),
  "h1_tx_up1_pct": s["h1_tx_up1_pct"], "h1_rx_up1_pct": s["h1_rx_up1_pct"],
  "h2_tx_up1_pct": s["h2_tx_up1_pct"], "h2_rx_up1_pct": s["h2_rx_up1_pct"], "counters": s}))
PY
}
h2_both() {
    ipn H2 route replace 10.23.1.0/24 proto $PROTO nexthop via 10.200.21.2 dev up1 nexthop via 10.200.22.2 dev up2
    ipn H2 -6 route replace fd00:23:1::/64 proto $PROTO nexthop via fd00:200:21::2 dev up1 nexthop via fd00:200:22::2 dev up2
}
echo_start c2 $DST "$N" 40000
# warm up: neighbours resolved, so the first step does not count ARP/ND
flows c1 $SRC c2 $DST "$N" 40000 "$IV" 0.3 >/dev/null
step steady
for U in up1 up2; do
    T=T${U#up} K=${U#up}
    O=$((3 - K))
    ipn H1 link set $U down
    step $U-down
    ipn $T route del 10.23.1.0/24
    ipn $T -6 route del fd00:23:1::/64 2>/dev/null
    ipn H2 route replace 10.23.1.0/24 proto $PROTO via 10.200.2$O.2 dev up$O
    ipn H2 -6 route del fd00:23:1::/64
    ipn H2 -6 route replace fd00:23:1::/64 proto $PROTO via fd00:200:2$O::2 dev up$O
    step $U-conv
    ipn H1 link set $U up
    if [ $K = 1 ]; then ipn T1 route replace 10.23.1.0/24 via "$T1_TO_H1"; else ipn T2 route replace 10.23.1.0/24 via "$T2_TO_H1"; fi
    ipn $T -6 route replace fd00:23:1::/64 via fd00:200:1$K::1 2>/dev/null
    ipn H2 -6 route del fd00:23:1::/64
    h2_both
    # H1's own next hop through U: the kernel revives it on link up (e6)
    sleep 0.5
    step $U-back
done
