#!/usr/bin/env bash
# e10-ipv6-addr-on-down.sh: does an uplink keep its static IPv6 address
# through admin down/up? With keep_addr_on_down 0 (the kernel's default) and 1.
set -u
. "$(dirname "$0")/lib.sh"
ns_new X; ns_new Y
wire X ul Y dl
for k in 0 1; do
    nx X sysctl -qw net.ipv6.conf.all.keep_addr_on_down=$k net.ipv6.conf.ul.keep_addr_on_down=$k
    ipn X addr replace fd00:200:11::1/64 dev ul nodad
    before=$(ipn X -6 addr show dev ul scope global | grep -c inet6)
    ipn X link set ul down
    ipn X link set ul up
    echo "keep_addr_on_down=$k: global IPv6 addresses on the uplink before $before, after down/up $(ipn X -6 addr show dev ul scope global | grep -c inet6)"
done
