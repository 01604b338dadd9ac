//! Command-line flags (each also settable from the environment).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::bgp::config::BgpConfig;
use crate::bgp::gobgp::{parse_community, GobgpAddr};
use crate::bgp::learner::{Limits, DEFAULT_MAX_LEARNED, DEFAULT_MAX_RIB};
use crate::bgp::speaker::{
    parse_bfd_interval, parse_bfd_multiplier, parse_duration, Export, GrConfig, PeerSpec,
    SpeakerConfig,
};

pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/ipvlan-bgp.sock";
/// Our kernel route protocol number: not one the kernel, FRR (186-198) or BIRD (12) use.
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 73;

/// Who else tags kernel routes with a protocol number (`/etc/iproute2/rt_protos`
/// and FRR's `rt_protos.d/frr.conf`). Ours must differ from all of them, or
/// the installer would take their routes for its own (and reconcile them away).
pub fn route_protocol_owner(n: u8) -> Option<&'static str> {
    Some(match n {
        0 => "unspec",
        1 => "redirect (the kernel)",
        2 => "kernel",
        3 => "boot (iproute2's default)",
        4 => "static",
        8 => "gated",
        9 => "ra (router advertisements)",
        10 => "mrt",
        11 => "zebra",
        12 => "bird",
        13 => "dnrouted",
        14 => "xorp",
        15 => "ntk",
        16 => "dhcp",
        18 => "keepalived",
        42 => "babel",
        99 => "openr",
        186 => "FRR bgp",
        187 => "FRR isis",
        188 => "FRR ospf",
        189 => "FRR rip",
        190 => "FRR ripng",
        191 => "FRR nhrp",
        192 => "FRR eigrp",
        193 => "FRR ldp",
        194 => "FRR sharp",
        195 => "FRR pbr",
        196 => "FRR static",
        197 => "FRR openfabric",
        198 => "FRR srte",
        _ => return None,
    })
}

/// A BGP timer flag: whole seconds, with or without a unit (`9`, `9s`, `2m`).
fn parse_secs(s: &str) -> Result<u64, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{s}: BGP timers are whole seconds"));
    }
    Ok(d.as_secs())
}

fn parse_max_paths(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?}: --max-paths is a number of next hops from 1 to 256"
        )),
    }
}

