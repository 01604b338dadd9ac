#!/usr/bin/env bash
# e8-parent-sharing.sh: can one internal parent carry several data planes?
# On one veth end: an ipvlan L3 link, then an ipvlan L2 link, then a macvlan
# link; and the other way round. Prints what the kernel answers and the mode
# the existing links are left in. Needs ipvlan (the VM).
set -u
. "$(dirname "$0")/lib.sh"
ns_new H
try() { echo "\$ ip link add $*"; ipn H link add "$@" 2>&1 && echo "  ok"; }
modes() { ipn H -d link show | awk '/^[0-9]+:/ { n = $2 } /ipvlan|macvlan +mode/ { print "  " n, $1, $2, $3 }'; }
ipn H link add pa type veth peer name pb
ipn H link set pa up
ipn H link set pb up
try s1 link pa type ipvlan mode l3
try s2 link pa type ipvlan mode l2
modes
try m1 link pa type macvlan mode bridge
ipn H link del s1 2>/dev/null
ipn H link del s2 2>/dev/null
echo "-- the other way round"
try m2 link pa type macvlan mode bridge
try s3 link pa type ipvlan mode l3
modes
