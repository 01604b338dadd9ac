"""Does gobgpd keep a policy action `local-pref LP`? usage: poldbg.py v3|v4 LP
(prints the global import policy as gobgpd shows it)."""
import os, sys, time, json; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import *
ver, lp = sys.argv[1], sys.argv[2]
lab = Lab("-poldbg")
try:
    lab.node("r", "192.0.2.3")
    lab.gobgpd("r", ver, gobgp_toml(65100, "192.0.2.3", []))
    lab.wait_api("r")
    for c in ["policy community add gshut 65535:0", "policy statement add gshutlp",
              "policy statement gshutlp add condition community gshut",
              f"policy statement gshutlp add action local-pref {lp}",
              "policy add gshutpol gshutlp", "global policy import add gshutpol default accept"]:
        print(c, "->", lab.gobgp("r", c, check=False))
    print(lab.gobgp("r", "policy"))
    print(lab.gobgp("r", "global policy"))
    print(lab.gobgp("r", "policy community"))
finally:
    lab.close()
