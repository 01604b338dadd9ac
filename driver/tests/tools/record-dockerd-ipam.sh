#!/usr/bin/env bash
# Records what a real dockerd (20.10, Debian's docker.io) sends to a remote
# IPAM plugin, into driver/tests/fixtures/dockerd-ipam-requests.jsonl.
# Run as root on a machine with dockerd, busybox-static and python3:
#   driver/tests/tools/record-dockerd-ipam.sh [OUT.jsonl]
# One dockerd in a network namespace of its own and a private mount
# namespace (see shared facts/docker.md), the recorder (ipam-recorder.py)
# as the IPAM driver "rec" through /run/docker/plugins/rec.sock as that
# dockerd sees it. The network driver is Docker's built-in macvlan on a veth
# inside the namespace: the IPAM calls do not depend on the network driver.
# Everything it made is removed at the end (processes by pid).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../fixtures/dockerd-ipam-requests.jsonl}
D=$(mktemp -d /tmp/ipamrec.XXXXXX)
ns=iprec$$
label=$D/label
pids=()
cleanup() {
  set +e
  [ -n "${DOCKERD:-}" ] && kill "$DOCKERD" && for _ in $(seq 60); do kill -0 "$DOCKERD" 2>/dev/null || break; sleep 0.5; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  umount -R "$D/data" 2>/dev/null; umount "$D/exec/netns"/* 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  rmdir /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns" 2>/dev/null
  rm -rf "$D"
}
trap cleanup EXIT
mkdir -p "$D"/{data,exec,plugins,etc-docker/plugins}
echo '{}' > "$D/daemon.json"
: > "$D/rec.jsonl"

ip netns add "$ns"
ip -n "$ns" link set lo up
# One parent per network: Docker's macvlan refuses two networks on one parent
# and this kernel may have no 802.1Q for sub-interfaces.
for i in 0 1 2 3 4; do
  ip -n "$ns" link add up$i type veth peer name peer$i
  ip -n "$ns" link set up$i up; ip -n "$ns" link set peer$i up
done

echo "activate" > "$label"
REFUSE=10.20.9.9 REFUSE500=10.20.9.8 python3 "$here/ipam-recorder.py" "$D/plugins/rec.sock" "$D/rec.jsonl" "$label" &
pids+=($!)
mkdir -p /run/docker/plugins /etc/docker
setsid unshare --mount --propagation slave sh -c \
  "mount --bind $D/plugins /run/docker/plugins && mount --bind $D/etc-docker /etc/docker && exec sleep infinity" &
HOLDER=$!; pids+=($HOLDER)
sleep 0.5
start_dockerd() {
  nsenter --mount=/proc/$HOLDER/ns/mnt --net=/run/netns/$ns /usr/sbin/dockerd \
    --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/docker.pid" -H "unix://$D/docker.sock" \
    --config-file "$D/daemon.json" --bridge=none --iptables=false --ip6tables=false --cgroup-parent "$ns" \
    > "$D/dockerd.log" 2>&1 &
  DOCKERD=$!
  for _ in $(seq 100); do docker info >/dev/null 2>&1 && return; sleep 0.2; done
  echo "dockerd did not start"; tail "$D/dockerd.log"; exit 1
}
stop_dockerd() { kill "$DOCKERD"; for _ in $(seq 60); do kill -0 "$DOCKERD" 2>/dev/null || break; sleep 0.5; done; DOCKERD=; }
docker() { /usr/bin/docker -H "unix://$D/docker.sock" "$@"; }
step() { echo "$1" > "$label"; shift; echo "+ docker $*"; docker "$@" 2>&1 || true; }
start_dockerd

root=$D/bb; mkdir -p "$root/bin"; cp /bin/busybox "$root/bin/"
for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
tar -C "$root" -cf "$D/bb.tar" . && docker import "$D/bb.tar" rec-busybox >/dev/null

M=(-d macvlan -o parent=up0 --ipam-driver rec)
step "network create blue --subnet 10.20.0.0/16" network create "${M[@]}" --subnet 10.20.0.0/16 blue
step "run on blue" run --rm --network blue rec-busybox true
step "run on blue --ip 10.20.5.5" run --rm --network blue --ip 10.20.5.5 rec-busybox true
step "run on blue -d --mac-address" run -d --name c-mac --network blue --mac-address 02:42:0a:14:00:63 rec-busybox sleep 600
step "rm -f c-mac" rm -f c-mac
step "run on blue --ip 10.20.9.9 refused by the IPAM with Err and HTTP 200" run --rm --network blue --ip 10.20.9.9 rec-busybox true
step "run on blue --ip 10.20.9.8 refused by the IPAM with Err and HTTP 500" run --rm --network blue --ip 10.20.9.8 rec-busybox true
step "run on blue --ip 10.21.0.1 outside the pool" run --rm --network blue --ip 10.21.0.1 rec-busybox true
step "network rm blue" network rm blue

step "network create green --subnet 10.30.0.0/16 --ip-range 10.30.1.0/24 --gateway 10.30.0.254 --aux-address x=10.30.0.9 --ipam-opt k=v" \
  network create -d macvlan -o parent=up1 --ipam-driver rec --subnet 10.30.0.0/16 --ip-range 10.30.1.0/24 \
  --gateway 10.30.0.254 --aux-address x=10.30.0.9 --ipam-opt k=v green
step "run on green" run --rm --network green rec-busybox true
step "network rm green" network rm green

step "network create auto (no --subnet)" network create -d macvlan -o parent=up2 --ipam-driver rec auto
step "network rm auto" network rm auto

step "network create dual --ipv6 --subnet 10.40.0.0/16 --subnet fd00:40::/64" \
  network create -d macvlan -o parent=up3 --ipam-driver rec --ipv6 --subnet 10.40.0.0/16 --subnet fd00:40::/64 dual
step "run on dual --ip 10.40.0.7 --ip6 fd00:40::7" run --rm --network dual --ip 10.40.0.7 --ip6 fd00:40::7 rec-busybox true
step "run on dual -d" run -d --name c-dual --network dual rec-busybox sleep 600
echo "dockerd stop (c-dual running)" > "$label"
stop_dockerd
echo "dockerd start again" > "$label"
start_dockerd
step "run on dual after dockerd restart" run --rm --network dual rec-busybox true
step "rm -f c-dual" rm -f c-dual
step "network rm dual" network rm dual

step "network create internal --internal --subnet 10.50.0.0/24" \
  network create -d macvlan -o parent=up4 --ipam-driver rec --internal --subnet 10.50.0.0/24 internal
step "network rm internal" network rm internal

cp "$D/rec.jsonl" "$out"
echo "recorded $(wc -l < "$out") requests into $out"
