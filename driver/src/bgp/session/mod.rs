//! The BGP session: one task that owns the gobgpd connection, in rooms
//! cut along its flow.
//!
//! In: the [`View`] (a watch channel), best paths from gobgpd (its global RIB
//! at connect, then its event stream), the host's facts ([`super::host`])
//! and the peers gobgpd reports. Out: announcements made equal to the View
//! ([`super::announcer`]; drained ones made less preferred,
//! [`super::drain`]), gobgpd configured when the driver manages it
//! ([`super::speaker`]: StartBgp, then our paths, then the peers), learned
//! paths handed to the learner in batches of at most [`EVENT_BATCH`] and its
//! decisions sent to the route installer ([`crate::rib`]), the peers'
//! failures and End-of-RIB applied to the learner ([`super::peers`]), and the
//! session's state in [`Metrics`].
//!
//! ```text
//!  reconnect   connect with backoff, detect the API line ─┐  (Ended::Lost: again)
//!  connection  one connection's life ◄────────────────────┘
//!    bring_up    StartBgp + policies → watch events → RIB snapshot (rib_read)
//!                → host facts → our paths (announcing) → peers
//!    then one loop, in this order of priority:
//!      shutdown      ─► shutdown (StopBgp without NOTIFICATION on 4.x)
//!      liveness lost ─► Ended::Lost            (super::timers)
//!      View changed  ─► host_watch (learner inputs) ─► announcing; rib_read when pools widen
//!      learner asks  ─► rib_read (relist)
//!      tick          ─► peer_watch (status, stuck handshakes, End-of-RIB on 3.x)
//!                       ─► host_watch ─► announcing (drain progress)
//!      events        ─► events (batches of EVENT_BATCH) ─► learner; falls and
//!                       End-of-RIB ─► peer_watch ─► learner
//!      held withdrawals due ─► learner         (super::withdrawals)
//! ```
//!
//! It connects with backoff, detects the API line each time, re-announces
//! after every (re)connection, and ends a session when gobgpd stops
//! answering (stream broken, a call over its deadline, the liveness check).
//! The learner (on its own thread, [`super::learning`]) and the installer
//! outlive connections. Nothing here blocks a worker but the ledger's
//! append (`block_in_place`, [`crate::bgp::announcer`]): host reads go
//! through `spawn_blocking`, every policy decision to the learner's thread.
//! The IPv6 next hop prefers the local address of an established session
//! (ListPeer, either line). On shutdown with `--stop-gobgpd-on-exit` it
//! stops BGP on a 4.x gobgpd without a NOTIFICATION, so peers keep our
//! paths. This file holds the session's state and what the rooms share.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::announcer::Announcer;
use super::config::BgpConfig;
use super::gobgp::ApiLine;
use super::gobgp_api::PeerNextHop6;
use super::host::{HostInfo, NextHopChoice};
use super::learner::Learner;
use super::learning::{LearnerGone, LearnerHandle};
use super::ledger::Ledger;
use super::owed_policies::OwedPolicies;
use super::peers::Peers;
use super::speaker;
use super::stuck::Handshakes;
use crate::kernel::real::Kernel;
use crate::kernel::MultiRoute;
use crate::metrics::{DrainStatus, Metrics};
use crate::rib::worker::InstallerHandle;
use crate::view::View;

mod announcing;
mod bring_up;
mod connection;
mod events;
mod host_watch;
mod peer_watch;
mod reconnect;
mod rib_read;
mod shutdown;

/// The BGP side of the driver, running until `shutdown` fires.
pub struct Bgp {
    cfg: BgpConfig,
    metrics: Arc<Metrics>,
    view: watch::Receiver<Arc<View>>,
    host_kernel: Arc<Mutex<Kernel>>,
    learner: LearnerHandle,
    /// Routes a previous run left, adopted once the host's facts are read.
    adopted: Vec<MultiRoute>,
    /// When gobgpd's RIB was last read again for the learner.
    last_relist: Option<tokio::time::Instant>,
    announcer: Announcer,
    host: HostInfo,
    /// How the IPv6 next hop is chosen (the sessions' local addresses, the
    /// address chosen before).
    next_hop: NextHopChoice,
    warned: BTreeSet<String>,
    /// The current session got as far as "connected to gobgpd".
    session_up: bool,
    /// The API line of the last gobgpd connected to.
    line: Option<ApiLine>,
    /// The peers of the current connection, as the learner must see them.
    peers: Peers,
    /// gobgpd's AS on the current connection (0 before BGP starts).
    asn: u32,
    /// The drain as status shows it.
    drain: DrainStatus,
    /// The peers' handshakes, watched for a stuck one.
    handshakes: Handshakes,
    /// The speaker settings of the current connection (the router ID
    /// filled in): what a stuck peer of ours is added again with.
    speaker_cfg: speaker::SpeakerConfig,
    /// Dual-uplink mode: the per-peer IPv6 next hops the export policy of
    /// the current gobgpd holds (installed when the driver started BGP on
    /// it); `None` when the driver installed none.
    v6_next_hops: Option<Vec<PeerNextHop6>>,
    /// Our StartBgp ran but its policies are not known to be in (an
    /// install after it failed, or a driver before us died in between):
    /// the next connection installs them ([`speaker::start`]). Kept in the
    /// ledger's state directory, so a restarted driver knows it too.
    policies_owed: OwedPolicies,
    /// The last successful sync's wanted announcements and what they were
    /// made of: a view change decides only the prefixes it touched.
    synced: Option<Synced>,
}