fn parse_route_protocol(s: &str) -> Result<u8, String> {
    let n: u8 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a route protocol number (0-255)"))?;
    match route_protocol_owner(n) {
        Some(owner) => Err(format!(
            "route protocol {n} is used by {owner}; our routes must carry a number nobody else uses \
             (the default {DEFAULT_ROUTE_PROTOCOL} is free)"
        )),
        None => Ok(n),
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ipvlan-bgp",
    version,
    about = "Docker network driver: containers on ipvlan/macvlan, announced and learned over BGP through gobgpd",
    long_about = "Docker network driver: containers get an ipvlan (L3 by default, L2, L3S) or macvlan \
link straight on the host's NIC, each host announces its containers' addresses through a local gobgpd, \
and installs the routes it learns from its peers into its kernel. No overlay, no NAT, no proxy ARP.\n\n\
Run without a subcommand to serve Docker on --socket."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what the running driver knows: networks, endpoints, BGP sessions and routes.
    Status {
        /// The running driver's plugin socket.
        #[arg(long, env = "IPVLAN_BGP_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the raw JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Redraw every --interval seconds until interrupted.
        #[arg(long)]
        watch: bool,
        /// Seconds between redraws with --watch.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
    },
    /// Remove everything the driver made on this host (marked links, tagged
    /// routes, changed sysctls, its state); refuses while a driver runs on
    /// the state directory.
    Cleanup(crate::cleanup::CleanupArgs),
    /// Print the driver's Prometheus metrics.
    Metrics {
        #[arg(long, env = "IPVLAN_BGP_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Graceful shutdown for maintenance: every announcement gets the
    /// GRACEFUL_SHUTDOWN community (65535:0) and is made less preferred
    /// (AS-path prepend towards eBGP peers, LOCAL_PREF 0 towards iBGP ones,
    /// a high MED), until `undrain`. Survives driver restarts.
    Drain {
        #[arg(long, env = "IPVLAN_BGP_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Wait until peers have moved traffic away (where a peer shows it)
        /// or the settle time has passed, then say the host is safe to stop.
        #[arg(long)]
        wait: bool,
        /// Seconds --wait waits at most; then it fails.
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Undo `drain`: announcements go back to normal.
    Undrain {
        #[arg(long, env = "IPVLAN_BGP_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// The cluster-wide IPAM, through the running driver: `show` pools,
    /// blocks per host and usage; `release-host` a dead host's blocks.
    Ipam {
        /// The running driver's plugin socket.
        #[arg(long, env = "IPVLAN_BGP_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[command(subcommand)]
        command: IpamCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum IpamCommand {
    /// Pools, the blocks each host holds and their usage (from etcd), this
    /// host's blocks and strays, and what the cross-host audit found.
    Show {
        /// Print the raw JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Release every block a dead host holds, and its registration, so that
    /// other hosts may claim them (run it on any other host). A host that
    /// was not dead keeps its running containers as strays.
    ReleaseHost {
        /// The host's id in etcd (its --ipam-host-id: by default its router ID).
        host: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Plugin socket Docker connects to; its file name is the driver's name.
    #[arg(long, env = "IPVLAN_BGP_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Where networks and endpoints are persisted (state.json).
    #[arg(
        long,
        env = "IPVLAN_BGP_STATE_DIR",
        default_value = "/var/lib/ipvlan-bgp"
    )]
    pub state_dir: PathBuf,

    /// Parent interface for networks created without `-o parent=`.
    #[arg(long, env = "IPVLAN_BGP_PARENT")]
    pub parent: Option<String>,

    /// Dual-uplink mode: one of the host's routed uplinks (repeat it, or
    /// comma-separate in the environment; two or more). Networks then take
    /// no parent: their containers sit on the driver's container port, and
    /// the host routes between it and every uplink. Excludes --parent.
    #[arg(
        long = "uplink",
        env = "IPVLAN_BGP_UPLINKS",
        value_delimiter = ',',
        value_name = "IFACE"
    )]
    pub uplinks: Vec<String>,

    /// Dual-uplink mode, ipvlan L3/L3S: the routing table of the container
    /// port's egress rule (`oif PA lookup TABLE`, holding `default dev PA`);
    /// at start, routes in it that are not ours refuse the start.
    #[arg(long, env = "IPVLAN_BGP_PORT_TABLE", default_value_t = crate::provision::port::DEFAULT_TABLE, value_parser = clap::value_parser!(u32).range(1..=252))]
    pub port_table: u32,

    /// Dual-uplink mode, ipvlan L3/L3S: the preference of the container
    /// port's egress rule; at start, a rule there that is not ours refuses
    /// the start.
    #[arg(long, env = "IPVLAN_BGP_PORT_RULE_PREF", default_value_t = crate::provision::port::DEFAULT_RULE_PREF, value_parser = clap::value_parser!(u32).range(1..=32765))]
    pub port_rule_pref: u32,

    /// The most next hops one learned kernel route gets (equal best paths
    /// beyond it are left out, lowest addresses kept).
    #[arg(long, env = "IPVLAN_BGP_MAX_PATHS", default_value_t = crate::bgp::learner::MAX_PATHS, value_parser = parse_max_paths)]
    pub max_paths: usize,

    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "IPVLAN_BGP_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// Log level or filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info", env = "IPVLAN_BGP_LOG_LEVEL")]
    pub log_level: String,

    /// gobgpd's gRPC API: unix:///path (keep it root-only), HOST:PORT (any local
    /// user could announce through it: warned at start), or `none` to run without BGP.
    #[arg(
        long,
        env = "IPVLAN_BGP_GOBGP",
        default_value = "unix:///run/gobgpd.sock"
    )]
    pub gobgp: String,

    /// Seconds each call to gobgpd may take (and each message of a list) before
    /// the driver gives gobgpd up as stuck and reconnects.
    #[arg(long, env = "IPVLAN_BGP_GOBGP_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub gobgp_timeout: u64,

    /// Configure gobgpd from these flags: our AS number (without it, gobgpd's own config is used).
    #[arg(long, env = "IPVLAN_BGP_ASN")]
    pub asn: Option<u32>,

    /// Router ID for StartBgp (default: the first IPv4 address of the parent,
    /// or of the first --uplink).
    #[arg(long, env = "IPVLAN_BGP_ROUTER_ID")]
    pub router_id: Option<std::net::Ipv4Addr>,

    /// BGP port gobgpd listens on when the driver starts it (0 = 179, -1 = do not listen).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub listen_port: i32,

    /// A BGP peer for gobgpd (repeatable): ADDRESS[:ASN][,passive][,rr-client]
    /// [,password-file=PATH|,password-env=NAME][,hold=DURATION][,keepalive=DURATION]
    /// [,connect-retry=DURATION][,multihop=TTL][,bfd=on|off|INTERVAL][,bfd-multiplier=N].
    /// ASN defaults to --asn (iBGP). Durations take ms, s or m (300ms, 9s); a bare number
    /// is seconds. The TCP MD5 password comes from a file (not readable by others) or an
    /// environment variable, never from the command line, which every local user can read.
    #[arg(long = "peer", value_name = "PEER")]
    pub peers: Vec<String>,

    /// What a gobgpd the driver starts (--asn) sends its peers: `own`, only
    /// the paths this host originates, so a host with two uplinks is never
    /// transit between its routers; `all`, every best path, learned ones too
    /// (a host that must pass routes on, as a route reflector). Installed as
    /// a global export policy when the driver starts BGP on gobgpd; with
    /// --uplink it also gives each uplink peer our IPv6 paths with that
    /// uplink's global IPv6 address as next hop. A gobgpd configured by its
    /// operator is left alone (docs/dual-uplink.md).
    #[arg(long, env = "IPVLAN_BGP_EXPORT", value_enum, default_value_t = Export::Own)]
    pub export: Export,

    /// Hold time for peers added by the driver (a silent peer is declared
    /// down after this long, unless BFD sees it first).
    #[arg(long, env = "IPVLAN_BGP_HOLD_TIME", default_value = "9s", value_parser = parse_secs)]
    pub hold_time: u64,

    /// Keepalive interval for peers added by the driver (a third of the hold time).
    #[arg(long, env = "IPVLAN_BGP_KEEPALIVE", default_value = "3s", value_parser = parse_secs)]
    pub keepalive: u64,

    /// Connect-retry interval for peers added by the driver.
    #[arg(long, default_value = "5s", value_parser = parse_secs)]
    pub connect_retry: u64,

    /// Run BFD with every peer added by the driver (`bfd=off` in --peer
    /// excepts one; `bfd=on` in --peer turns it on for one). Needs gobgpd
    /// 4.6 or later: refused at start against a 3.x gobgpd.
    #[arg(long, env = "IPVLAN_BGP_BFD")]
    pub bfd: bool,

    /// BFD transmit and receive interval (ms or s: 300ms).
    #[arg(long, env = "IPVLAN_BGP_BFD_INTERVAL", default_value = "300ms", value_parser = parse_bfd_interval)]
    pub bfd_interval: Duration,

    /// BFD detect multiplier: packets missed before a peer is declared down.
    #[arg(long, env = "IPVLAN_BGP_BFD_MULTIPLIER", default_value = "3", value_parser = parse_bfd_multiplier)]
    pub bfd_multiplier: u8,

    /// Graceful restart (RFC 4724) for peers added by the driver: how long
    /// they keep this host's paths while its gobgpd restarts; 0 turns it off.
    #[arg(long, env = "IPVLAN_BGP_GRACEFUL_RESTART_TIME", default_value = "120s", value_parser = parse_secs)]
    pub graceful_restart_time: u64,

    /// Long-lived graceful restart (RFC 9494): after the restart time, peers
    /// keep this host's paths this much longer, least preferred; 0 (default) off.
    #[arg(long, env = "IPVLAN_BGP_LONG_LIVED_STALE_TIME", default_value = "0", value_parser = parse_secs)]
    pub long_lived_stale_time: u64,

    /// On exit, stop BGP on gobgpd without a NOTIFICATION (gobgpd 4.x), so
    /// peers keep this host's paths while it restarts: for a gobgpd that
    /// stops with the driver (the plugin's embedded one). 3.x cannot.
    #[arg(long, env = "IPVLAN_BGP_STOP_GOBGPD_ON_EXIT")]
    pub stop_gobgpd_on_exit: bool,

    /// Next hop announced for our prefixes, at most one IPv4 and one IPv6
    /// address (repeat the flag, or comma-separate in the environment).
    /// Default: the parent's IPv4 address, and its first global IPv6 address.
    #[arg(long = "next-hop", env = "IPVLAN_BGP_NEXT_HOP", value_delimiter = ',')]
    pub next_hops: Vec<IpAddr>,

    /// Community attached to our announcements, ASN:VALUE (repeatable).
    #[arg(long = "community", value_name = "ASN:VALUE")]
    pub communities: Vec<String>,

    /// Kernel route protocol number that tags the routes we install.
    /// Numbers the kernel and well-known daemons use are refused.
    #[arg(long, default_value_t = DEFAULT_ROUTE_PROTOCOL, value_parser = parse_route_protocol)]
    pub route_protocol: u8,

    /// Extra pool whose learned prefixes are accepted, besides our networks' subnets (repeatable).
    #[arg(long = "accept-pool", value_name = "CIDR")]
    pub accept_pools: Vec<IpNet>,

    /// At most this many learned routes are installed.
    #[arg(long, default_value_t = DEFAULT_MAX_LEARNED)]
    pub max_learned: usize,

    /// At most this many learned paths are kept, installed or refused (all
    /// peers together); past it a path is dropped, counted as rib-full, and
    /// read again from gobgpd when room frees. At least --max-learned.
    #[arg(long, default_value_t = DEFAULT_MAX_RIB)]
    pub max_rib: usize,

    /// At most this many learned paths are kept from one peer (default:
    /// --max-rib, since a route reflector brings every path over one
    /// session); lower it so one leaking peer cannot crowd out the others.
    #[arg(long)]
    pub max_rib_per_peer: Option<usize>,

    /// Seconds to keep routes gobgpd can no longer confirm (gobgpd restarting, driver restarted).
    #[arg(long, default_value_t = 60)]
    pub stale_routes_time: u64,

    /// Also serve `GET /metrics` on this TCP address (e.g. 127.0.0.1:9473); off by default.
    #[arg(long, env = "IPVLAN_BGP_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// The Docker API's unix socket, asked once after a restart whether each
    /// joined endpoint's container still runs (one Docker stopped while the
    /// driver was down is no longer announced); `none`: never asked.
    /// Docker unreachable, or not the one whose networks these are, proves nothing.
    #[arg(
        long,
        env = "IPVLAN_BGP_DOCKER_SOCKET",
        value_name = "unix:///PATH|none",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_socket: DockerSocket,

    /// Announce a container with a health check only while it is healthy,
    /// following the Docker API at this socket (unix:///var/run/docker.sock);
    /// off by default. Containers without a health check are announced as usual.
    #[arg(long, env = "IPVLAN_BGP_HEALTH_GATE", value_name = "unix:///PATH")]
    pub health_gate: Option<crate::health::GateConfig>,

    #[command(flatten)]
    pub ipam: IpamArgs,
}

