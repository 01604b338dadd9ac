# shellcheck shell=bash
# Shared pieces of the dual-uplink experiments: a two-host, two-ToR fabric in
# network namespaces, the container attachments under test, UDP flows and
# per-uplink counters. Sourced by the e*.sh scripts; runs natively (macvlan,
# veth, bridge, multipath) and inside ci/vm/run.sh (ipvlan, dummy, bond, VRF).
#
#            T1 ───────────────┐            T2 ──────────────┐
#   10.200.11.2/30     10.200.21.2/30  10.200.12.2/30   10.200.22.2/30
#        │ up1               │ up1          │ up2             │ up2
#   10.200.11.1 ── H1 ── 10.200.12.1   10.200.21.1 ── H2 ── 10.200.22.1
#        c1* 10.23.1.0/24                    c2* 10.23.2.0/24
#
# T1 and T2 are not connected to each other (two independent L3 ToRs, as in
# RFC 7938). The routes BGP would install are static here, written the way
# the driver would write them (proto 73): on each host one route to the other
# host's containers with two next hops; on each ToR one route per host block.
# Every namespace name starts with a per-run prefix; everything is removed on
# exit; only processes started here are killed, by pid.

set -u
# the system python: under the VM a pyenv shim costs seconds per start
PY=/usr/bin/python3
DU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P=${DU_PREFIX:-du$(printf %04x $((RANDOM)))}
PROTO=73
NS_LIST=()
PIDS=()
OUT=${DU_OUT:-${IBVM_OUT:-}}
OUT_TEMP=
if [ -z "$OUT" ]; then OUT=/tmp/$P-out OUT_TEMP=1; fi
mkdir -p "$OUT"

log() { printf '%s %s\n' "$(date +%T.%3N)" "$*" >&2; }
ns() { echo "$P-$1"; }
nx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
ipn() { local n=$1; shift; ip -n "$(ns "$n")" "$@"; }

du_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
    local n
    for n in "${NS_LIST[@]}"; do ip netns del "$n" 2>/dev/null; done
    NS_LIST=()
    if [ -n "$OUT_TEMP" ]; then rm -rf "$OUT"; fi
}
trap du_cleanup EXIT
trap 'exit 130' INT TERM

ns_new() {
    local n
    n=$(ns "$1")
    ip netns add "$n"
    NS_LIST+=("$n")
    ip -n "$n" link set lo up
    nx "$1" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1 \
        net.ipv4.conf.all.rp_filter=${DU_RP_FILTER:-1} net.ipv4.conf.default.rp_filter=${DU_RP_FILTER:-1} \
        net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.all.keep_addr_on_down=1 net.ipv6.conf.default.keep_addr_on_down=1
}

# veth between two namespaces: wire A DEVA B DEVB
wire() {
    ipn "$1" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
    ipn "$1" link set "$2" up
    ipn "$3" link set "$4" up
}

