"""Which withdrawals' route deletes on b2 waited on RTNL (issue 24, session 7).

While `harness bench convergence --runs 120 --hold-teardown` ran (IPVLAN_BGP_BIN a copy of
the driver, so `pgrep -f` finds its two drivers and b2's `route-installer` thread):
  perf record -k CLOCK_MONOTONIC -e lock:contention_begin -e lock:contention_end -g -a -o P -- sleep 16
  perf script -i P -F comm,tid,time,event,trace,ip,sym > P.txt
  python3 rtnl_wait.py P.txt <b2's driver.log> <installer tid>
The lock 0xffffffff82ff41e0 is the one inet_rtm_delroute waits on, and the one rtnl_setlink,
rtnl_dellink, rtnl_dumpit, addrconf_dad_work and the namespace cleanup's exit batches wait on: RTNL.
Each contention is given to the withdrawal whose `route deleted` stamp (mono_us) follows it
within 5 ms; join i's stop held its teardown when i is odd.
"""
import re,sys,bisect
perf,log,tid=sys.argv[1],sys.argv[2],sys.argv[3]
# withdrawals in order: each join deletes its /32 and its /128; join i held if odd
dels=[]  # (mono_s, join index)
j=-1
for line in open(log):
    if 'route deleted' not in line: continue
    m=re.search(r'prefix=(\S+) .*mono_us=(\d+)',line)
    if not m: continue
    if ':' not in m.group(1): j+=1
    dels.append((int(m.group(2))/1e6, j))
ts=[d[0] for d in dels]
beg={}; per={}
for line in open(perf):
    m=re.match(r'route-installer\s+'+tid+r'\s+([\d.]+):\s+lock:(contention_begin|contention_end):\s+(0x[0-9a-f]+)',line)
    if not m: continue
    t=float(m.group(1))
    if m.group(2)=='contention_begin': beg[m.group(3)]=t
    elif m.group(3) in beg:
        b=beg.pop(m.group(3))
        if m.group(3)!='0xffffffff82ff41e0': continue
        k=bisect.bisect_left(ts,t)
        if k<len(ts) and ts[k]-t<0.005:
            jj=dels[k][1]; per[jj]=per.get(jj,0)+(t-b)*1e3
lo=min(per) if per else 0; hi=max(per) if per else 0
# joins whose withdrawal lies in the window: all joins from lo to hi
for held in (0,1):
    js=[x for x in range(lo,hi+1) if x%2==held]
    v=sorted(per.get(x,0.0) for x in js)
    if not v: continue
    print('%s joins %d..%d: n=%d, waited on RTNL in %d; wait per withdrawal median %.2f p90 %.2f max %.2f ms'%('held' if held else 'real',lo,hi,len(v),sum(1 for x in v if x>0),v[len(v)//2],v[int(.9*len(v))],v[-1]))
