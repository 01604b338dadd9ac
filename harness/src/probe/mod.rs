//! What the harness observes from inside namespaces: who reaches whom
//! (ICMP and TCP, both families, without spawning `ping`), which links a
//! host has and which are the driver's, a driver's metrics, and route
//! changes as the kernel reports them.
//!
//! In: namespaces (a host's, a container's) and addresses. Out: answers
//! per pair, link tables, metric samples. Owns the probe sockets and
//! listeners; changes nothing it observes.
//!
//! ```text
//! reach.rs (ICMP echo, TCP connect; one-shot rounds and background probes)
//! links.rs (ip -d -j link show; the driver's mark)
//! metrics.rs (GET /metrics inside a namespace; the text exposition)
//! route_events.rs (route changes in a namespace, stamped from netlink)
//! ```

pub mod links;
pub mod metrics;
mod reach;
mod route_events;

pub use reach::{ping_pairs, tcp_pairs, Member, PairStats, Pinger, Prober, TcpServers, TCP_PORT};
pub use route_events::{Recording, RouteEvents};