/// What the last successful sync made gobgpd's paths equal to, and what
/// that was made of besides the configuration (which does not change):
/// [`announcing`] decides a view change's touched prefixes against it.
struct Synced {
    view: std::sync::Arc<crate::view::View>,
    host: crate::bgp::host::HostInfo,
    session_local: std::collections::BTreeSet<std::net::IpAddr>,
    wanted: std::collections::BTreeMap<ipnet::IpNet, crate::bgp::announcement::Announcement>,
}

/// At most this many learned paths go to the learner at once; the session
/// yields between batches so a flood (a leaked full table) neither builds
/// one huge batch nor keeps the runtime from answering Docker.
pub const EVENT_BATCH: usize = 4096;

/// Test hook: the next [`Bgp::run`] panics at once (the supervisor's test).
#[cfg(test)]
pub(crate) static PANIC_AT_START: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Why [`Bgp::run`] ended before shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// gobgpd's line cannot honour the configuration (BFD against 3.x):
    /// the driver must not run; restarting the BGP side would not help.
    Refused(String),
    /// The learner's thread died: this BGP side cannot go on (its
    /// supervisor starts another).
    Failed(String),
}

/// Why one connection's life ended.
enum Ended {
    /// Shutdown asked.
    Shutdown,
    /// gobgpd was lost (retried with backoff).
    Lost(String),
    /// The learner's thread died: this BGP side cannot go on.
    LearnerGone,
}

impl From<LearnerGone> for Ended {
    fn from(_: LearnerGone) -> Ended {
        Ended::LearnerGone
    }
}

impl From<String> for Ended {
    fn from(e: String) -> Ended {
        Ended::Lost(e)
    }
}

impl Bgp {
    /// The BGP side, ready to [`Bgp::run`]. Reads nothing yet (the host's
    /// facts are read in `run`, off the async workers); starts the
    /// learner's thread, so it needs a tokio runtime. `adopted`: routes of
    /// a previous run (or a previous BGP side) to keep until gobgpd confirms them.
    pub fn new(
        cfg: BgpConfig,
        metrics: Arc<Metrics>,
        view: watch::Receiver<Arc<View>>,
        installer: InstallerHandle,
        host_kernel: Kernel,
        adopted: Vec<MultiRoute>,
        ledger: Ledger,
    ) -> std::io::Result<Bgp> {
        let policies_owed = OwedPolicies::new(
            ledger.dir().map(|d| d.to_path_buf()),
            &cfg.gobgp.to_string(),
        );
        let learner = Learner::new(cfg.protocol, cfg.limits, cfg.stale_time, metrics.clone());
        let learner = LearnerHandle::start(learner, installer, metrics.clone())?;
        metrics.bgp(|b| {
            b.enabled = true;
            b.gobgp = cfg.gobgp.to_string();
        });
        Ok(Bgp {
            announcer: Announcer::new(cfg.communities.clone(), cfg.call_timeout, ledger),
            cfg,
            metrics,
            view,
            host_kernel: Arc::new(Mutex::new(host_kernel)),
            learner,
            adopted,
            last_relist: None,
            host: HostInfo::default(),
            next_hop: NextHopChoice::default(),
            warned: BTreeSet::new(),
            session_up: false,
            line: None,
            peers: Peers::default(),
            asn: 0,
            drain: DrainStatus::default(),
            handshakes: Handshakes::default(),
            speaker_cfg: speaker::SpeakerConfig::default(),
            v6_next_hops: None,
            policies_owed,
            synced: None,
        })
    }
}
