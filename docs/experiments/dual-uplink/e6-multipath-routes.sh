#!/usr/bin/env bash
# e6-multipath-routes.sh: what the kernel does with a multipath route that
# carries our protocol tag (73), IPv4 and IPv6:
#   dump      how the route shows in a dump (ip -d -j route)
#   replace   its next-hop set changed in place (RTM_NEWROUTE + NLM_F_REPLACE)
#             every 100 ms under 16 UDP flows: loss, and what `ip monitor`
#             sees (any RTM_DELROUTE?); against delete-then-add, and against
#             a route to a nexthop group whose members change (ip nexthop)
#   foreign   another daemon adds a next hop (append) or a route of its own
#             (prepend / before ours): what the dump shows, what our replace
#             then does to it
#   linkdown  one next hop's link goes admin down / loses carrier (with and
#             without ignore_routes_with_linkdown), comes back: the route in
#             the dump, which hops 16 tuples use, and the notifications
# Topology: S - R - {A, B, C} (R's links toa, tob, toc); 10.99.0.1 and fd00:99::1 are on A, B and C
# (anycast), each with an echo; R holds the multipath route.
set -u
. "$(dirname "$0")/lib.sh"
IV=${INTERVAL:-0.01}
for n in R S A B C; do ns_new $n; done
wire S r R s
ipn S addr add 10.98.0.2/24 dev r
ipn R addr add 10.98.0.1/24 dev s
ipn S addr add fd00:98::2/64 dev r nodad
ipn R addr add fd00:98::1/64 dev s nodad
ipn S route add default via 10.98.0.1
ipn S -6 route add default via fd00:98::1
i=0
for x in A B C; do
    i=$((i + 1))
    # (not "a", "b" or "up": ip reads those as "address", "broadcast", "up")
    l=to$(echo $x | tr A-Z a-z)
    wire R $l $x ul
    ipn R addr add 10.97.$i.1/24 dev $l
    ipn $x addr add 10.97.$i.2/24 dev ul
    ipn R addr add fd00:97:$i::1/64 dev $l nodad
    ipn $x addr add fd00:97:$i::2/64 dev ul nodad
    ipn $x addr add 10.99.0.1/32 dev lo
    ipn $x addr add fd00:99::1/128 dev lo nodad
    ipn $x route add default via 10.97.$i.1
    ipn $x -6 route add default via fd00:97:$i::1
done
hop4() { case $1 in A) echo "nexthop via 10.97.1.2 dev toa" ;; B) echo "nexthop via 10.97.2.2 dev tob" ;; C) echo "nexthop via 10.97.3.2 dev toc" ;; esac; }
hop6() { case $1 in A) echo "nexthop via fd00:97:1::2 dev toa" ;; B) echo "nexthop via fd00:97:2::2 dev tob" ;; C) echo "nexthop via fd00:97:3::2 dev toc" ;; esac; }
hops() { local f=$1 h o=; shift; for h in "$@"; do o="$o $(hop$f $h)"; done; echo "$o"; }
R4=10.99.0.1/32 R6=fd00:99::1/128
ipn R route add $R4 proto $PROTO $(hops 4 A B)
ipn R -6 route add $R6 proto $PROTO $(hops 6 A B)
sec() { echo; echo "### $*"; }

sec "dump: text"
ipn R -d route show $R4
ipn R -d -6 route show $R6
sec "dump: JSON"
ipn R -d -j route show $R4
echo
ipn R -d -j -6 route show $R6
echo