# The fabric. UPLINKS=routed (default): each uplink its own /30 to one ToR.
# UPLINKS_H1=bond-MODE: H1's two uplinks in a bond (MODE active-backup or
# balance-xor), both ToRs in one subnet 10.200.10.0/24 with H1 (which needs
# the ToRs to share that L2 segment: MLAG; here they do not).
fabric() {
    local h t
    for h in H1 H2 T1 T2; do ns_new $h; done
    wire H2 up1 T1 h2
    wire H2 up2 T2 h2
    ipn H2 addr add 10.200.21.1/30 dev up1
    ipn H2 addr add 10.200.22.1/30 dev up2
    ipn T1 addr add 10.200.21.2/30 dev h2
    ipn T2 addr add 10.200.22.2/30 dev h2
    ipn H2 addr add fd00:200:21::1/64 dev up1
    ipn H2 addr add fd00:200:22::1/64 dev up2
    ipn T1 addr add fd00:200:21::2/64 dev h2
    ipn T2 addr add fd00:200:22::2/64 dev h2
    case ${UPLINKS_H1:-routed} in
        routed)
            wire H1 up1 T1 h1
            wire H1 up2 T2 h1
            ipn H1 addr add 10.200.11.1/30 dev up1
            ipn H1 addr add 10.200.12.1/30 dev up2
            ipn T1 addr add 10.200.11.2/30 dev h1
            ipn T2 addr add 10.200.12.2/30 dev h1
            ipn H1 addr add fd00:200:11::1/64 dev up1
            ipn H1 addr add fd00:200:12::1/64 dev up2
            ipn T1 addr add fd00:200:11::2/64 dev h1
            ipn T2 addr add fd00:200:12::2/64 dev h1
            H1_GW1=10.200.11.2 H1_GW2=10.200.12.2 H1_DEV1=up1 H1_DEV2=up2
            T1_TO_H1=10.200.11.1 T2_TO_H1=10.200.12.1
            ;;
        bond-*)
            local mode=${UPLINKS_H1#bond-}
            ipn H1 link add bond0 type bond mode "$mode" miimon 50 ${BOND_OPTS:-}
            ipn H1 link add up1 type veth peer name h1 netns "$(ns T1)"
            ipn H1 link add up2 type veth peer name h1 netns "$(ns T2)"
            ipn H1 link set up1 master bond0
            ipn H1 link set up2 master bond0
            ipn H1 link set bond0 up
            ipn H1 link set up1 up
            ipn H1 link set up2 up
            ipn T1 link set h1 up
            ipn T2 link set h1 up
            ipn H1 addr add 10.200.10.1/24 dev bond0
            ipn T1 addr add 10.200.10.2/24 dev h1
            ipn T2 addr add 10.200.10.3/24 dev h1
            H1_GW1=10.200.10.2 H1_GW2=10.200.10.3 H1_DEV1=bond0 H1_DEV2=bond0
            T1_TO_H1=10.200.10.1 T2_TO_H1=10.200.10.1
            ;;
    esac
    # what the ToRs learned by BGP
    ipn T1 route add 10.23.1.0/24 via "$T1_TO_H1"
    ipn T2 route add 10.23.1.0/24 via "$T2_TO_H1"
    ipn T1 route add 10.23.2.0/24 via 10.200.21.1
    ipn T2 route add 10.23.2.0/24 via 10.200.22.1
    ipn T1 -6 route add fd00:23:1::/64 via fd00:200:11::1 2>/dev/null || true
    ipn T2 -6 route add fd00:23:1::/64 via fd00:200:12::1 2>/dev/null || true
    ipn T1 -6 route add fd00:23:2::/64 via fd00:200:21::1
    ipn T2 -6 route add fd00:23:2::/64 via fd00:200:22::1
    # what each host's driver installed from the two equal BGP paths
    ipn H1 route add 10.23.2.0/24 proto $PROTO nexthop via "$H1_GW1" dev "$H1_DEV1" nexthop via "$H1_GW2" dev "$H1_DEV2"
    ipn H2 route add 10.23.1.0/24 proto $PROTO nexthop via 10.200.21.2 dev up1 nexthop via 10.200.22.2 dev up2
    ipn H2 -6 route add fd00:23:1::/64 proto $PROTO nexthop via fd00:200:21::2 dev up1 nexthop via fd00:200:22::2 dev up2
    if [ "${UPLINKS_H1:-routed}" = routed ]; then
        ipn H1 -6 route add fd00:23:2::/64 proto $PROTO nexthop via fd00:200:11::2 dev up1 nexthop via fd00:200:12::2 dev up2
    fi
}


