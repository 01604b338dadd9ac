//! BGP: announce this host's containers through gobgpd, learn the others'.
//!
//! ```text
//!  driver View ──watch──► session ──AddPath/DeletePath──► gobgpd ──BGP──► peers
//!                           ▲  │
//!    gobgpd WatchEvent ─────┘  └─► learner ─► policy ─► installer ─netlink─► kernel
//! ```
//! One task (the session) owns the gobgpd connection: it connects with
//! backoff, configures gobgpd when the driver manages it, re-announces from
//! the driver's state after every (re)connection, and feeds best paths to the
//! learner. The learner and the installer outlive connections, so routes stay
//! installed (stale) while gobgpd is away. The driver keeps serving Docker
//! whatever gobgpd does.
//!
//! Both address families, the same way: IPv4 and IPv6 unicast are announced
//! (each prefix with a next hop of its own family: `--next-hop`, else the
//! parent's IPv4 address or first global IPv6 address), read from gobgpd's
//! RIB, watched, decided and installed.
//!
//! Nothing waits on gobgpd without a bound: every call has a deadline
//! (`--gobgp-timeout`), list streams a per-message one, and the channel's
//! HTTP/2 keepalives break the event stream of a frozen gobgpd within ~5 s.
//! A session stuck in its handshake (a gobgpd 4.8 fault, [`stuck`]) is
//! reported, and re-added when the driver configured it.
//! Stale routes expire on their own timer, never behind a call. Learned paths
//! reach the learner in batches of at most [`session::EVENT_BATCH`], with a yield
//! between batches.

pub mod announcement;
pub mod announcer;
pub mod config;
pub mod drain;
pub mod gobgp;
pub mod gobgp_api;
pub mod gobgp_policies;
pub mod gobgp_v3;
pub mod gobgp_v4;
pub mod host;
pub mod learner;
pub mod learning;
pub mod ledger;
pub mod owed_policies;
pub mod peers;
pub mod policy;
pub mod session;
pub mod speaker;
pub mod stuck;
pub mod timers;
pub mod uplink_next_hops;
pub mod withdrawals;
