#!/usr/bin/env bash
# vm-screen.sh: screen.sh for every design that needs ipvlan, dummy, bond or
# VRF, one after the other. Meant for the VM:
#   ci/vm/run.sh --out /tmp/du-vm -- bash docs/experiments/dual-uplink/vm-screen.sh [LINE...]
# Each LINE is "DESIGN_H1 DESIGN_H2 [VAR=VALUE...]"; without LINEs, the list
# below. Writes screen.jsonl (one JSON object per step) to $IBVM_OUT.
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${IBVM_OUT:-/tmp/du-vm-out}
mkdir -p "$out"
lines=("$@")
if [ ${#lines[@]} -eq 0 ]; then
    lines=(
        "l3-veth l3-veth"
        "l3-veth l3-veth FAM=6"
        "l3-veth-norule l3-veth-norule"
        "l3-veth-norule l3-veth-norule FAM=6"
        "l3s-veth l3s-veth"
        "l3-up1 l3-veth"
        "l3-dummy l3-veth"
        "l3-dummy-vrf l3-veth"
        "l3-veth-vrf l3-veth"
        "l3-bond l3-veth UPLINKS_H1=bond-active-backup"
        "l3-bond l3-veth UPLINKS_H1=bond-balance-xor BOND_OPTS=xmit_hash_policy_layer3+4"
        "ipvlan-l2-int ipvlan-l2-int"
        "ipvlan-l2-int ipvlan-l2-int DU_RP_FILTER=2"
        "ipvlan-l2-dummy ipvlan-l2-dummy DU_RP_FILTER=2"
        "ipvlan-l2-up1 ipvlan-l2-int DU_RP_FILTER=2"
        "macvlan-dummy macvlan-dummy"
    )
fi
for line in "${lines[@]}"; do
    read -r -a w <<<"$line"
    envs=()
    for kv in "${w[@]:2}"; do envs+=("${kv//_layer/ layer}"); done
    echo "=== $line" >&2
    env INTERVAL=${INTERVAL:-0.02} DURATION=${DURATION:-1.5} DU_OUT="$out/tmp" "${envs[@]}" \
        bash "$here/screen.sh" "${w[0]}" "${w[1]}" | tee -a "$out/screen.jsonl" | cut -c1-240
done
