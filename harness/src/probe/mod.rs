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
//! fast.rs (echo every 2 ms, stamped: when a pair began or stopped answering)
//! flows.rs (UDP flows with distinct ports to an echo: loss there and back, outages)
//! counters.rs (links' rx/tx packet counters, ip -s -j link)
//! routes.rs (route and link events of a namespace, stamped as delivered)
//! links.rs (ip -d -j link show; the driver's mark)
//! metrics.rs (GET /metrics inside a namespace; the text exposition)
//! route_events.rs (route changes waited for as they come: the benches' clock)
//! from_route.rs (echoes from a route's arrival: is the first one answered?)
//! ```

pub mod counters;
pub mod fast;
pub mod flows;
pub mod from_route;
pub mod links;
pub mod metrics;
mod reach;
mod route_events;
pub mod routes;

pub use reach::{
    ping_pairs, tcp_pairs, FirstAnswer, Member, PairStats, Pinger, Prober, TcpServers, TCP_PORT,
};
pub use route_events::RouteEvents;