/// `--docker-socket`: a unix socket, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSocket(pub Option<std::path::PathBuf>);

impl std::str::FromStr for DockerSocket {
    type Err = String;
    fn from_str(s: &str) -> Result<DockerSocket, String> {
        match s.strip_prefix("unix://") {
            _ if s == "none" => Ok(DockerSocket(None)),
            Some(p) if p.starts_with('/') => Ok(DockerSocket(Some(p.into()))),
            _ => Err(format!(
                "--docker-socket {s:?}: give the Docker API's unix socket, e.g. unix:///var/run/docker.sock, or none"
            )),
        }
    }
}

/// The cluster-wide IPAM's flags (`--ipam-driver ipvlan-bgp`): off unless
/// `--etcd-endpoints` is given. The etcd password never comes from a flag
/// (`/proc/*/cmdline` is world-readable): `--etcd-password-file`, or the
/// environment variable [`ETCD_PASSWORD_ENV`].
#[derive(Debug, Clone, Args)]
pub struct IpamArgs {
    /// etcd's client URLs, comma-separated (http://, or https:// with --etcd-ca):
    /// turns the cluster-wide IPAM on.
    #[arg(
        long,
        env = "IPVLAN_BGP_ETCD_ENDPOINTS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub etcd_endpoints: Vec<String>,

