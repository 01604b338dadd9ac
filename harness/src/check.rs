//! What this machine can do (`harness check`), and whether a scenario can
//! run here. A scenario is skipped, visibly and with the reason, only when a
//! capability is missing; under CI (`CI=true`) only the kernel's own gaps may
//! skip, so a broken install step fails the run instead of turning it green.

use std::sync::OnceLock;
use std::time::Duration;

use crate::netns::{Netns, PREFIX};
use crate::scenario::{Capability, Scenario};
use crate::util::{is_root, run_output, which};

#[derive(Debug, Clone)]
pub struct Caps {
    pub root: bool,
    pub gobgpd: Option<String>,
    pub macvlan: Result<(), Gap>,
    pub ipvlan: Result<(), Gap>,
    pub dockerd: Option<String>,
    pub frr: Option<String>,
    pub bird: Option<String>,
}

fn version(prog: &str, args: &[&str]) -> Option<String> {
    let path = which(prog)?;
    let out = run_output(&path.display().to_string(), args, Duration::from_secs(10)).ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

/// Why a capability is missing: the kernel lacks it (a scenario may skip),
/// or the probe itself could not run (a broken machine: fails under CI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    Kernel(String),
    Tool(String),
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gap::Kernel(m) | Gap::Tool(m) => f.write_str(m),
        }
    }
}

/// Tries to create a link of `kind` on a veth in a scratch namespace.
fn kernel_has(kind: &str) -> Result<(), Gap> {
    if !is_root() {
        return Err(Gap::Tool("not root: cannot probe the kernel".into()));
    }
    let name = format!("{PREFIX}{}-caps-{kind}", std::process::id());
    let ns = Netns::create(&name).map_err(|e| Gap::Tool(format!("{e:#}")))?;
    let r = (|| {
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])
            .map_err(|e| Gap::Tool(format!("{e:#}")))?;
        let mut args = vec!["link", "add", "link", "v0", "name", "t0", "type", kind];
        if kind == "ipvlan" {
            args.extend(["mode", "l3"]);
        }
        ns.ip(&args).map(|_| ()).map_err(|e| {
            let msg = format!("{e:#}");
            if msg.contains("Unknown device type") || msg.contains("not supported") {
                Gap::Kernel(format!("this kernel ({}) has no {kind}", kernel_release()))
            } else {
                Gap::Tool(msg)
            }
        })
    })();
    let _ = Netns::delete(&name);
    r
}

pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn detect() -> &'static Caps {
    static CAPS: OnceLock<Caps> = OnceLock::new();
    CAPS.get_or_init(|| Caps {
        root: is_root(),
        gobgpd: version("gobgpd", &["--version"]),
        macvlan: kernel_has("macvlan"),
        ipvlan: kernel_has("ipvlan"),
        dockerd: version("dockerd", &["--version"]),
        frr: version("zebra", &["--version"]),
        bird: version("bird", &["--version"]),
    })
}

pub fn under_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// `Ok(None)`: runs. `Ok(Some(reason))`: skipped. `Err(reason)`: must fail
/// (a tool missing under CI).
pub fn skip_reason(s: &Scenario, caps: &Caps, engine: &str) -> Result<Option<String>, String> {
    let ci = under_ci();
    let tool_gap = |what: String| {
        if ci {
            Err(format!(
                "{what} (under CI this is a failure: the install step is broken)"
            ))
        } else {
            Ok(Some(what))
        }
    };
    if !caps.root {
        return tool_gap("needs root (network namespaces); run with sudo".into());
    }
    if !s.engines.iter().any(|e| e == engine) {
        return Ok(Some(format!(
            "runs on the {} engine(s), not {engine}; run with --engine {}",
            s.engines.join(", "),
            s.engines[0]
        )));
    }
    if engine == "dockerd" && caps.dockerd.is_none() {
        return tool_gap("dockerd is not installed (apt-get install docker.io)".into());
    }
    for c in &s.requires {
        match c {
            Capability::Macvlan => match &caps.macvlan {
                Err(Gap::Kernel(e)) => return Ok(Some(format!("kernel gap: {e}"))),
                Err(Gap::Tool(e)) => {
                    return tool_gap(format!("cannot probe the kernel for macvlan: {e}"))
                }
                Ok(()) => {}
            },
            Capability::Ipvlan => match &caps.ipvlan {
                Err(Gap::Kernel(e)) => {
                    return Ok(Some(format!(
                        "kernel gap: {e}; run it in a VM with a stock kernel: harness run --vm {}",
                        s.file
                    )))
                }
                Err(Gap::Tool(e)) => {
                    return tool_gap(format!("cannot probe the kernel for ipvlan: {e}"))
                }
                Ok(()) => {}
            },
            Capability::NoIpvlan if caps.ipvlan.is_ok() => {
                return Ok(Some(
                    "this kernel has ipvlan; the scenario checks how its absence is reported"
                        .into(),
                ));
            }
            Capability::Gobgpd if caps.gobgpd.is_none() => {
                return tool_gap("gobgpd is not installed".into())
            }
            Capability::Dockerd if caps.dockerd.is_none() => {
                return tool_gap("dockerd is not installed".into())
            }
            Capability::Frr if caps.frr.is_none() => {
                return tool_gap("FRR is not installed".into())
            }
            Capability::Bird if caps.bird.is_none() => {
                return tool_gap("BIRD is not installed".into())
            }
            _ => {}
        }
    }
    if s.bgp.mode != crate::scenario::BgpMode::None && caps.gobgpd.is_none() {
        return tool_gap("gobgpd is not installed".into());
    }
    Ok(None)
}

/// The `harness check` text.
pub fn describe(caps: &Caps) -> String {
    let yes_no = |r: &Result<(), Gap>| match r {
        Ok(()) => "yes".to_string(),
        Err(e) => format!("no ({e})"),
    };
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "not installed".into());
    let mut s = String::new();
    s.push_str(&format!(
        "root:     {}\n",
        if caps.root {
            "yes"
        } else {
            "no (scenarios need root)"
        }
    ));
    s.push_str(&format!("kernel:   {}\n", kernel_release()));
    s.push_str(&format!("macvlan:  {}\n", yes_no(&caps.macvlan)));
    s.push_str(&format!("ipvlan:   {}\n", yes_no(&caps.ipvlan)));
    s.push_str(&format!("gobgpd:   {}\n", opt(&caps.gobgpd)));
    s.push_str(&format!("dockerd:  {}\n", opt(&caps.dockerd)));
    s.push_str(&format!("FRR:      {}\n", opt(&caps.frr)));
    s.push_str(&format!("BIRD:     {}\n", opt(&caps.bird)));
    s.push_str("\nwhat that means:\n");
    if !caps.root {
        s.push_str("- nothing can run: scenarios build network namespaces (run as root)\n");
    }
    if caps.gobgpd.is_none() {
        s.push_str("- BGP scenarios cannot run: install gobgpd (apt-get install gobgpd)\n");
    }
    if caps.macvlan.is_ok() {
        s.push_str("- macvlan scenarios run here\n");
    }
    if caps.ipvlan.is_err() {
        s.push_str("- ipvlan scenarios are skipped here; run them in a VM: harness run --vm scenarios/<file>.toml\n");
    } else {
        s.push_str("- ipvlan scenarios run here\n");
    }
    if caps.dockerd.is_none() {
        s.push_str("- the dockerd engine is unavailable: install docker.io\n");
    }
    s
}