# The host side of a design, once per host: attach_host DESIGN H (1|2).
# Sets PARENT (what container links hang off) and, for L2 data planes, the
# shim holding the gateway 10.23.H.1/24.
attach_host() {
    local d=$1 h=$2 H=H$2
    case $d in
        *-up1) PARENT=up1 ;;
        *-dummy | *-dummy-vrf)
            ipn $H link add dp type dummy
            ipn $H link set dp up
            PARENT=dp
            ;;
        *-veth* | *-int | *-gw | l3-bond* | l3s-veth*)
            if [[ $d == l3-bond* ]]; then PARENT=bond0; else
                # the internal parent: a veth pair inside the host, pa carries
                # the container links, pb is the host's routed side.
                ipn $H link add pa type veth peer name pb
                ipn $H link set pa up
                ipn $H link set pb up
                PARENT=pa
            fi
            ;;
        *) log "unknown design $d"; return 1 ;;
    esac
    case $d in
        macvlan-gw | ipvlan-l2-gw)
            # no shim: the pair is the containers' segment, pb (the host's
            # end) holds the gateway; the container's frames to it leave
            # through pa and arrive on pb, which has the subnet's route
            ipn $H addr add 10.23.$h.1/24 dev pb
            ipn $H addr add fd00:23:$h::1/64 dev pb nodad
            ;;
        macvlan-*)
            ipn $H link add sh link $PARENT type macvlan mode bridge
            ipn $H addr add 10.23.$h.1/24 dev sh
            ipn $H addr add fd00:23:$h::1/64 dev sh nodad
            ipn $H link set sh up
            ;;
        ipvlan-l2-*)
            ipn $H link add sh link $PARENT type ipvlan mode l2
            ipn $H addr add 10.23.$h.1/24 dev sh
            ipn $H addr add fd00:23:$h::1/64 dev sh nodad
            ipn $H link set sh up
            ;;
        l3-dummy)
            ipn $H route add 10.23.$h.0/24 dev dp proto $PROTO
            ipn $H -6 route add fd00:23:$h::/64 dev dp proto $PROTO
            ;;
        l3-dummy-vrf | l3-veth-vrf)
            # the parent in a VRF whose table holds the uplinks' ECMP route
            # (leaked: its next hops are outside the VRF)
            [ $d = l3-veth-vrf ] && l3_pair $h
            ipn $H link add vct type vrf table 100
            ipn $H link set vct up
            ipn $H link set $PARENT master vct
            ipn $H route add table 100 default proto $PROTO \
                nexthop via "$(gw $h 1)" dev "$(gwdev $h 1)" nexthop via "$(gw $h 2)" dev "$(gwdev $h 2)"
            if [ $d = l3-dummy-vrf ]; then
                ipn $H route add 10.23.$h.0/24 dev dp proto $PROTO
            else
                l3_inbound_via_pb $h
            fi
            ;;
        l3-veth | l3s-veth)
            # egress: ipvlan looks its route up with oif=pa; a rule sends
            # those lookups to a table whose one route leads into pa (to pb)
            l3_pair $h
            local f
            for f in -4 -6; do
                ipn $H $f route add table 100 default dev pa proto $PROTO
                ipn $H $f rule add oif pa lookup 100 pref 100 protocol $PROTO
            done
            l3_inbound_via_pb $h
            ;;
        l3-veth-norule)
            # egress with no rule: the lookup with oif=pa finds no route
            # through pa; IPv4 then assumes the destination is on pa's link
            # (route.c: "Apparently, routing tables are wrong"), IPv6 does not.
            l3_pair $h
            l3_inbound_via_pb $h
            ;;
        l3-up1 | l3-bond*) ;;
    esac
}

gw() { if [ "$1" = 1 ]; then [ "$2" = 1 ] && echo "$H1_GW1" || echo "$H1_GW2"; else echo 10.200.2$2.2; fi; }
gwdev() { if [ "$1" = 1 ]; then [ "$2" = 1 ] && echo "$H1_DEV1" || echo "$H1_DEV2"; else echo up$2; fi; }

# The internal pair for ipvlan L3: pa (parent) and pb (the host's routed
# side) share one MAC and neither does ARP/ND, so a frame one sends is the
# other's (PACKET_HOST) with no neighbour entry to keep: an L3 slave answers
# no ARP, and a permanent neighbour is flushed by any MAC change on the link.
l3_pair() {
    local h=$1 H=H$1
    ipn $H link set pa address 02:00:00:00:0$h:0a
    ipn $H link set pb address 02:00:00:00:0$h:0a
    ipn $H link set pa arp off
    ipn $H link set pb arp off
}

# inbound for ipvlan L3 on the internal pair: the host's block is routed
# into pb; pa's ipvlan receive handler gives it to the slave by destination
# address. pa does not forward, so an address without a container dies there.
l3_inbound_via_pb() {
    local h=$1 H=H$1
    ipn $H route add 10.23.$h.0/24 dev pb proto $PROTO
    ipn $H -6 route add fd00:23:$h::/64 dev pb proto $PROTO
    nx $H sysctl -qw net.ipv4.conf.pa.forwarding=0 net.ipv6.conf.pa.forwarding=0
}

# A container: attach_ctr DESIGN H NAME ADDR
attach_ctr() {
    local d=$1 h=$2 c=$3 a=$4 H=H$2
    ns_new "$c"
    case $d in
        macvlan-*) ipn $H link add ce link $PARENT type macvlan mode bridge ;;
        ipvlan-l2-*) ipn $H link add ce link $PARENT type ipvlan mode l2 ;;
        l3s-*) ipn $H link add ce link $PARENT type ipvlan mode l3s ;;
        l3-*) ipn $H link add ce link $PARENT type ipvlan mode l3 ;;
    esac
    ipn $H link set ce netns "$(ns "$c")"
    ipn "$c" link set ce name eth0
    ipn "$c" addr add "$a/24" dev eth0
    ipn "$c" addr add "fd00:23:$h::${a##*.}/64" dev eth0 nodad
    ipn "$c" link set eth0 up
    case $d in
        macvlan-* | ipvlan-l2-*)
            ipn "$c" route add default via 10.23.$h.1
            ipn "$c" -6 route add default via fd00:23:$h::1
            ;;
        *)
            ipn "$c" route add default dev eth0
            ipn "$c" -6 route add default dev eth0
            ;;
    esac
}

