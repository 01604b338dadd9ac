//! What this machine can do (`harness check`), and whether a scenario can
//! run here. A scenario is skipped, visibly and with the reason, only when a
//! capability is missing; under CI (`CI=true`) only the kernel's own gaps may
//! skip, so a broken install step fails the run instead of turning it green.
//!
//! In: the machine (root, tools, the kernel probed in a throw-away
//! namespace), a scenario, an engine, `HARNESS_REQUIRE` and
//! `HARNESS_EXPECTED_SKIPS` (its lines in [`crate::skips`]). Out: [`Caps`]
//! (detected once) and the kernel's [`Facts`], a skip reason or a failure,
//! the text of `harness check`. Owns the skip policy.

use std::sync::OnceLock;
use std::time::Duration;

use crate::netns::{Netns, PREFIX};
use crate::scenario::{Capability, Engine, Scenario};
use crate::skips::{ExpectedSkip, Facts};
use crate::util::{is_root, run_output, which};

#[derive(Debug, Clone)]
pub struct Caps {
    pub root: bool,
    pub gobgpd: Option<String>,
    /// GoBGP 4.x (`gobgpd-v4`, built by `ci/install.sh full`).
    pub gobgpd_v4: Option<String>,
    pub macvlan: Result<(), Gap>,
    pub ipvlan: Result<(), Gap>,
    /// 802.1Q sub-interfaces (the driver's `parent=eth1.10`).
    pub vlan: Result<(), Gap>,
    pub dockerd: Option<String>,
    pub frr: Option<String>,
    pub bird: Option<String>,
    pub etcd: Option<String>,
    /// `docker-registry` (Debian's distribution 2.x).
    pub registry: Option<String>,
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
        match kind {
            "ipvlan" => args.extend(["mode", "l3"]),
            "vlan" => args.extend(["id", "10"]),
            _ => {}
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
        gobgpd_v4: version("gobgpd-v4", &["--version"]).filter(|_| which("gobgp-v4").is_some()),
        macvlan: kernel_has("macvlan"),
        ipvlan: kernel_has("ipvlan"),
        vlan: kernel_has("vlan"),
        dockerd: version("dockerd", &["--version"]),
        frr: version("zebra", &["--version"]),
        bird: version("bird", &["--version"]),
        etcd: version("etcd", &["--version"]).filter(|_| which("etcdctl").is_some()),
        registry: version("docker-registry", &["--version"]),
    })
}

/// What the expected-skips conditions ask of this kernel.
pub fn facts(caps: &Caps) -> Facts {
    let mut f = Facts::default();
    for (name, has) in [
        ("ipvlan", caps.ipvlan.is_ok()),
        ("vlan", caps.vlan.is_ok()),
        (
            "force-forwarding",
            crate::topology::per_link_ipv6_forwarding(),
        ),
    ] {
        if has {
            f.has.insert(name.to_string());
        }
    }
    f
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
        Capability::Registry => "registry",
    }
}

/// Parses a capability name as scenario files spell it.
pub fn parse_capability(name: &str) -> Result<Capability, String> {
    use serde::Deserialize;
    Capability::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
        name,
    ))
    .map_err(|_| {
        format!("unknown capability {name:?}: use macvlan, ipvlan, no-ipvlan, gobgpd, dockerd, frr, bird, etcd or registry")
    })
}