# replace under traffic: one echo per anycast server (each answers from its
# own copy of the address); ip monitor in R records the notifications
monitor_start() { ip -n "$(ns R)" monitor route >"$OUT/mon" 2>&1 & MON=$!; PIDS+=("$MON"); sleep 0.2; }
monitor_stop() { sleep 0.2; kill "$MON" 2>/dev/null; wait "$MON" 2>/dev/null; }
mon_summary() {
    echo "notifications: $(grep -c . "$OUT/mon") lines;" \
        "RTM_DELROUTE for the prefix: $(grep -c "^Deleted .*${1%/*}" "$OUT/mon");" \
        "RTM_NEWROUTE for the prefix: $(grep -v '^Deleted' "$OUT/mon" | grep -c "^${1%/*}")"
}
churn() { # churn FAM MODE: change the hop set every 100 ms for 4 s
    local f=$1 mode=$2 pfx sets k s
    [ $f = 4 ] && pfx=$R4 || pfx=$R6
    sets=("A B" "A C" "B C" "A B C" "A" "B" "C A" "A B")
    for k in $(seq 0 39); do
        s=${sets[$((k % ${#sets[@]}))]}
        # shellcheck disable=SC2046
        case $mode in
            replace) ipn R -$f route replace $pfx proto $PROTO $(hops $f $s) ;;
            del-add) ipn R -$f route del $pfx; ipn R -$f route add $pfx proto $PROTO $(hops $f $s) ;;
            nhgroup) ipn R nexthop replace id 100$f group "$(nhg $f $s)" ;;
        esac
        sleep 0.1
    done
    if [ $mode = nhgroup ]; then ipn R nexthop replace id 100$f group "$(nhg $f A B)"; else ipn R -$f route replace $pfx proto $PROTO $(hops $f A B); fi
}
# nexthop objects (kernel >= 5.3): one per hop, ids F1 F2 F3, a group 100F;
# the route points at the group and the group's members change
nhg() { local f=$1 h o=; shift; for h in "$@"; do case $h in A) o="$o/${f}1" ;; B) o="$o/${f}2" ;; C) o="$o/${f}3" ;; esac; done; echo "${o#/}"; }
nh_setup() {
    ipn R nexthop add id 41 via 10.97.1.2 dev toa
    ipn R nexthop add id 42 via 10.97.2.2 dev tob
    ipn R nexthop add id 43 via 10.97.3.2 dev toc
    ipn R nexthop add id 61 via fd00:97:1::2 dev toa
    ipn R nexthop add id 62 via fd00:97:2::2 dev tob
    ipn R nexthop add id 63 via fd00:97:3::2 dev toc
    ipn R nexthop add id 1004 group 41/42
    ipn R nexthop add id 1006 group 61/62
}
for f in 4 6; do
    [ $f = 4 ] && dst=10.99.0.1 src=10.98.0.2 pfx=$R4 || dst=fd00:99::1 src=fd00:98::2 pfx=$R6
    for x in A B C; do
        ip netns exec "$(ns $x)" $PY "$DU_DIR/udpflows.py" echo --bind $dst --port-base 41000 --flows 16 --duration 600 >"$OUT/echo-$x" 2>&1 &
        PIDS+=("$!")
    done
    for w in $(seq 100); do [ "$(cat "$OUT"/echo-[ABC] | grep -c ready)" = 3 ] && break; sleep 0.05; done
    nx S $PY "$DU_DIR/udpflows.py" send --src $src --dst $dst --port-base 41000 --flows 16 --interval "$IV" --duration 0.5 --unconnected >/dev/null
    for mode in replace del-add nhgroup; do
        if [ $mode = nhgroup ]; then
            [ $f = 4 ] && nh_setup
            ipn R -$f route replace $pfx proto $PROTO nhid 100$f
        fi
        sec "IPv$f: hop set changed 40 times in 4 s by $mode, 16 flows every $(awk -v i="$IV" "BEGIN{print i*1000}") ms"
        monitor_start
        nx S $PY "$DU_DIR/udpflows.py" send --src $src --dst $dst --port-base 41000 --flows 16 --interval "$IV" --duration 5 --unconnected --json "$OUT/e6-$f-$mode.json" >/dev/null &
        sp=$!
        sleep 0.5
        churn $f $mode
        wait $sp
        monitor_stop
        $PY -c '
import json,sys; j=json.load(open(sys.argv[1]))
print("echoed %d of %d; flows with loss %d; lost per flow %s" % (j["echoed"], j["sent"], j["flows_with_loss"], [f["lost"] for f in j["flows"]]))' "$OUT/e6-$f-$mode.json"
        mon_summary $pfx
        [ $mode = replace ] && { echo "ip monitor, first lines:"; head -8 "$OUT/mon"; }
        if [ $mode = nhgroup ]; then
            echo "route and group afterwards:"; ipn R -$f route show $pfx; ipn R nexthop show id 100$f
            ipn R -$f route replace $pfx proto $PROTO $(hops $f A B)
        fi
    done
done

sec "foreign IPv4: another daemon appends a next hop (ip route append ... proto 186)"
ipn R route append $R4 proto 186 via 10.97.3.2 dev toc
ipn R route show $R4
echo "used for a lookup: $(ipn R route get 10.99.0.1 | head -1)"
echo "our replace (NLM_F_REPLACE) with hops A B:"
ipn R route replace $R4 proto $PROTO $(hops 4 A B)
ipn R route show $R4
ipn R route del $R4 proto 186 2>/dev/null
sec "foreign IPv4: the other route first (prepend: NLM_F_CREATE without EXCL, before ours)"
ipn R route prepend $R4 proto 186 via 10.97.3.2 dev toc
ipn R route show $R4
echo "our replace with hops A B (the set we already have):"
ipn R route replace $R4 proto $PROTO $(hops 4 A B)
ipn R route show $R4
echo "our replace with hops A C (a new set):"
ipn R route replace $R4 proto $PROTO $(hops 4 A C)
ipn R route show $R4
ipn R route flush $R4
ipn R route add $R4 proto $PROTO $(hops 4 A B)

sec "foreign IPv6: another daemon appends a next hop (ip -6 route append ... proto 186)"
ipn R -6 route append $R6 proto 186 via fd00:97:3::2 dev toc
ipn R -6 -d route show $R6
ipn R -6 -d -j route show $R6; echo
echo "our replace with hops A B:"
ipn R -6 route replace $R6 proto $PROTO $(hops 6 A B)
ipn R -6 -d route show $R6
sec "foreign IPv6: another daemon adds a route of its own with another metric"
ipn R -6 route add $R6 proto 186 via fd00:97:3::2 dev toc metric 2048
ipn R -6 route show $R6
ipn R -6 route del $R6 proto 186 metric 2048

for kind in admin carrier carrier-ignore; do
    ign=0
    if [ $kind = carrier-ignore ]; then
        ign=1
        nx R sysctl -qw net.ipv4.conf.all.ignore_routes_with_linkdown=1 net.ipv6.conf.all.ignore_routes_with_linkdown=1 \
            net.ipv4.conf.toa.ignore_routes_with_linkdown=1 net.ipv6.conf.toa.ignore_routes_with_linkdown=1
    fi
    sec "link of hop A: ${kind%-ignore} down, then up (ignore_routes_with_linkdown=$ign)"
    monitor_start
    if [ $kind = admin ]; then ipn R link set toa down; else ipn A link set ul down; fi
    sleep 0.3
    echo "-- down:"; ipn R route show $R4; ipn R -6 route show $R6
    echo "   v4 lookup for 16 tuples uses: $(for p in $(seq 41000 41015); do ipn R route get 10.99.0.1 from 10.98.0.2 iif s ipproto udp sport $p dport $p | grep -o 'dev to[a-c]'; done | sort | uniq -c | tr -s ' \n' ' ')"
    echo "   v6 lookup for 16 tuples uses: $(for p in $(seq 41000 41015); do ipn R -6 route get fd00:99::1 from fd00:98::2 iif s ipproto udp sport $p dport $p | grep -o 'dev to[a-c]'; done | sort | uniq -c | tr -s ' \n' ' ')"
    if [ $kind = admin ]; then ipn R link set toa up; else ipn A link set ul up; fi
    sleep 2.5
    echo "-- up again (2.5 s later):"; ipn R route show $R4; ipn R -6 route show $R6
    monitor_stop
    echo "-- ip monitor route while it happened:"; grep -E "10.99.0.1|fd00:99::1" "$OUT/mon" || echo "(nothing for the prefixes)"
    # put back what the driver would have written
    ipn R route replace $R4 proto $PROTO $(hops 4 A B)
    ipn R -6 route replace $R6 proto $PROTO $(hops 6 A B)
done
