//! A real etcd cluster for the cluster-wide IPAM: `members` etcd
//! processes (Debian's `etcd-server`, 3.4), each in a namespace of its own
//! wired to a segment like a host, addressed at the top of the segment.
//!
//! In: the scenario's `[etcd]` section (members, TLS, auth, segment,
//! gateway) and the Docker hosts. Out: [`EtcdRt`]: running members
//! (started, killed and started again by pid), the driver flags of each
//! host (`--etcd-endpoints`, with TLS a CA and a client certificate per
//! host, with auth a user per host whose password is in a file), and
//! `etcdctl` as root. With `tls`, a CA, a server certificate for the
//! members' addresses and a client certificate per host (and root) are
//! made with openssl; with `auth`, a role reaching only the IPAM's prefix
//! and one user per host, then `auth enable`. Each host's files sit in a
//! folder of their own (`etcd/<host>/`): the managed plugin mounts it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::Ipv4Net;
use nix::sys::signal::Signal;

use super::daemon::{await_ready, Daemon};
use super::wire::{make_ns, wire};
use crate::cleanup::Cleanup;
use crate::netns::Netns;
use crate::scenario::Scenario;
use crate::util::{require, run_output};

/// The key prefix the per-host users' role reaches (the driver's default).
pub const IPAM_PREFIX: &str = ipvlan_bgp::ipam::DEFAULT_PREFIX;
/// The interface of a member.
const MEMBER_IF: &str = "eth1";
const CTL_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Member {
    pub name: String,
    pub ns: Netns,
    pub addr: Ipv4Net,
    pub daemon: Daemon,
    data: PathBuf,
}

pub struct EtcdRt {
    pub members: Vec<Member>,
    pub dir: PathBuf,
    pub tls: bool,
    pub auth: bool,
    token: String,
    root_password: String,
    /// Set once `auth enable` went through: etcdctl then logs in as root.
    auth_on: AtomicBool,
    /// The Docker hosts that get a user and a client certificate.
    hosts: Vec<String>,
}

/// The members wired (namespace, wire, address, default route) and their
/// files made; nothing started yet ([`EtcdRt::start`]).
pub fn wire_all(
    s: &Scenario,
    cleanup: &Cleanup,
    id: &str,
    dir: &Path,
    switch: &Netns,
) -> Result<Option<EtcdRt>> {
    let Some(e) = &s.etcd else {
        return Ok(None);
    };
    require("etcd")?;
    require("etcdctl")?;
    let seg = e.segment.clone().unwrap_or_default();
    let gateway = e
        .gateway
        .as_deref()
        .and_then(|g| s.router(g))
        .and_then(|r| r.links.get(&seg))
        .map(|a| a.addr());
    let edir = dir.join("etcd");
    std::fs::create_dir_all(&edir)?;
    let mut members = Vec::new();
    for (i, addr) in e.addresses.iter().enumerate() {
        let name = format!("e{}", i + 1);
        let ns = make_ns(cleanup, &format!("{id}-{name}"))?;
        wire(&ns, MEMBER_IF, switch, &format!("p-{name}"), &seg)
            .with_context(|| format!("wire etcd member {name} to segment {seg}"))?;
        let mut lines = vec![
            "link set lo up".to_string(),
            format!("addr add {addr} dev {MEMBER_IF}"),
            format!("link set {MEMBER_IF} up"),
        ];
        if let Some(g) = gateway {
            lines.push(format!("route add default via {g}"));
        }
        ns.ip_batch(&lines)?;
        members.push(Member {
            daemon: Daemon::new(edir.join(format!("{name}.log"))),
            data: edir.join(format!("{name}.data")),
            name,
            ns,
            addr: *addr,
        });
    }
    let hosts: Vec<String> = s
        .hosts
        .iter()
        .filter(|h| h.role == crate::scenario::Role::Docker)
        .map(|h| h.name.clone())
        .collect();
    let rt = EtcdRt {
        members,
        dir: edir,
        tls: e.tls,
        auth: e.auth,
        token: id.to_string(),
        root_password: secret(),
        auth_on: AtomicBool::new(false),
        hosts,
    };
    if rt.tls {
        rt.make_certs()?;
    }
    for h in &rt.hosts {
        let hd = rt.host_dir(h);
        std::fs::create_dir_all(&hd)?;
        if rt.auth {
            write_secret(&hd.join("password"), &secret())?;
        }
    }
    Ok(Some(rt))
}