    /// The CA that signed etcd's server certificates (TLS).
    #[arg(long, env = "IPVLAN_BGP_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,

    /// This host's client certificate for etcd (with --client-cert-auth).
    #[arg(long, env = "IPVLAN_BGP_ETCD_CERT", value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,

    /// The key of --etcd-cert.
    #[arg(long, env = "IPVLAN_BGP_ETCD_KEY", value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,

    /// This host's etcd user (its role should reach only the IPAM's key prefix).
    #[arg(long, env = "IPVLAN_BGP_ETCD_USER")]
    pub etcd_user: Option<String>,

    /// A file holding --etcd-user's password (one line); or set IPVLAN_BGP_ETCD_PASSWORD.
    #[arg(long, env = "IPVLAN_BGP_ETCD_PASSWORD_FILE", value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,

    /// Seconds each etcd call may take (connecting included) before it fails
    /// with an error naming etcd: what a `docker run` that needs a new block waits at most.
    #[arg(long, env = "IPVLAN_BGP_ETCD_TIMEOUT", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub etcd_timeout: u64,

    /// The IPAM's key prefix in etcd.
    #[arg(long, env = "IPVLAN_BGP_IPAM_PREFIX", default_value = crate::ipam::DEFAULT_PREFIX)]
    pub ipam_prefix: String,

