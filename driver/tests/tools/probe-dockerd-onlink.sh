#!/usr/bin/env bash
# What dockerd 20.10 accepts from an IPAM that hands out host routes: runs
# onlink-plugin.py as IPAM and network driver "ol" for one dockerd in a
# network and mount namespace of its own (see shared facts/docker.md),
# creates a dual-stack network with --ipam-driver ol, runs a container that
# prints its addresses and routes and pings its gateway in both families.
#   MODE=onlink driver/tests/tools/probe-dockerd-onlink.sh   (works: /32 and /128, on-link route, gateway)
#   MODE=plain  driver/tests/tools/probe-dockerd-onlink.sh   (fails: "route for the gateway ... network is unreachable")
# Run as root on a machine with dockerd 20.10, busybox-static and python3.
# The requests and answers go to /tmp/onlink-last.jsonl. Everything it made
# is removed at the end (processes by pid).
# throwaway experiment: what dockerd 20.10 does with /32 addresses and on-link static routes
set -uo pipefail
D=$(mktemp -d /tmp/olx.XXXXXX); ns=olx$$; pids=()
cleanup() { set +e
  [ -n "${DOCKERD:-}" ] && kill "$DOCKERD" && for _ in $(seq 60); do kill -0 "$DOCKERD" 2>/dev/null || break; sleep 0.5; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.5
  umount -R "$D/data" 2>/dev/null; umount "$D/exec/netns"/* 2>/dev/null
  ip netns del "$ns"; rmdir /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns" 2>/dev/null; cat $D/rec.jsonl > /tmp/onlink-last.jsonl; rm -rf "$D"; }
trap cleanup EXIT
mkdir -p "$D"/{data,exec,plugins,etc-docker/plugins}; echo '{}' > "$D/daemon.json"; : > $D/rec.jsonl
ip netns add "$ns"; ip -n "$ns" link set lo up
ip -n $ns link add up0 type veth peer name peer0; ip -n $ns link set up0 up; ip -n $ns link set peer0 up
ip -n $ns link add shim link up0 type macvlan mode bridge; ip -n $ns link set shim up
ip -n $ns addr add 10.20.0.1/16 dev shim; ip -n $ns addr add fd00:20::1/64 dev shim nodad
ip netns exec $ns python3 "$(cd "$(dirname "$0")" && pwd)/onlink-plugin.py" "$D/plugins/ol.sock" "$D/rec.jsonl" & pids+=($!)
setsid unshare --mount --propagation slave sh -c "mount --bind $D/plugins /run/docker/plugins && mount --bind $D/etc-docker /etc/docker && exec sleep infinity" &
HOLDER=$!; pids+=($HOLDER); sleep 0.5
nsenter --mount=/proc/$HOLDER/ns/mnt --net=/run/netns/$ns /usr/sbin/dockerd --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/docker.pid" -H "unix://$D/docker.sock" --config-file "$D/daemon.json" --bridge=none --iptables=false --ip6tables=false --cgroup-parent "$ns" > "$D/dockerd.log" 2>&1 &
DOCKERD=$!
docker() { /usr/bin/docker -H "unix://$D/docker.sock" "$@"; }
for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
root=$D/bb; mkdir -p "$root/bin"; cp /bin/busybox "$root/bin/"
for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
tar -C "$root" -cf "$D/bb.tar" . && docker import "$D/bb.tar" olbb >/dev/null
echo "== network create"; docker network create -d ol --ipam-driver ol --ipv6 --subnet 10.20.0.0/16 --subnet fd00:20::/64 blue
echo "== run"; docker run --rm --network blue olbb sh -c 'ip -4 addr show eth0; ip -6 addr show eth0 | grep inet6; ip route; ip -6 route; ping -c1 -W2 10.20.0.1 && ping6 -c1 -W2 fd00:20::1'; echo "rc=$?"
docker network inspect blue --format '{{json .IPAM}}'