/// A password: 24 hex characters from the kernel's random source.
fn secret() -> String {
    let mut b = [0u8; 12];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{text}\n").as_bytes())?;
    Ok(())
}

impl EtcdRt {
    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The folder of one host's etcd files (CA, client certificate and key,
    /// password): what the managed plugin mounts.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join(host)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://{}:2379", self.scheme(), m.addr.addr()))
            .collect()
    }

    /// The member named `name` (`e1`...).
    pub fn member(&self, name: &str) -> Result<&Member> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| anyhow!("no etcd member {name}"))
    }

    /// Host `host`'s driver flags for this cluster.
    pub fn driver_args(&self, host: &str) -> Vec<String> {
        let hd = self.host_dir(host);
        let f = |n: &str| hd.join(n).display().to_string();
        let mut a = vec!["--etcd-endpoints".to_string(), self.endpoints().join(",")];
        if self.tls {
            a.extend([
                "--etcd-ca".into(),
                f("ca.crt"),
                "--etcd-cert".into(),
                f("client.crt"),
                "--etcd-key".into(),
                f("client.key"),
            ]);
        }
        if self.auth {
            a.extend([
                "--etcd-user".into(),
                host.to_string(),
                "--etcd-password-file".into(),
                f("password"),
            ]);
        }
        a
    }

    /// A CA, a server certificate for every member's address, a client
    /// certificate for root and for each host (CN = its user name).
    fn make_certs(&self) -> Result<()> {
        require("openssl")?;
        let d = self.pki();
        std::fs::create_dir_all(&d)?;
        let ossl = |args: &[&str]| -> Result<()> {
            let mut full = vec![
                "-c".to_string(),
                format!("cd {} && openssl \"$@\"", d.display()),
                "openssl".into(),
            ];
            full.extend(args.iter().map(|a| a.to_string()));
            let o = run_output("sh", &full, CTL_TIMEOUT)?;
            if !o.status.success() {
                bail!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            Ok(())
        };
        ossl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=harness-etcd-ca",
        ])?;
        let sans: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("IP:{}", m.addr.addr()))
            .collect();
        let mut names = vec![(
            "server".to_string(),
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )];
        for u in std::iter::once("root").chain(self.hosts.iter().map(String::as_str)) {
            names.push((u.to_string(), "extendedKeyUsage=clientAuth\n".into()));
        }
        for (name, ext) in &names {
            std::fs::write(d.join(format!("{name}.ext")), ext)?;
            ossl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ])?;
            ossl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ])?;
        }
        for h in &self.hosts {
            let hd = self.host_dir(h);
            std::fs::create_dir_all(&hd)?;
            std::fs::copy(d.join("ca.crt"), hd.join("ca.crt"))?;
            std::fs::copy(d.join(format!("{h}.crt")), hd.join("client.crt"))?;
            std::fs::copy(d.join(format!("{h}.key")), hd.join("client.key"))?;
        }
        Ok(())
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}:2380", m.name, m.addr.addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `name` (again: its data folder is kept), without waiting.
    pub fn spawn(&self, name: &str, cleanup: &Cleanup) -> Result<()> {
        let m = self.member(name)?;
        if m.daemon.running() {
            return Ok(());
        }
        let ip = m.addr.addr();
        let client = format!("{}://{ip}:2379", self.scheme());
        let mut args: Vec<String> = [
            "--name",
            &m.name,
            "--data-dir",
            &m.data.display().to_string(),
            "--listen-peer-urls",
            &format!("http://{ip}:2380"),
            "--initial-advertise-peer-urls",
            &format!("http://{ip}:2380"),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--initial-cluster",
            &self.initial_cluster(),
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            &self.token,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.tls {
            let p = self.pki();
            args.extend([
                "--cert-file".into(),
                p.join("server.crt").display().to_string(),
                "--key-file".into(),
                p.join("server.key").display().to_string(),
                "--trusted-ca-file".into(),
                p.join("ca.crt").display().to_string(),
                "--client-cert-auth".into(),
            ]);
        }
        m.daemon
            .spawn(Some(&m.ns.path()), &require("etcd")?, &args)
            .with_context(|| format!("start etcd member {name}"))?;
        m.daemon
            .stop_at_cleanup(cleanup, format!("stop etcd member {name}"));
        Ok(())
    }

    /// SIGKILL member `name` (the pid we started).
    pub fn kill(&self, name: &str) -> Result<()> {
        self.member(name)?.daemon.signal(Signal::SIGKILL)
    }

    /// Starts every member, waits until the cluster answers, then (with
    /// `auth`) makes the role and the users and turns auth on.
    pub fn start(&self, cleanup: &Cleanup, within: Duration) -> Result<()> {
        for m in &self.members {
            self.spawn(&m.name, cleanup)?;
        }
        let daemons: Vec<&Daemon> = self.members.iter().map(|m| &m.daemon).collect();
        await_ready(
            &format!("etcd ({} members)", self.members.len()),
            &daemons,
            within,
            Duration::from_millis(200),
            || self.etcdctl(&["endpoint", "health"]).map(drop),
        )?;
        if self.auth {
            self.enable_auth()?;
        }
        Ok(())
    }

    /// A role that reaches only the IPAM's prefix, a user per host with it,
    /// root, then `auth enable`.
    fn enable_auth(&self) -> Result<()> {
        let ctl = |a: &[&str]| self.etcdctl(a).map(drop);
        ctl(&[
            "user",
            "add",
            &format!("root:{}", self.root_password),
            "--interactive=false",
        ])?;
        ctl(&["role", "add", "ipam"])?;
        ctl(&[
            "role",
            "grant-permission",
            "ipam",
            "--prefix=true",
            "readwrite",
            IPAM_PREFIX,
        ])?;
        for h in &self.hosts {
            let pw = std::fs::read_to_string(self.host_dir(h).join("password"))?;
            ctl(&[
                "user",
                "add",
                &format!("{h}:{}", pw.trim()),
                "--interactive=false",
            ])?;
            ctl(&["user", "grant-role", h, "ipam"])?;
        }
        ctl(&["auth", "enable"])?;
        self.auth_on.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// `etcdctl ARGS` against every member, run in the first member's
    /// namespace, as root (its certificate with TLS, its password once auth
    /// is on); the output, or the error with etcdctl's words.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let m = &self.members[0];
        let p = self.pki();
        let endpoints = self.endpoints().join(",");
        let mut full: Vec<String> = vec!["--endpoints".into(), endpoints];
        if self.tls {
            full.extend([
                "--cacert".into(),
                p.join("ca.crt").display().to_string(),
                "--cert".into(),
                p.join("root.crt").display().to_string(),
                "--key".into(),
                p.join("root.key").display().to_string(),
            ]);
        }
        if self.auth_on.load(Ordering::SeqCst) {
            full.extend(["--user".into(), format!("root:{}", self.root_password)]);
        }
        full.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let o = m.ns.exec(
            &require("etcdctl")?.display().to_string(),
            &refs,
            CTL_TIMEOUT,
        )?;
        if !o.status.success() {
            bail!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// The members' log tails and addresses, for a failed scenario.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            out.push_str(&format!(
                "\n===== etcd member {} ({}, {}) =====\n{}\n",
                m.name,
                m.addr,
                if m.daemon.running() {
                    "running"
                } else {
                    "NOT RUNNING"
                },
                crate::util::tail(&m.daemon.log, 15)
            ));
        }
        out
    }

    /// The address of member `name`.
    pub fn addr(&self, name: &str) -> Option<Ipv4Addr> {
        self.member(name).ok().map(|m| m.addr.addr())
    }
}