    /// This host's identity in etcd, unique per host and stable (default: --router-id,
    /// else the first IPv4 address of --parent).
    #[arg(long, env = "IPVLAN_BGP_IPAM_HOST_ID")]
    pub ipam_host_id: Option<String>,

    /// Prefix length of the blocks of an IPv4 pool this host creates (default /26:
    /// 64 addresses); `--ipam-opt block-size=N` sets it per network.
    #[arg(long, env = "IPVLAN_BGP_IPAM_BLOCK_V4", default_value_t = crate::ipam::alloc::DEFAULT_BLOCK_V4, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub ipam_block_v4: u8,

    /// Prefix length of the blocks of an IPv6 pool this host creates (default /122).
    #[arg(long, env = "IPVLAN_BGP_IPAM_BLOCK_V6", default_value_t = crate::ipam::alloc::DEFAULT_BLOCK_V6, value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipam_block_v6: u8,

    /// Seconds an empty block stays claimed before it is released (a restart
    /// loop keeps its block and its route).
    #[arg(long, env = "IPVLAN_BGP_IPAM_GRACE", default_value_t = crate::ipam::DEFAULT_GRACE.as_secs())]
    pub ipam_grace: u64,

    /// What this host announces for the cluster IPAM's addresses: `blocks` (one
    /// route per block it holds, a /32 or /128 only for an address outside its
    /// blocks) or `addresses` (a /32 or /128 per container, as without blocks).
    #[arg(long, env = "IPVLAN_BGP_IPAM_ANNOUNCE", value_enum, default_value_t = IpamAnnounce::Blocks)]
    pub ipam_announce: IpamAnnounce,
}

/// `--ipam-announce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IpamAnnounce {
    Blocks,
    Addresses,
}

/// Where the etcd password may come from besides `--etcd-password-file`.
pub const ETCD_PASSWORD_ENV: &str = "IPVLAN_BGP_ETCD_PASSWORD";

impl IpamArgs {
    /// Whether the cluster-wide IPAM is on (`--etcd-endpoints` given).
    pub fn enabled(&self) -> bool {
        !self.etcd_endpoints.is_empty()
    }

    /// The store's configuration: TLS files checked for completeness, the
    /// password read from its file or the environment (`env` is
    /// [`ETCD_PASSWORD_ENV`]'s value).
    pub fn store_config(
        &self,
        env_password: Option<String>,
    ) -> Result<crate::ipam::StoreConfig, String> {
        let tls = match (&self.etcd_ca, &self.etcd_cert, &self.etcd_key) {
            (None, None, None) => None,
            (None, _, _) => return Err(
                "--etcd-cert and --etcd-key need --etcd-ca (the CA of etcd's server certificates)"
                    .into(),
            ),
            (Some(ca), cert, key) => {
                if cert.is_some() != key.is_some() {
                    return Err("--etcd-cert and --etcd-key go together".into());
                }
                Some(crate::ipam::TlsFiles {
                    ca: ca.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                })
            }
        };
        let password = match (&self.etcd_password_file, env_password) {
            (Some(f), _) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("--etcd-password-file {}: {e}", f.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            (None, p) => p,
        };
        let user = match (&self.etcd_user, password) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (Some(u), None) => {
                return Err(format!(
                    "--etcd-user {u} needs a password: --etcd-password-file FILE, or {ETCD_PASSWORD_ENV} in the environment"
                ))
            }
            (None, Some(_)) => {
                return Err("an etcd password was given without --etcd-user".into())
            }
            (None, None) => None,
        };
        Ok(crate::ipam::StoreConfig {
            endpoints: self.etcd_endpoints.clone(),
            user,
            tls,
            timeout: Duration::from_secs(self.etcd_timeout),
        })
    }
}

impl RunArgs {
    /// The uplinks of dual-uplink mode (`--uplink`): none, or two or more
    /// distinct valid interface names, never with `--parent` or `--next-hop`.
    pub fn checked_uplinks(&self) -> Result<Vec<String>, String> {
        let u = &self.uplinks;
        if u.is_empty() {
            return Ok(Vec::new());
        }
        if u.len() == 1 {
            return Err(format!(
                "--uplink {}: dual-uplink mode needs two or more uplinks; with one uplink give it as --parent instead",
                u[0]
            ));
        }
        if let Some(p) = &self.parent {
            return Err(format!(
                "--parent {p} and --uplink exclude each other: in dual-uplink mode networks take no parent (the driver makes the container port); drop --parent"
            ));
        }
        if !self.next_hops.is_empty() {
            return Err(
                "--next-hop and --uplink exclude each other: in dual-uplink mode the announced next hop is left unspecified, so that gobgpd gives each ToR its own session address; drop --next-hop".into(),
            );
        }
        for (i, name) in u.iter().enumerate() {
            crate::model::network::Parent::parse(name)
                .map_err(|e| format!("--uplink {name}: {}", e.0))?;
            if u[..i].contains(name) {
                return Err(format!("--uplink {name} is given twice"));
            }
        }
        Ok(u.clone())
    }

