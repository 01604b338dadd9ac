#!/usr/bin/env bash
# e4-failure.sh DESIGN FAILURE: 16 UDP flows c1<->c2 (10 ms) for 6 s; at
# t=1 s H1's uplink 1 fails, at t=1+DETECT s the routes change as BGP would
# once the session over that uplink is declared down (BFD later; DETECT
# stands for it), at t=3.5 s the uplink returns, at t=3.5+DETECT the routes
# come back. FAILURE is
#   admin    ip link set up1 down on H1 (the kernel marks H1's next hop dead)
#   carrier  T1's end of the link goes down: H1's up1 loses carrier
#            (a dead ToR or a cut cable)
#   nft      T1 silently drops everything on that link (link stays up)
# The flows are sent from unconnected sockets (FLOW_OPTS=--unconnected, the
# default here), so both hosts hash them by their 5-tuple: the same flows
# take the same paths in every run (see e5-hash.sh). An echo later than 1 s
# counts as lost.
# IGNORE_LINKDOWN=1 sets net.ipv4/ipv6 conf all.ignore_routes_with_linkdown
# on the hosts. Prints the event times and, per flow, the loss and the
# longest outage; the JSON goes to $OUT/e4-DESIGN-FAILURE.json.
set -u
. "$(dirname "$0")/lib.sh"
D=$1 F=$2 DETECT=${DETECT:-0.3} N=${FLOWS:-16} IV=${INTERVAL:-0.01}
fabric
attach_host "$D" 1; attach_ctr "$D" 1 c1 10.23.1.10
attach_host "$D" 2; attach_ctr "$D" 2 c2 10.23.2.10
if [ "${IGNORE_LINKDOWN:-0}" = 1 ]; then
    for h in H1 H2; do
        nx $h sysctl -qw net.ipv4.conf.all.ignore_routes_with_linkdown=1 net.ipv6.conf.all.ignore_routes_with_linkdown=1
        for i in up1 up2; do nx $h sysctl -qw net.ipv4.conf.$i.ignore_routes_with_linkdown=1 net.ipv6.conf.$i.ignore_routes_with_linkdown=1; done
    done
fi
echo_start c2 10.23.2.10 "$N" 40000
flows c1 10.23.1.10 c2 10.23.2.10 "$N" 40000 "$IV" 0.3 >/dev/null

fail() {
    case $F in
        admin) ipn H1 link set up1 down ;;
        carrier) ipn T1 link set h1 down ;;
        nft) nx T1 nft -f - <<'NFT'
table inet du_fail {
    chain in { type filter hook prerouting priority -300; iifname "h1" drop; }
    chain out { type filter hook postrouting priority 300; oifname "h1" drop; }
}
NFT
            ;;
    esac
}
heal() {
    case $F in
        admin) ipn H1 link set up1 up ;;
        carrier) ipn T1 link set h1 up ;;
        nft) nx T1 nft delete table inet du_fail ;;
    esac
}
# what BGP does when the session over up1 goes down / comes back; every
# change is a replace in place (e6 measures that it loses nothing)
converge_down() {
    ipn H1 route replace 10.23.2.0/24 proto $PROTO via 10.200.12.2 dev up2
    ipn H2 route replace 10.23.1.0/24 proto $PROTO via 10.200.22.2 dev up2
    ipn T1 route del 10.23.1.0/24 2>/dev/null
}
converge_up() {
    ipn T1 route replace 10.23.1.0/24 via 10.200.11.1
    ipn H1 route replace 10.23.2.0/24 proto $PROTO nexthop via 10.200.11.2 dev up1 nexthop via 10.200.12.2 dev up2
    ipn H2 route replace 10.23.1.0/24 proto $PROTO nexthop via 10.200.21.2 dev up1 nexthop via 10.200.22.2 dev up2
}
b=$(snap)
js=$OUT/e4-$D-$F.json
# one start time for the sender and the events; LEAD covers the sender's
# start (under the VM's emulation python takes seconds)
t0=$(awk -v now="$EPOCHREALTIME" -v lead="${LEAD:-0.5}" 'BEGIN { printf "%.6f", now + lead }')
nx c1 $PY "$DU_DIR/udpflows.py" send --src 10.23.1.10 --dst 10.23.2.10 --port-base 40000 \
    --flows "$N" --interval "$IV" --duration 6 --json "$js" ${FLOW_OPTS---unconnected} --start-at "$t0" >/dev/null &
spid=$!
PIDS+=("$spid")
# at T: sleep until t0+T, print the time (bash's own clock: no process to
# start, which under the VM's emulation costs ~0.1 s each)
at() {
    local d
    d=$(awk -v t0="$t0" -v t="$1" -v now="$EPOCHREALTIME" 'BEGIN { d = t0 + t - now; print (d > 0 ? d : 0) }')
    sleep "$d"
    echo "$EPOCHREALTIME"
}
ev=()
ev+=("fail=$(at 1; fail)")
ipn H1 route show 10.23.2.0/24 | tr '\n\t' '  ' >"$OUT/e4-route-after-fail"
ev+=("converge_down=$(at "$(awk -v d="$DETECT" 'BEGIN { print 1 + d }')"; converge_down)")
ev+=("heal=$(at 3.5; heal)")
sleep 0.05
ipn H1 route show 10.23.2.0/24 | tr '\n\t' '  ' >"$OUT/e4-route-after-heal"
ev+=("converge_up=$(at "$(awk -v d="$DETECT" 'BEGIN { print 3.5 + d }')"; converge_up)")
wait "$spid"
a=$(snap)
echo_split "$js" >"$js.split"
$PY - "$js" "$D" "$F" "$DETECT" "$(share "$b" "$a")" "$(cat "$OUT/e4-route-after-fail")" "$(cat "$OUT/e4-route-after-heal")" "${ev[@]}" <<'PY'
import json, sys
js, d, f, det, sh, rfail, rheal, *ev = sys.argv[1:]
j = json.loads(open(js + ".split").read())
t0 = j["start_epoch"]
evs = {k: round((float(v.split()[-1]) - t0) * 1000) for k, v in (e.split("=", 1) for e in ev)}
iv = j["interval_ms"]
per = []
for fl in j["flows"]:
    per.append({"flow": fl["flow"], "lost": fl["lost"], "outage_ms": fl["longest_outage_ms"], "first_lost_ms": fl["first_lost_ms"],
                "fwd": fl["forward_lost"], "back": fl["back_lost"], "fwd_outage_ms": fl["forward_longest_outage_ms"]})
print(json.dumps({"design": d, "failure": f, "detect_s": float(det), "events_ms": evs,
  "sent": j["sent"], "echoed": j["echoed"], "late": j["late"], "flows_with_loss": j["flows_with_loss"],
  "outages_ms": sorted(p["outage_ms"] for p in per if p["lost"]),
  "lost_per_flow": [p["lost"] for p in per],
  "forward_lost_per_flow": [p["fwd"] for p in per], "back_lost_per_flow": [p["back"] for p in per],
  "counters": json.loads(sh),
  "first_lost_ms": [p["first_lost_ms"] for p in per],
  "gaps_ms": sorted({tuple(g) for fl in j["flows"] for g in fl["gaps_ms"]}),
  "h1_route_after_fail": rfail.strip(), "h1_route_after_heal": rheal.strip()}))
PY
