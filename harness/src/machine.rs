//! What this machine can do (`harness check`), and whether a scenario can
//! run here. A scenario is skipped, visibly and with the reason, only when a
//! capability is missing; under CI (`CI=true`) only the kernel's own gaps may
//! skip, so a broken install step fails the run instead of turning it green.
//!
//! In: the machine (root, tools, the kernel probed in a throw-away
//! namespace), a scenario, an engine, `HARNESS_REQUIRE` and
//! `HARNESS_EXPECTED_SKIPS`. Out: [`Caps`] (detected once), a skip reason or
//! a failure, the text of `harness check`. Owns the skip policy.

use std::sync::OnceLock;
use std::time::Duration;

use crate::netns::{Netns, PREFIX};
use crate::scenario::{Capability, Engine, Scenario};
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
    pub etcd: Option<String>,
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
        etcd: version("etcd", &["--version"]).filter(|_| which("etcdctl").is_some()),
    })
}

pub fn under_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// `Ok(None)`: runs. `Ok(Some(reason))`: skipped. `Err(reason)`: must fail
/// (a tool missing under CI, or a skip that [`skip_policy`] forbids here).
pub fn skip_reason(s: &Scenario, caps: &Caps, engine: Engine) -> Result<Option<String>, String> {
    match raw_skip_reason(s, caps, engine)? {
        None => Ok(None),
        // Not a gap of this machine: the file does not run on that engine.
        Some(reason) if !s.engines.contains(&engine) => Ok(Some(reason)),
        Some(reason) => skip_policy(&SkipPolicy::from_env()?, s, engine, reason).map(Some),
    }
}

/// The stable name of a capability, as scenario files spell it.
pub fn capability_name(c: Capability) -> &'static str {
    match c {
        Capability::Macvlan => "macvlan",
        Capability::Ipvlan => "ipvlan",
        Capability::NoIpvlan => "no-ipvlan",
        Capability::Gobgpd => "gobgpd",
        Capability::Dockerd => "dockerd",
        Capability::Frr => "frr",
        Capability::Bird => "bird",
        Capability::Etcd => "etcd",
    }
}

/// Parses a capability name as scenario files spell it.
pub fn parse_capability(name: &str) -> Result<Capability, String> {
    use serde::Deserialize;
    Capability::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
        name,
    ))
    .map_err(|_| {
        format!("unknown capability {name:?}: use macvlan, ipvlan, no-ipvlan, gobgpd, dockerd, frr, bird or etcd")
    })
}

/// Which skips are allowed where the suite runs.
/// - `HARNESS_REQUIRE=ipvlan,...`: a scenario that needs one of these must
///   not skip for any reason (set inside the ipvlan VM: a VM whose modules
///   do not load must fail, not report every ipvlan scenario as skipped).
/// - `HARNESS_EXPECTED_SKIPS=FILE` (used under CI): every skip must match a
///   line `SCENARIO ENGINE REASON-SUBSTRING` of the file; any other skip fails.
#[derive(Debug, Default, Clone)]
pub struct SkipPolicy {
    pub require: Vec<Capability>,
    /// The expected-skips file's name and its lines.
    pub expected: Option<(String, Vec<ExpectedSkip>)>,
}

/// One line of the expected-skips file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedSkip {
    pub scenario: String,
    pub engine: String,
    /// A substring of the skip reason.
    pub reason: String,
}

impl SkipPolicy {
    pub fn from_env() -> Result<SkipPolicy, String> {
        let mut p = SkipPolicy::default();
        if let Ok(list) = std::env::var("HARNESS_REQUIRE") {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                p.require.push(parse_capability(name)?);
            }
        }
        if let Some(path) = std::env::var_os("HARNESS_EXPECTED_SKIPS") {
            let path = std::path::PathBuf::from(path);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("HARNESS_EXPECTED_SKIPS={}: {e}", path.display()))?;
            p.expected = Some((path.display().to_string(), parse_expected_skips(&text)?));
        }
        Ok(p)
    }
}

/// Lines `SCENARIO ENGINE REASON-SUBSTRING`; `#` starts a comment.
pub fn parse_expected_skips(text: &str) -> Result<Vec<ExpectedSkip>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (scenario, engine) = (words.next(), words.next());
        let reason = words.collect::<Vec<_>>().join(" ");
        match (scenario, engine) {
            (Some(s), Some(e)) if !reason.is_empty() => out.push(ExpectedSkip {
                scenario: s.to_string(),
                engine: e.to_string(),
                reason,
            }),
            _ => {
                return Err(format!(
                    "expected-skips line {}: want `SCENARIO ENGINE REASON-SUBSTRING`, got {line:?}",
                    i + 1
                ))
            }
        }
    }
    Ok(out)
}

