//! Probing from the moment a route arrives: what a client that starts
//! sending as soon as it learns a container's route (a load balancer, a
//! retrying client) sees.
//!
//! In: a namespace's [`RouteEvents`] (a netlink subscription open from
//! before the container starts), the pool the container's address comes
//! from, and a [`Pinger`] in the client's namespace. Out: a [`FromRoute`]:
//! which host route arrived first in the pool since `since` and when, when
//! the first echo sent after it (every [`INTERVAL`]) was answered, and how
//! many echoes went unanswered before. The route's own prefix names the
//! address probed: no address is foreseen.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use ipnet::IpNet;

use super::{FirstAnswer, Pinger, RouteEvents};

/// One echo every 2 ms: the figure's resolution.
pub const INTERVAL: Duration = Duration::from_millis(2);
/// An echo answered later than this after the route was held back, not
/// answered at once: the serving host queued it while it resolved a
/// neighbour whose address was not there yet (answered when the address
/// came, or with the next ARP attempt 1 s later). Answered at once, the
/// first echo comes back in well under a millisecond here, a few under
/// heavy load; announced at Join, 240 ms to 3 s (emulator, dockerd).
pub const ANSWERED_WITHIN: Duration = Duration::from_millis(100);

/// What the client saw.
#[derive(Debug, Clone, Copy)]
pub struct FromRoute {
    /// The host route that arrived, and when its event was delivered.
    pub route: IpNet,
    pub route_at: Instant,
    /// The first answer, or None when nothing answered within the deadline.
    pub answer: Option<FirstAnswer>,
}

impl FromRoute {
    /// From the route's arrival to the first answer.
    pub fn to_answer(&self) -> Option<Duration> {
        self.answer
            .map(|a| a.at.saturating_duration_since(self.route_at))
    }

    /// The first echo sent after the route was answered, within
    /// [`ANSWERED_WITHIN`]: no probe lost after the route arrived.
    pub fn first_echo_answered(&self) -> bool {
        self.answer.is_some_and(|a| a.unanswered_before == 0)
            && self.to_answer().is_some_and(|d| d <= ANSWERED_WITHIN)
    }
}

/// Waits (up to `deadline`) for the first host route inside `pool` added
/// since `since`, then pings its address every [`INTERVAL`] until it answers
/// (up to `deadline` again).
pub fn probe_from_route(
    events: &mut RouteEvents,
    pinger: &mut Pinger,
    pool: IpNet,
    since: Instant,
    deadline: Duration,
) -> Result<FromRoute> {
    let (route_at, route) = events.first_host_route(pool, since, deadline)?;
    let answer = pinger.first_answer(route.addr(), INTERVAL, deadline);
    Ok(FromRoute {
        route,
        route_at,
        answer,
    })
}

/// The error for a join whose first echo after the route was not answered.
pub fn lost_after_route(what: &str, seen: &FromRoute) -> anyhow::Error {
    match seen.answer {
        None => anyhow!(
            "{what}: its route {} arrived, and no echo sent after it was answered",
            seen.route
        ),
        Some(a) => anyhow!(
            "{what}: the first answer to the echoes sent after its route {} arrived came {:.1} ms after the route (limit {} ms), to echo #{} of the {} sent by then (one every {} ms): the route was announced before the container could answer",
            seen.route,
            a.at.saturating_duration_since(seen.route_at).as_secs_f64() * 1e3,
            ANSWERED_WITHIN.as_millis(),
            a.unanswered_before + 1,
            a.sent,
            INTERVAL.as_millis()
        ),
    }
}
