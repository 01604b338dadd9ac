#!/usr/bin/env bash
# e9-l3-unknown-address.sh: ipvlan L3 on the internal pair, the host's whole
# block routed into pb; a packet for an address of the block that has no
# container: with pa forwarding (the kernel's default) and without. Counts
# the packets crossing the pair and what the sender hears back. VM (ipvlan).
set -u
. "$(dirname "$0")/lib.sh"
fabric
attach_host l3-veth 1; attach_ctr l3-veth 1 c1 10.23.1.10
attach_host l3-veth 2; attach_ctr l3-veth 2 c2 10.23.2.10
for fw in 1 0; do
    nx H1 sysctl -qw net.ipv4.conf.pa.forwarding=$fw
    b="$(ctr H1 pa) $(ctr H1 pb)"
    echo "-- pa forwarding=$fw: c2 pings 10.23.1.99 (no container) 3 times"
    nx c2 ping -c 3 -i 0.3 -W 1 10.23.1.99 | grep -E 'From|transmitted'
    a="$(ctr H1 pa) $(ctr H1 pb)"
    echo "   pa rx tx, pb rx tx before: $b  after: $a"
done
echo "-- and c1 (a container) still answers: $(nx c2 ping -c 2 -i 0.3 -W 1 10.23.1.10 | grep transmitted)"