# Packet counters of a link: ctr NS DEV -> "rx tx"
ctr() {
    nx "$1" cat /sys/class/net/"$2"/statistics/rx_packets /sys/class/net/"$2"/statistics/tx_packets | tr '\n' ' '
}
# snapshot of both hosts' uplinks: H1up1rx H1up1tx H1up2rx H1up2tx H2...
snap() {
    local dev1=up1 dev2=up2
    echo "$(ctr H1 $dev1) $(ctr H1 $dev2) $(ctr H2 up1) $(ctr H2 up2)"
}
# share: share BEFORE AFTER -> JSON of per-uplink deltas and shares
share() {
    $PY - "$1" "$2" <<'PY'
import json, sys
b = list(map(int, sys.argv[1].split())); a = list(map(int, sys.argv[2].split()))
d = [y - x for x, y in zip(b, a)]
k = ["h1_up1_rx", "h1_up1_tx", "h1_up2_rx", "h1_up2_tx", "h2_up1_rx", "h2_up1_tx", "h2_up2_rx", "h2_up2_tx"]
r = dict(zip(k, d))
def pct(x, y): return round(100 * x / (x + y), 1) if x + y else None
r["h1_tx_up1_pct"] = pct(r["h1_up1_tx"], r["h1_up2_tx"])
r["h1_rx_up1_pct"] = pct(r["h1_up1_rx"], r["h1_up2_rx"])
r["h2_tx_up1_pct"] = pct(r["h2_up1_tx"], r["h2_up2_tx"])
r["h2_rx_up1_pct"] = pct(r["h2_up1_rx"], r["h2_up2_rx"])
print(json.dumps(r))
PY
}

# echo_start DSTNS DST N BASE [SECONDS]: an echo for flows(), left running;
# its pid in ECHO_PID (killed on exit, or by echo_stop).
echo_start() {
    local dns=$1 dst=$2 n=$3 base=$4 secs=${5:-3600}
    local elog=$OUT/echo-$dns-$base.log
    rm -f "$elog"
    # not through nx: $! must be the pid that becomes python
    ECHO_STATS=$OUT/echo-$dns-$base.stats.json
    ip netns exec "$(ns "$dns")" $PY "$DU_DIR/udpflows.py" echo --bind "$dst" --port-base "$base" \
        --flows "$n" --duration "$secs" --stats "$ECHO_STATS" >"$elog" 2>&1 &
    ECHO_PID=$!
    PIDS+=("$ECHO_PID")
    local i
    for i in $(seq 600); do grep -qs ready "$elog" && return 0; sleep 0.05; done
    log "echo in $dns did not start: $(cat "$elog")"
    return 1
}
echo_stop() { kill "$ECHO_PID" 2>/dev/null; wait "$ECHO_PID" 2>/dev/null; ECHO_PID=; }

# echo_split SENDER_JSON: the sender's JSON with each flow's loss split into
# forward (never reached the echo) and back (echoed, never returned).
echo_split() {
    rm -f "$ECHO_STATS"
    kill -USR1 "$ECHO_PID"
    local i
    for i in $(seq 200); do [ -s "$ECHO_STATS" ] && break; sleep 0.05; done
    $PY "$DU_DIR/udpflows.py" combine --sender "$1" --stats "$ECHO_STATS"
}

# flows SRCNS SRC DSTNS DST N BASE INTERVAL DURATION [JSONFILE]
# N flows from SRCNS to an echo in DSTNS (one started for the call unless
# ECHO_PID names a running one); prints the sender's JSON, with the loss
# split by direction.
flows() {
    local sns=$1 src=$2 dns=$3 dst=$4 n=$5 base=$6 iv=$7 dur=$8 js=${9:-$OUT/flows-$RANDOM.json}
    local own=
    if [ -z "${ECHO_PID:-}" ]; then echo_start "$dns" "$dst" "$n" "$base" "$($PY -c "print($dur+30)")"; own=1; fi
    nx "$sns" $PY "$DU_DIR/udpflows.py" send --src "$src" --dst "$dst" --port-base "$base" \
        --flows "$n" --interval "$iv" --duration "$dur" --json "$js" ${FLOW_OPTS:-} >/dev/null
    echo_split "$js"
    if [ -n "$own" ]; then echo_stop; fi
}

# summary of a sender JSON on stdin: "lost/sent flows_with_loss/N"
fsum() {
    $PY -c '
import json,sys; j=json.loads(sys.stdin.read().strip().splitlines()[-1])
print("echoed %d/%d, flows with loss %d/%d, longest outage %d ms" % (j["echoed"], j["sent"], j["flows_with_loss"], len(j["flows"]), max(f["longest_outage_ms"] for f in j["flows"])))'
}
