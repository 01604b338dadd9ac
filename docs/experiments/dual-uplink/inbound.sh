#!/usr/bin/env bash
# inbound.sh DESIGN_H1 [DESIGN_H2]: the inbound half alone. 16 UDP flows go
# from c2 (on H2, DESIGN_H2, default l3-veth) to c1 (on H1, DESIGN_H1); H2
# spreads them over both ToRs, so they reach H1 over up1 and over up2. Prints
# per uplink of H1 how many packets arrived (rx counters) and how many
# reached c1 (the echo's own count: the "forward" direction here), for
# IPv4, or IPv6 with FAM=6.
set -u
. "$(dirname "$0")/lib.sh"
D1=$1 D2=${2:-l3-veth} N=${FLOWS:-16} FAM=${FAM:-4}
if [ "$FAM" = 6 ]; then C1=fd00:23:1::10 C2=fd00:23:2::10; else C1=10.23.1.10 C2=10.23.2.10; fi
fabric
attach_host "$D1" 1; attach_ctr "$D1" 1 c1 10.23.1.10
attach_host "$D2" 2; attach_ctr "$D2" 2 c2 10.23.2.10
echo_start c1 $C1 "$N" 42000
flows c2 $C2 c1 $C1 "$N" 42000 0.02 0.3 >/dev/null
b=$(snap)
j=$(FLOW_OPTS=--unconnected flows c2 $C2 c1 $C1 "$N" 42000 0.02 1.5)
a=$(snap)
$PY - "$D1" "$FAM" "$j" "$(share "$b" "$a")" <<'PY'
import json, sys
d, fam, j, s = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
sent = j["sent"]
print(json.dumps({"h1": d, "ipv": int(fam), "sent_by_c2": sent,
  "arrived_h1_up1": s["h1_up1_rx"], "arrived_h1_up2": s["h1_up2_rx"],
  "reached_c1": sent - j["forward_lost"], "flows_reaching_c1": len(j["flows"]) - j["flows_losing_forward"],
  "flows": len(j["flows"]), "echoes_back_to_c2": j["echoed"]}))
PY
