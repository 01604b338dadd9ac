//! The steps that do something: create and delete networks, start, stop and
//! kill containers, stop/start/kill/restart/freeze/thaw daemons, routers
//! down and up, links, uplinks and ToR ports down and up, ToR ports blackholed, inject and plant routes, run commands,
//! pause, flood and wait for a flood, send a plugin request.
//!
//! In: one [`Action`] the play loop dispatched here (not an expectation).
//! Out: `Ok(None)` when it is done (or `Ok(Some(d))` for `flood-wait`'s own
//! measure), or the error that fails the step. Owns nothing but the arms of
//! its `match`; the state it changes is the [`Runner`]'s.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use super::flood::flood;
use super::{Runner, Wave, POLL};
use crate::engine::Control;
use crate::scenario::Action;
use crate::topology::UNDERLAY_IF;

impl Runner<'_> {
    /// A router and its end of its link to dual-homed `host`.
    fn tor_port(&self, router: &str, host: &str) -> Result<(&crate::topology::RouterRt, String)> {
        let u = self
            .s
            .uplinks_to(router)
            .find(|u| self.s.uplink_host(&u.segment).map(|(h, _)| h.name.as_str()) == Some(host))
            .ok_or_else(|| anyhow!("host {host} has no uplink to router {router}"))?;
        let r = self
            .w
            .routers
            .iter()
            .find(|r| r.def.name == router)
            .ok_or_else(|| anyhow!("unknown router {router}"))?;
        Ok((r, u.router_iface(host)))
    }

    /// Plays a step that does something (see `is_expectation` for the others).
    pub(super) fn act(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::RouterDown { router } | Action::RouterUp { router } => {
                let up = matches!(a, Action::RouterUp { .. });
                let r = self
                    .w
                    .routers
                    .iter_mut()
                    .find(|r| &r.def.name == router)
                    .ok_or_else(|| anyhow!("unknown router {router}"))?;
                if up {
                    r.up()?
                } else {
                    r.down()?
                }
                Ok(None)
            }
            Action::CreateNetwork {
                network,
                hosts,
                expect_error: None,
            } => {
                for h in self.hosts_of(network, hosts)? {
                    self.create_network(network, &h)?;
                }
                Ok(None)
            }
            Action::CreateNetwork {
                network,
                hosts,
                expect_error: Some(want),
            } => {
                for h in self.hosts_of(network, hosts)? {
                    match self.create_network(network, &h) {
                        Ok(()) => bail!("creating network {network} on {h} succeeded; expected an error containing {want:?}"),
                        Err(e) => {
                            let seen = format!("{e:#}");
                            if !seen.contains(want.as_str()) {
                                bail!("creating network {network} on {h} failed, but the user sees {seen:?}, which does not contain {want:?}");
                            }
                            eprintln!("[{}] as expected, the user sees: {seen}", self.s.name);
                        }
                    }
                }
                Ok(None)
            }
            Action::DeleteNetwork { network, hosts } => {
                for h in self.hosts_of(network, hosts)? {
                    self.delete_network(network, &h)?;
                }
                Ok(None)
            }
            Action::Start {
                containers,
                expect_error,
                within,
            } => {
                let mut slowest = Duration::ZERO;
                let first = Instant::now();
                let names = self.s.expand(containers);
                let count = names.len();
                if count > 1 && expect_error.is_none() && within.is_none() {
                    // Many at once: each host's in order, several hosts at a time.
                    self.start_all(&names)?;
                    self.wave = Some(Wave {
                        what: "start",
                        count,
                        first,
                        last: Instant::now(),
                    });
                    return Ok(None);
                }
                for name in names {
                    if self.running.contains_key(&name) {
                        bail!("{name} is already running");
                    }
                    let t = Instant::now();
                    let mut attempts = 0;
                    let outcome = loop {
                        attempts += 1;
                        let r = self.start_one(&name);
                        match (&r, within) {
                            // An expected failure is never retried.
                            (Err(_), Some(w))
                                if expect_error.is_none() && t.elapsed() < self.scale(*w) =>
                            {
                                std::thread::sleep(POLL)
                            }
                            _ => break r,
                        }
                    };
                    let took = t.elapsed();
                    slowest = slowest.max(took);
                    match (outcome, expect_error) {
                        (Ok(c), None) => {
                            self.running.insert(name.clone(), c);
                            if let Some(w) = within {
                                if took > self.scale(*w) {
                                    bail!("{name} started, but took {took:?} (limit {:?})", self.scale(*w));
                                }
                            }
                        }
                        (Err(e), None) if within.is_some() => {
                            return Err(e.context(format!(
                                "{name} did not start within {:?} ({attempts} attempts); the last error",
                                took
                            )))
                        }
                        (Err(e), None) => return Err(e),
                        (Ok(c), Some(want)) => {
                            self.running.insert(name.clone(), c);
                            bail!("{name} started; expected an error containing {want:?}");
                        }
                        (Err(e), Some(want)) => {
                            let seen = format!("{e:#}");
                            if !seen.contains(want.as_str()) {
                                bail!("starting {name} failed, but the user sees {seen:?}, which does not contain {want:?}");
                            }
                            if let Some(w) = within {
                                if took > self.scale(*w) {
                                    bail!("starting {name} failed as expected, but only after {took:?} (limit {:?})", self.scale(*w));
                                }
                            }
                            eprintln!("[{}] as expected, after {took:?} the user sees: {seen}", self.s.name);
                        }
                    }
                }
                self.wave = Some(Wave {
                    what: "start",
                    count,
                    first,
                    last: Instant::now(),
                });
                Ok(within.map(|_| slowest))
            }
            Action::StartProbedFromRoute {
                container,
                from,
                family,
                within,
            } => self.start_probed_from_route(container, from, *family, *within),
            Action::KillContainer { containers } => {
                for name in self.s.expand(containers) {
                    let c = self
                        .running
                        .remove(&name)
                        .ok_or_else(|| anyhow!("{name} is not running"))?;
                    self.tcp.forget(&c.netns);
                    // Reaped at teardown even if the kill half failed.
                    self.killed.push(c.clone());
                    self.engine
                        .kill(&self.w, &c)
                        .with_context(|| format!("kill {name}"))?;
                }
                Ok(None)
            }
            Action::Stop { containers } => {
                let first = Instant::now();
                let names = self.s.expand(containers);
                let count = names.len();
                let mut cs = Vec::new();
                for name in &names {
                    if !self.running.contains_key(name) {
                        bail!("{name} is not running");
                    }
                }
                for name in &names {
                    if let Some(c) = self.running.remove(name) {
                        self.tcp.forget(&c.netns);
                        cs.push(c);
                    }
                }
                let results = self.engine.stop_many(&self.w, &cs);
                if let Some((c, Err(e))) = cs.iter().zip(results).find(|(_, r)| r.is_err()) {
                    return Err(e.context(format!("stop {}", c.name)));
                }
                self.wave = Some(Wave {
                    what: "stop",
                    count,
                    first,
                    last: Instant::now(),
                });
                Ok(None)
            }
            Action::Kill { host, daemon } => self.control(host, *daemon, Control::Kill),
            Action::StopDaemon { host, daemon } => self.control(host, *daemon, Control::Stop),
            Action::StartDaemon { host, daemon } => self.control(host, *daemon, Control::Start),
            Action::Restart { host, daemon } => self.control(host, *daemon, Control::Restart),
            Action::UpgradePlugin { host } => {
                let hi = self.w.host_index(host)?;
                self.note = Some(self.engine.upgrade_driver(&self.w, hi)?);
                Ok(None)
            }
            Action::UplinkDown { host, uplink } | Action::UplinkUp { host, uplink } => {
                let state = if matches!(a, Action::UplinkUp { .. }) {
                    "up"
                } else {
                    "down"
                };
                self.w.host(host)?.ns.ip(&["link", "set", uplink, state])?;
                Ok(None)
            }
            Action::TorPortDown { router, host } | Action::TorPortUp { router, host } => {
                let state = if matches!(a, Action::TorPortUp { .. }) {
                    "up"
                } else {
                    "down"
                };
                let (r, port) = self.tor_port(router, host)?;
                r.ns.ip(&["link", "set", &port, state])?;
                Ok(None)
            }
            Action::Blackhole { router, host } => {
                let (r, port) = self.tor_port(router, host)?;
                crate::topology::blackhole(&r.ns, &port)?;
                Ok(None)
            }
            Action::BlackholeEnd { router, host } => {
                let (r, port) = self.tor_port(router, host)?;
                crate::topology::blackhole_end(&r.ns, &port)?;
                Ok(None)
            }
            Action::LinkDown { host } => {
                self.w
                    .host(host)?
                    .ns
                    .ip(&["link", "set", UNDERLAY_IF, "down"])?;
                Ok(None)
            }
            Action::LinkUp { host } => {
                self.w
                    .host(host)?
                    .ns
                    .ip(&["link", "set", UNDERLAY_IF, "up"])?;
                Ok(None)
            }
            Action::Drain {
                host,
                wait,
                timeout,
            } => {
                let mut args = vec!["drain".to_string()];
                if *wait {
                    let t = timeout.map_or(Duration::from_secs(120), |t| self.scale(t));
                    args.extend([
                        "--wait".into(),
                        "--timeout".into(),
                        t.as_secs().max(1).to_string(),
                    ]);
                }
                self.driver_cli(host, args)?;
                Ok(None)
            }
            Action::Undrain { host } => {
                self.driver_cli(host, vec!["undrain".into()])?;
                Ok(None)
            }
            Action::Inject {
                host,
                prefix,
                next_hop,
            } => {
                self.gobgp_rib(host, "add", *prefix, *next_hop)?;
                self.injected.push((host.clone(), *prefix, *next_hop));
                Ok(None)
            }
            Action::Run { host, command } => {
                let exec_root = self.w.host(host)?.docker_exec_root();
                let command = command
                    .iter()
                    .map(|a| {
                        let a = a.replace("{docker_exec_root}", &exec_root.display().to_string());
                        self.substitute(&a)
                    })
                    .collect::<Result<Vec<String>>>()?;
                let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
                let out =
                    self.w
                        .host(host)?
                        .ns
                        .exec(&command[0], &args, Duration::from_secs(30))?;
                if !out.status.success() {
                    bail!(
                        "`{}` on {host} failed: {}",
                        command.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Ok(None)
            }
            Action::PluginCall {
                host,
                daemon,
                method,
                body,
                expect_error,
            } => {
                self.plugin_call(host, *daemon, method, body, expect_error.as_deref())?;
                Ok(None)
            }
            Action::Exec { container, command } => self.exec(container, command),
            Action::PlantRoute { host, prefix, via } => {
                let proto = ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL.to_string();
                let (p, v) = (prefix.to_string(), via.to_string());
                self.w
                    .host(host)?
                    .ns
                    .ip(&["route", "replace", &p, "via", &v, "proto", &proto])?;
                Ok(None)
            }
            Action::Freeze { host, daemon } => {
                let hi = self.w.host_index(host)?;
                self.w.send_daemon(hi, *daemon, Signal::SIGSTOP)?;
                Ok(None)
            }
            Action::Thaw { host, daemon } => {
                let hi = self.w.host_index(host)?;
                self.w.send_daemon(hi, *daemon, Signal::SIGCONT)?;
                Ok(None)
            }
            Action::Pause { duration } => {
                std::thread::sleep(self.scale(*duration));
                Ok(None)
            }
            Action::Flood {
                id,
                host,
                count,
                first,
                next_hop,
            } => {
                if self.floods.contains_key(id) {
                    bail!("flood {id} is already running");
                }
                let h = self.w.host(host)?;
                let api = h.gobgp_api();
                let nh = next_hop.unwrap_or(h.addr.addr());
                let (count, first) = (*count, *first);
                let handle = std::thread::spawn(move || flood(&api, first, count, nh));
                self.floods.insert(id.clone(), handle);
                Ok(None)
            }
            Action::FloodWait { id, within } => {
                let handle = self
                    .floods
                    .remove(id)
                    .ok_or_else(|| anyhow!("no flood named {id}"))?;
                let deadline = Instant::now() + self.scale(*within);
                while !handle.is_finished() {
                    if Instant::now() > deadline {
                        bail!("flood {id} still sending after {:?}", self.scale(*within));
                    }
                    std::thread::sleep(POLL);
                }
                let took = handle
                    .join()
                    .map_err(|_| anyhow!("flood {id}: its thread panicked"))??;
                eprintln!(
                    "[{}] flood {id}: gobgpd accepted every path in {took:?}",
                    self.s.name
                );
                Ok(Some(took))
            }
            other => bail!("internal: {other:?} is not an action step"),
        }
    }

    /// Runs the driver binary's CLI (`ipvlan-bgp SUBCOMMAND ... --socket S`)
    /// against a host's driver; fails with its output if it fails.
    fn driver_cli(&mut self, host: &str, mut args: Vec<String>) -> Result<()> {
        let sock = self.w.host(host)?.socket().display().to_string();
        args.extend(["--socket".into(), sock]);
        let bin = self.w.opts.driver_bin.display().to_string();
        let wait = args
            .iter()
            .position(|a| a == "--timeout")
            .and_then(|i| args.get(i + 1))
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        let out = crate::util::run_output(&bin, &args, Duration::from_secs(30 + wait))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if !out.status.success() {
            bail!("`ipvlan-bgp {}` on {host} failed: {text}", args.join(" "));
        }
        self.note = Some(format!("ipvlan-bgp {}: {text}", args[0]));
        Ok(())
    }
}
