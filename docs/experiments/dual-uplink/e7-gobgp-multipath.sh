#!/usr/bin/env bash
# e7-gobgp-multipath.sh [v3|v4]: what gobgpd hands the driver when a host
# hears the same prefix from two ToRs with their own AS numbers (RFC 7938):
# H (AS 65001) peers with T1 (AS 65101) and T2 (AS 65102) over two /30s;
# both originate 10.23.2.0/24 (AS paths [65101] and [65102]: equal length,
# different neighbour AS). Run once with H's use-multiple-paths off and once
# with it on; shows H's RIB and what `gobgp monitor global rib` (the same
# WatchEvent BEST stream the driver's learner reads) delivers, then T1
# withdraws, T1 re-announces, both withdraw. Then H originates a prefix with
# its up1 address as next hop, and one with 0.0.0.0: the next hop each ToR
# receives.
set -u
. "$(dirname "$0")/lib.sh"
V=${1:-v3}
if [ "$V" = v4 ]; then GOBGPD=gobgpd-v4 GOBGP=gobgp-v4; else GOBGPD=gobgpd GOBGP=gobgp; fi
command -v $GOBGPD >/dev/null || { echo "SKIP: no $GOBGPD"; exit 0; }
$GOBGPD --version
for n in H T1 T2; do ns_new $n; done
wire H up1 T1 dn
wire H up2 T2 dn
ipn H addr add 10.200.11.1/30 dev up1
ipn T1 addr add 10.200.11.2/30 dev dn
ipn H addr add 10.200.12.1/30 dev up2
ipn T2 addr add 10.200.12.2/30 dev dn

conf() { # conf AS RID MULTIPATH NEIGH:AS...
    local as=$1 rid=$2 mp=$3 n
    shift 3
    printf '[global.config]\n  as = %s\n  router-id = "%s"\n' "$as" "$rid"
    if [ "$mp" = on ]; then printf '[global.use-multiple-paths.config]\n  enabled = true\n'; fi
    for n in "$@"; do
        printf '[[neighbors]]\n  [neighbors.config]\n    neighbor-address = "%s"\n    peer-as = %s\n' "${n%:*}" "${n#*:}"
        printf '  [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 9\n    keepalive-interval = 3\n'
    done
}
start() { # start NS CONF
    ip netns exec "$(ns "$1")" $GOBGPD -f "$2" --api-hosts "unix://$OUT/$1.sock" --pprof-disable -p -l warn >"$OUT/$1.log" 2>&1 &
    PIDS+=("$!")
    eval "PID_$1=$!"
}
g() { local n=$1; shift; ip netns exec "$(ns "$n")" $GOBGP --target "unix://$OUT/$n.sock" "$@"; }
wait_established() {
    local i
    for i in $(seq 300); do
        [ "$(g H neighbor 2>/dev/null | grep -c Establ)" = 2 ] && return 0
        sleep 0.1
    done
    echo "sessions not up after 30 s:"; g H neighbor
    return 1
}
for mp in off on; do
    echo; echo "### use-multiple-paths $mp"
    conf 65001 10.200.11.1 $mp 10.200.11.2:65101 10.200.12.2:65102 >"$OUT/H.toml"
    conf 65101 10.200.11.2 off 10.200.11.1:65001 >"$OUT/T1.toml"
    conf 65102 10.200.12.2 off 10.200.12.1:65001 >"$OUT/T2.toml"
    start T1 "$OUT/T1.toml"; start T2 "$OUT/T2.toml"; start H "$OUT/H.toml"
    sleep 1
    g T1 global rib add 10.23.2.0/24 -a ipv4
    g T2 global rib add 10.23.2.0/24 -a ipv4
    t0=$(date +%s.%N)
    wait_established && echo "both sessions established after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
    sleep 2
    echo "-- H: gobgp global rib"
    g H global rib -a ipv4
    g H monitor global rib --current -j >"$OUT/mon-$mp" 2>&1 &
    MP=$!
    PIDS+=("$MP")
    sleep 2
    echo "-- T1 withdraws"
    g T1 global rib del 10.23.2.0/24 -a ipv4
    sleep 2
    g H global rib -a ipv4
    echo "-- T1 announces again"
    g T1 global rib add 10.23.2.0/24 -a ipv4
    sleep 2
    g H global rib -a ipv4
    echo "-- T1 and T2 withdraw"
    g T1 global rib del 10.23.2.0/24 -a ipv4
    g T2 global rib del 10.23.2.0/24 -a ipv4
    sleep 2
    g H global rib -a ipv4
    kill "$MP"; wait "$MP" 2>/dev/null
    if [ $mp = on ]; then
        echo "-- H's global config as GetBgp reports it (gobgp global -j):"
        g H global -j; echo
        echo "-- H originates 10.23.1.0/24 with next hop 10.200.11.1 (its up1 address); what each ToR receives:"
        g H global rib add 10.23.1.0/24 nexthop 10.200.11.1 -a ipv4
        sleep 2
        echo "T1:"; g T1 global rib -a ipv4 10.23.1.0/24
        echo "T2:"; g T2 global rib -a ipv4 10.23.1.0/24
        echo "-- H originates 10.23.3.0/24 with next hop 0.0.0.0 (unspecified); what each ToR receives:"
        g H global rib add 10.23.3.0/24 nexthop 0.0.0.0 -a ipv4
        sleep 2
        echo "T1:"; g T1 global rib -a ipv4 10.23.3.0/24
        echo "T2:"; g T2 global rib -a ipv4 10.23.3.0/24
    fi
    echo "-- what the WatchEvent BEST stream delivered (monitor global rib --current -j), one line per event:"
    $PY - "$OUT/mon-$mp" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("["):
        print("  (not JSON)", line[:120]); continue
    ev = json.loads(line)
    out = []
    for p in ev:
        nh = next((a.get("nexthop") for a in p.get("attrs", []) if "nexthop" in a), None)
        asp = next((a.get("as_paths") for a in p.get("attrs", []) if "as_paths" in a), None)
        out.append("%s%s nh=%s as_path=%s" % ("withdraw " if p.get("withdrawal") else "", p.get("nlri", {}).get("prefix"), nh,
                   [s.get("asns") for s in asp] if asp else None))
    print("  event:", "; ".join(out))
PY
    for n in H T1 T2; do eval "kill \$PID_$n"; eval "wait \$PID_$n" 2>/dev/null; done
done