/// Turns a skip into a failure where the policy forbids it.
pub fn skip_policy(
    p: &SkipPolicy,
    s: &Scenario,
    engine: Engine,
    reason: String,
) -> Result<String, String> {
    if let Some(c) = p.require.iter().find(|c| s.requires.contains(c)) {
        return Err(format!(
            "would be skipped ({reason}), but HARNESS_REQUIRE says {} must work here",
            capability_name(*c)
        ));
    }
    if let Some((file, lines)) = &p.expected {
        let listed = lines.iter().any(|x| {
            x.scenario == s.name && x.engine == engine.name() && reason.contains(&x.reason)
        });
        if !listed {
            return Err(format!(
                "unexpected skip ({reason}): not listed in {file}; fix the machine, or list it there with its reason"
            ));
        }
    }
    Ok(reason)
}

fn raw_skip_reason(s: &Scenario, caps: &Caps, engine: Engine) -> Result<Option<String>, String> {
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
    if !s.engines.contains(&engine) {
        let names: Vec<&str> = s.engines.iter().map(|e| e.name()).collect();
        return Ok(Some(format!(
            "runs on the {} engine(s), not {engine}; run with --engine {}",
            names.join(", "),
            s.engines[0]
        )));
    }
    if engine == Engine::Dockerd && caps.dockerd.is_none() {
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
            Capability::Etcd if caps.etcd.is_none() => {
                return tool_gap(
                    "etcd and etcdctl are not installed (Debian: etcd-server etcd-client)".into(),
                )
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
    s.push_str(&format!("etcd:     {}\n", opt(&caps.etcd)));
    let per_link = crate::topology::per_link_ipv6_forwarding();
    s.push_str(&format!(
        "IPv6 fwd: {}\n",
        if per_link {
            "per link (force_forwarding)"
        } else {
            "host-wide only (no force_forwarding before Linux 6.17)"
        }
    ));
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
    if !per_link {
        s.push_str("- IPv6 scenarios on macvlan or ipvlan L2 set net.ipv6.conf.all.forwarding=1 on their hosts (the operator's step on such kernels), so the driver's per-link forwarding is not what they test here\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(name: &str, requires: &str) -> Scenario {
        let src =
            format!("description = \"t\"\nrequires = [{requires}]\n[[hosts]]\nname = \"h1\"\n");
        Scenario::parse(&src, Path::new(&format!("scenarios/{name}.toml"))).unwrap()
    }

    #[test]
    fn required_capabilities_may_not_skip() {
        let p = SkipPolicy {
            require: vec![Capability::Ipvlan],
            expected: None,
        };
        let s = scenario("l3", "\"ipvlan\"");
        let e = skip_policy(&p, &s, Engine::Emulator, "kernel gap: no ipvlan".into()).unwrap_err();
        assert!(
            e.contains("HARNESS_REQUIRE") && e.contains("no ipvlan"),
            "{e}"
        );
        // A scenario that does not need it keeps its skip.
        let s = scenario("other", "\"macvlan\"");
        assert_eq!(
            skip_policy(&p, &s, Engine::Emulator, "why".into()),
            Ok("why".to_string())
        );
    }

    #[test]
    fn only_listed_skips_pass_under_an_expected_list() {
        let lines = parse_expected_skips(
            "# comment\nl3   emulator  kernel gap: this kernel\n\nl3 dockerd has no ipvlan # why\n",
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        let p = SkipPolicy {
            require: vec![],
            expected: Some(("ci/expected-skips".into(), lines)),
        };
        let s = scenario("l3", "\"ipvlan\"");
        let reason = "kernel gap: this kernel (6.18) has no ipvlan".to_string();
        assert!(skip_policy(&p, &s, Engine::Emulator, reason.clone()).is_ok());
        assert!(skip_policy(&p, &s, Engine::Dockerd, reason.clone()).is_ok());
        // Another reason, another engine or another scenario is a failure.
        let e =
            skip_policy(&p, &s, Engine::Emulator, "dockerd is not installed".into()).unwrap_err();
        assert!(
            e.contains("unexpected skip") && e.contains("ci/expected-skips"),
            "{e}"
        );
        assert!(skip_policy(&p, &scenario("l2", "\"ipvlan\""), Engine::Emulator, reason).is_err());
        assert!(parse_expected_skips("l3 emulator\n").is_err());
    }

    #[test]
    fn capability_names_round_trip() {
        for c in [
            Capability::Macvlan,
            Capability::Ipvlan,
            Capability::NoIpvlan,
            Capability::Gobgpd,
            Capability::Dockerd,
            Capability::Frr,
            Capability::Bird,
            Capability::Etcd,
        ] {
            assert_eq!(parse_capability(capability_name(c)), Ok(c));
        }
        assert!(parse_capability("vxlan").is_err());
    }
}