/// Which skips are allowed where the suite runs.
/// - `HARNESS_REQUIRE=ipvlan,...`: a scenario that needs one of these must
///   not skip for any reason (set inside the ipvlan VM: a VM whose modules
///   do not load must fail, not report every ipvlan scenario as skipped).
/// - `HARNESS_EXPECTED_SKIPS=FILE` (used under CI): every skip must match a
///   line `SCENARIO ENGINE REASON-SUBSTRING` of the file that holds on this
///   kernel; any other skip fails. (That every line still happens is
///   `harness skips check`'s part, over the whole suite.)
#[derive(Debug, Default, Clone)]
pub struct SkipPolicy {
    pub require: Vec<Capability>,
    /// The expected-skips file's name and its lines that hold on this kernel.
    pub expected: Option<(String, Vec<ExpectedSkip>)>,
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
            let lines = crate::skips::parse_expected(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let here = crate::skips::applying(&lines, &facts(detect()));
            p.expected = Some((path.display().to_string(), here));
        }
        Ok(p)
    }
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
        if !crate::skips::allowed(lines, &s.name, engine.name(), &reason) {
            return Err(format!(
                "unexpected skip ({reason}): not listed in {file} for this kernel ({}); fix the machine, or list it there with its reason",
                facts(detect()).describe()
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
            Capability::Registry if caps.registry.is_none() => {
                return tool_gap(
                    "docker-registry is not installed (Debian: docker-registry)".into(),
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

/// What the driver binary a run starts can do, asked of the binary itself:
/// clap refuses an option or a subcommand it does not know, so each probe
/// is one `--help` that succeeds only when the feature is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverCaps {
    /// It speaks gobgpd 4.x's API and takes BFD (`ipvlan-bgp --bfd --help`).
    pub gobgp_v4: bool,
    /// It has `drain` and `undrain` (`ipvlan-bgp drain --help`).
    pub drain: bool,
}

impl DriverCaps {
    /// Probes `bin`; a binary that cannot be run at all is an error.
    pub fn probe(bin: &std::path::Path) -> Result<DriverCaps, String> {
        let accepts = |args: &[&str]| {
            run_output(&bin.display().to_string(), args, Duration::from_secs(10))
                .map(|o| o.status.success())
                .map_err(|e| format!("cannot run the driver binary {}: {e:#}", bin.display()))
        };
        Ok(DriverCaps {
            gobgp_v4: accepts(&["--bfd", "--help"])?,
            drain: accepts(&["drain", "--help"])?,
        })
    }
}

/// Whether a run of `s` on GoBGP `line` (`None`: no BGP) with this driver
/// binary can happen here: `Ok(None)` runs; `Ok(Some(reason))` skips
/// visibly (the scenario cannot run on that line: BFD on 3.x; or the driver lacks what the run needs: gobgpd 4.x's API,
/// `drain`); `Err` when the line's gobgpd is missing under CI (the install
/// step is broken) or the skip is one [`skip_policy`] forbids here (under
/// CI every such skip must be listed in ci/expected-skips).
pub fn line_skip_reason(
    s: &Scenario,
    caps: &Caps,
    driver: &DriverCaps,
    line: Option<crate::scenario::GobgpLine>,
    engine: Engine,
) -> Result<Option<String>, String> {
    match raw_line_skip_reason(s, caps, driver, line)? {
        None => Ok(None),
        Some(reason) => skip_policy(&SkipPolicy::from_env()?, s, engine, reason).map(Some),
    }
}

fn raw_line_skip_reason(
    s: &Scenario,
    caps: &Caps,
    driver: &DriverCaps,
    line: Option<crate::scenario::GobgpLine>,
) -> Result<Option<String>, String> {
    use crate::scenario::{Action, GobgpLine};
    if !driver.drain
        && s.steps
            .iter()
            .any(|st| matches!(st.action, Action::Drain { .. } | Action::Undrain { .. }))
    {
        return Ok(Some(
            "its drain steps need a driver with `ipvlan-bgp drain` and `undrain`, which this driver binary lacks"
                .into(),
        ));
    }
    let Some(line) = line else {
        return Ok(None);
    };
    if line == GobgpLine::V3 && s.hosts.iter().any(|h| s.host_runs_bfd(&h.name)) {
        return Ok(Some(
            "runs BFD on its hosts' sessions, which gobgpd 3.x lacks; run it with --gobgp-version v4"
                .into(),
        ));
    }
    if line == GobgpLine::V4 {
        if caps.gobgpd_v4.is_none() {
            let what =
                "gobgpd-v4 and gobgp-v4 are not installed (ci/install.sh full builds GoBGP 4.x)";
            return if under_ci() {
                Err(format!(
                    "{what} (under CI this is a failure: the install step is broken)"
                ))
            } else {
                Ok(Some(what.into()))
            };
        }
        if !driver.gobgp_v4 {
            return Ok(Some(
                "this driver binary does not speak gobgpd 4.x's API (it refuses --bfd); run it with a driver that has the v4 codec"
                    .into(),
            ));
        }
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
    s.push_str(&format!("802.1Q:   {}\n", yes_no(&caps.vlan)));
    s.push_str(&format!("gobgpd:   {}\n", opt(&caps.gobgpd)));
    s.push_str(&format!(
        "gobgpd-v4: {}\n",
        caps.gobgpd_v4
            .clone()
            .unwrap_or_else(|| "not installed (ci/install.sh full builds it)".into())
    ));
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
        let lines = crate::skips::parse_expected(
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
    }

    /// A run on 4.x with a driver that only speaks 3.x, or with drain steps
    /// and a driver without `drain`, skips with the reason; never runs.
    #[test]
    fn driver_gaps_skip_visibly() {
        use crate::scenario::GobgpLine;
        let caps = Caps {
            root: true,
            gobgpd: Some("3.10".into()),
            gobgpd_v4: Some("4.8".into()),
            macvlan: Ok(()),
            ipvlan: Ok(()),
            vlan: Ok(()),
            dockerd: None,
            frr: None,
            bird: None,
            etcd: None,
            registry: None,
        };
        let src = "description = \"t\"\ngobgp = [\"v3\", \"v4\"]\n[[hosts]]\nname = \"h1\"\n\n[[steps]]\ndo = \"drain\"\nhost = \"h1\"\n";
        let s = Scenario::parse(src, Path::new("scenarios/d.toml")).unwrap();
        let full = DriverCaps {
            gobgp_v4: true,
            drain: true,
        };
        for line in [GobgpLine::V3, GobgpLine::V4] {
            assert_eq!(raw_line_skip_reason(&s, &caps, &full, Some(line)), Ok(None));
        }
        let v3_only = DriverCaps {
            gobgp_v4: false,
            drain: true,
        };
        assert_eq!(
            raw_line_skip_reason(&s, &caps, &v3_only, Some(GobgpLine::V3)),
            Ok(None)
        );
        let r = raw_line_skip_reason(&s, &caps, &v3_only, Some(GobgpLine::V4));
        assert!(
            matches!(&r, Ok(Some(m)) if m.contains("does not speak gobgpd 4.x")),
            "{r:?}"
        );
        let no_drain = DriverCaps {
            gobgp_v4: true,
            drain: false,
        };
        let r = raw_line_skip_reason(&s, &caps, &no_drain, Some(GobgpLine::V3));
        assert!(matches!(&r, Ok(Some(m)) if m.contains("drain")), "{r:?}");
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