    /// `None` when BGP is disabled (`--gobgp none`).
    pub fn bgp_config(&self) -> Result<Option<BgpConfig>, String> {
        let uplinks = self.checked_uplinks()?;
        if self.gobgp == "none" {
            return Ok(None);
        }
        let gobgp: GobgpAddr = self.gobgp.parse()?;
        let peers = self
            .peers
            .iter()
            .map(|p| p.parse::<PeerSpec>())
            .collect::<Result<Vec<_>, _>>()?;
        if !peers.is_empty() && self.asn.is_none() {
            return Err(
                "--peer needs --asn: the driver configures gobgpd only when it knows our AS".into(),
            );
        }
        if let Some(p) = peers.iter().find(|p| p.rr_client) {
            if self.export == Export::Own {
                return Err(format!(
                    "--peer {},rr-client makes this host a route reflector, which passes on the paths it learns; --export own (the default) sends peers only this host's own paths: add --export all",
                    p.address
                ));
            }
        }
        let communities = self
            .communities
            .iter()
            .map(|c| parse_community(c))
            .collect::<Result<Vec<_>, _>>()?;
        if self.max_rib < self.max_learned {
            return Err(format!(
                "--max-rib {} is below --max-learned {}: the learner could never install that many; raise --max-rib",
                self.max_rib, self.max_learned
            ));
        }
        let per_peer = self.max_rib_per_peer.unwrap_or(self.max_rib);
        if per_peer == 0 {
            return Err("--max-rib-per-peer must be at least 1".into());
        }
        if self.keepalive == 0
            || (self.hold_time != 0 && (self.hold_time < 3 || self.keepalive > self.hold_time))
        {
            return Err(
                "--hold-time must be 0 or at least 3 seconds, --keepalive at least 1 second and at most the hold time".into(),
            );
        }
        if self.graceful_restart_time > 4095 || self.long_lived_stale_time > 0xFF_FFFF {
            return Err(
                "--graceful-restart-time is at most 4095 s (12 bits in the OPEN message), --long-lived-stale-time at most 16777215 s".into(),
            );
        }
        if self.long_lived_stale_time > 0 && self.graceful_restart_time == 0 {
            return Err(
                "--long-lived-stale-time needs graceful restart (--graceful-restart-time above 0)"
                    .into(),
            );
        }
        Ok(Some(BgpConfig {
            gobgp,
            call_timeout: Duration::from_secs(self.gobgp_timeout),
            speaker: SpeakerConfig {
                asn: self.asn,
                router_id: self.router_id.map(|r| r.to_string()),
                listen_port: self.listen_port,
                peers,
                hold_time: self.hold_time,
                keepalive: self.keepalive,
                connect_retry: self.connect_retry,
                bfd: self.bfd,
                bfd_interval: self.bfd_interval,
                bfd_multiplier: self.bfd_multiplier,
                graceful_restart: (self.graceful_restart_time > 0).then(|| GrConfig {
                    restart_time: self.graceful_restart_time as u32,
                    long_lived: (self.long_lived_stale_time > 0)
                        .then_some(self.long_lived_stale_time as u32),
                }),
                export: self.export,
            },
            stop_gobgpd_on_exit: self.stop_gobgpd_on_exit,
            next_hops: check_next_hops(&self.next_hops)?,
            communities,
            protocol: self.route_protocol,
            accept_pools: self.accept_pools.iter().map(|p| p.trunc()).collect(),
            limits: Limits {
                installed: self.max_learned,
                rib: self.max_rib,
                per_peer,
                paths: self.max_paths,
            },
            stale_time: Duration::from_secs(self.stale_routes_time),
            default_parent: self.parent.clone(),
            uplinks,
        }))
    }
}

