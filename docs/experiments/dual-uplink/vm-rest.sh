#!/usr/bin/env bash
# vm-rest.sh: the experiments other than the screen that need the VM's
# kernel (ipvlan, dummy, bond, VRF; Debian's 6.1):
#   ci/vm/run.sh --out /tmp/du-vm-rest -- bash docs/experiments/dual-uplink/vm-rest.sh [PART...]
# PARTs: inbound e4 e5 e6 e8 (default: all). Output in $IBVM_OUT/*.txt.
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${IBVM_OUT:-/tmp/du-vm-rest}
mkdir -p "$out"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(inbound e4 e5 e6 e8)
export DU_OUT=$out/tmp
for p in "${parts[@]}"; do
    case $p in
        inbound)
            for d in l3-veth l3-up1 l3-dummy l3-dummy-vrf l3-veth-vrf l3s-veth; do
                bash "$here/inbound.sh" $d
            done | tee "$out/inbound.txt"
            FAM=6 bash "$here/inbound.sh" l3-veth | tee -a "$out/inbound.txt"
            UPLINKS_H1=bond-active-backup bash "$here/inbound.sh" l3-bond | tee -a "$out/inbound.txt"
            UPLINKS_H1=bond-balance-xor BOND_OPTS="xmit_hash_policy layer3+4" bash "$here/inbound.sh" l3-bond | tee -a "$out/inbound.txt"
            ;;
        e4)
            for f in admin carrier nft; do
                LEAD=4 INTERVAL=0.02 bash "$here/e4-failure.sh" l3-veth $f
            done | tee "$out/e4.txt"
            LEAD=4 INTERVAL=0.02 IGNORE_LINKDOWN=1 bash "$here/e4-failure.sh" l3-veth carrier | tee -a "$out/e4.txt"
            ;;
        e5) RUNS=${RUNS:-4} bash "$here/e5-hash.sh" l3-veth 2>&1 | tee "$out/e5.txt" ;;
        e6) INTERVAL=0.02 bash "$here/e6-multipath-routes.sh" 2>&1 | tee "$out/e6.txt" ;;
        e8) bash "$here/e8-parent-sharing.sh" 2>&1 | tee "$out/e8.txt" ;;
    esac
done