/// `--next-hop`: one address per family, each one a peer can route to.
fn check_next_hops(hops: &[IpAddr]) -> Result<Vec<IpAddr>, String> {
    for (i, a) in hops.iter().enumerate() {
        if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
            return Err(format!(
                "--next-hop {a}: not an address a peer can route to"
            ));
        }
        if crate::bgp::policy::is_link_local(a) {
            return Err(format!(
                "--next-hop {a}: a link-local address is useless to peers on other links; give the parent's global IPv6 address"
            ));
        }
        if let Some(b) = hops[..i].iter().find(|b| b.is_ipv4() == a.is_ipv4()) {
            return Err(format!(
                "--next-hop given twice for one family ({b} and {a}); give at most one IPv4 and one IPv6 address"
            ));
        }
    }
    Ok(hops.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bgp_flags_are_validated() {
        let cli = Cli::parse_from(["ipvlan-bgp", "--peer", "192.0.2.2"]);
        assert!(cli.run.bgp_config().unwrap_err().contains("--asn"));
        let cli = Cli::parse_from(["ipvlan-bgp", "--gobgp", "none"]);
        assert!(cli.run.bgp_config().unwrap().is_none());
        // The default is a unix socket: no TCP port any local user could reach.
        let cli = Cli::parse_from(["ipvlan-bgp"]);
        let b = cli.run.bgp_config().unwrap().unwrap();
        assert_eq!(b.gobgp, GobgpAddr::Unix("/run/gobgpd.sock".into()));
        assert!(!b.gobgp.is_tcp());
        assert_eq!(b.call_timeout, Duration::from_secs(5));
        let cli = Cli::parse_from([
            "ipvlan-bgp",
            "--asn",
            "65000",
            "--peer",
            "192.0.2.2",
            "--community",
            "65000:7",
            "--accept-pool",
            "10.1.0.0/16",
        ]);
        let b = cli.run.bgp_config().unwrap().unwrap();
        assert_eq!(b.communities, vec![65000 << 16 | 7]);
        assert_eq!(b.speaker.peers.len(), 1);
        assert_eq!(b.protocol, DEFAULT_ROUTE_PROTOCOL);
        assert!(b.next_hops.is_empty());
    }

    /// `--export`: own by default; a route reflector (an rr-client peer)
    /// must say `--export all`, else it would reflect nothing.
    #[test]
    fn export_is_own_by_default_and_a_reflector_must_say_all() {
        let bgp = |a: &[&str]| {
            let mut args = vec!["ipvlan-bgp", "--asn", "65000"];
            args.extend(a);
            Cli::parse_from(args).run.bgp_config()
        };
        let b = bgp(&["--peer", "192.0.2.2"]).unwrap().unwrap();
        assert_eq!(b.speaker.export, Export::Own);
        let b = bgp(&["--export", "all"]).unwrap().unwrap();
        assert_eq!(b.speaker.export, Export::All);
        let e = bgp(&["--peer", "192.0.2.2,rr-client"]).unwrap_err();
        assert!(e.contains("--export all") && e.contains("192.0.2.2"), "{e}");
        let b = bgp(&["--peer", "192.0.2.2,rr-client", "--export", "all"]);
        assert_eq!(b.unwrap().unwrap().speaker.export, Export::All);
        assert!(Cli::try_parse_from(["ipvlan-bgp", "--export", "some"]).is_err());
    }

    #[test]
    fn docker_socket_defaults_to_dockers_and_can_be_off() {
        let sock = |a: &[&str]| {
            let mut args = vec!["ipvlan-bgp"];
            args.extend(a);
            Cli::try_parse_from(args).map(|c| c.run.docker_socket.0)
        };
        assert_eq!(sock(&[]).unwrap(), Some("/var/run/docker.sock".into()));
        assert_eq!(sock(&["--docker-socket", "none"]).unwrap(), None);
        assert_eq!(
            sock(&["--docker-socket", "unix:///h/d.sock"]).unwrap(),
            Some("/h/d.sock".into())
        );
        for bad in ["/var/run/docker.sock", "tcp://1.2.3.4:2375", "unix://rel"] {
            assert!(sock(&["--docker-socket", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn health_gate_is_off_by_default_and_wants_a_unix_socket() {
        assert!(Cli::parse_from(["ipvlan-bgp"]).run.health_gate.is_none());
        let cli = Cli::parse_from(["ipvlan-bgp", "--health-gate", "unix:///var/run/docker.sock"]);
        assert_eq!(
            cli.run.health_gate.unwrap().socket,
            PathBuf::from("/var/run/docker.sock")
        );
        for bad in [
            "/var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "unix://relative",
        ] {
            assert!(
                Cli::try_parse_from(["ipvlan-bgp", "--health-gate", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn next_hops_are_one_per_family() {
        let cfg = |args: &[&str]| {
            let mut all = vec!["ipvlan-bgp"];
            all.extend(args);
            Cli::parse_from(all)
                .run
                .bgp_config()
                .map(|b| b.unwrap().next_hops)
        };
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(cfg(&["--next-hop", "192.0.2.1"]), Ok(vec![v4]));
        assert_eq!(
            cfg(&["--next-hop", "192.0.2.1", "--next-hop", "2001:db8::1"]),
            Ok(vec![v4, v6])
        );
        assert_eq!(
            cfg(&["--next-hop", "2001:db8::1,192.0.2.1"]),
            Ok(vec![v6, v4])
        );
        let err = cfg(&["--next-hop", "192.0.2.1", "--next-hop", "192.0.2.2"]).unwrap_err();
        assert!(err.contains("one IPv4 and one IPv6"), "{err}");
        let err = cfg(&["--next-hop", "fe80::1"]).unwrap_err();
        assert!(err.contains("link-local"), "{err}");
        assert!(cfg(&["--next-hop", "::"]).is_err());
        assert!(cfg(&["--next-hop", "::1"]).is_err());
    }

    #[test]
    fn the_port_uses_our_default_protocol() {
        assert_eq!(
            crate::provision::port::DEFAULT_PROTOCOL,
            DEFAULT_ROUTE_PROTOCOL
        );
    }

    #[test]
    fn uplinks_are_two_or_more_and_exclude_parent_and_next_hop() {
        let up = |a: &[&str]| {
            let mut args = vec!["ipvlan-bgp"];
            args.extend(a);
            Cli::parse_from(args).run.checked_uplinks()
        };
        assert_eq!(up(&[]), Ok(vec![]));
        assert_eq!(
            up(&["--uplink", "up1", "--uplink", "up2"]),
            Ok(vec!["up1".to_string(), "up2".to_string()])
        );
        let err = up(&["--uplink", "up1"]).unwrap_err();
        assert!(err.contains("two or more uplinks"), "{err}");
        let err = up(&["--uplink", "up1", "--uplink", "up2", "--parent", "eth0"]).unwrap_err();
        assert!(err.contains("--parent eth0 and --uplink"), "{err}");
        let err = up(&["--uplink", "up1,up2", "--next-hop", "192.0.2.1"]).unwrap_err();
        assert!(err.contains("--next-hop and --uplink"), "{err}");
        assert!(up(&["--uplink", "up1", "--uplink", "up1"]).is_err());
        assert!(up(&["--uplink", "up1", "--uplink", "a/b"]).is_err());
        // The BGP side gets them, and --max-paths (default 8).
        let cli = Cli::parse_from(["ipvlan-bgp", "--uplink", "up1,up2", "--max-paths", "1"]);
        let b = cli.run.bgp_config().unwrap().unwrap();
        assert_eq!(b.uplinks, ["up1", "up2"]);
        assert_eq!(b.limits.paths, 1);
        let b = Cli::parse_from(["ipvlan-bgp"])
            .run
            .bgp_config()
            .unwrap()
            .unwrap();
        assert_eq!(b.limits.paths, 8);
        assert!(Cli::try_parse_from(["ipvlan-bgp", "--max-paths", "0"]).is_err());
    }

    #[rstest::rstest]
    #[case("0", "unspec")]
    #[case("2", "kernel")]
    #[case("3", "boot")]
    #[case("4", "static")]
    #[case("8", "gated")]
    #[case("11", "zebra")]
    #[case("12", "bird")]
    #[case("16", "dhcp")]
    #[case("18", "keepalived")]
    #[case("42", "babel")]
    #[case("99", "openr")]
    #[case("186", "FRR")]
    #[case("192", "FRR")]
    #[case("198", "FRR")]
    fn used_route_protocols_are_refused(#[case] n: &str, #[case] owner: &str) {
        let err = Cli::try_parse_from(["ipvlan-bgp", "--route-protocol", n])
            .unwrap_err()
            .to_string();
        assert!(err.contains(owner), "{err}");
        assert!(err.contains("73"), "{err}");
    }

    #[test]
    fn every_listed_number_is_refused_and_free_ones_pass() {
        for n in (0..=4).chain(8..=16).chain([18, 42, 99]).chain(186..=198) {
            assert!(parse_route_protocol(&n.to_string()).is_err(), "{n}");
        }
        for n in [5u8, 7, 17, 73, 100, 185, 199, 255] {
            assert_eq!(parse_route_protocol(&n.to_string()), Ok(n));
        }
        assert!(parse_route_protocol("256").is_err());
    }
}
