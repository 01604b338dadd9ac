//! The health gate's decisions, free of I/O.
//!
//! In: what the classifier learned from Docker ([`Update`]: a container
//! inspected, gone, every running one, the API up or down), and each View
//! with the endpoint behind each of its endpoint announcements. Out: the
//! View without the announcements of held endpoints ([`Filtered`]), why each
//! is held, who was released and after how long, the counters the metrics
//! show, and the verdicts that changed, for the driver to persist
//! ([`Gate::take_changes`]; a restart seeds them back with [`Gate::remember`]). Whether an endpoint is announced is asked of
//! [`crate::view::decide`], with the container's verdict as its health
//! evidence; the rules are in the module docs of [`super`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{info, warn};

use super::docker::Container;
use crate::model::names::short_id;
use crate::model::state::HealthRecord;
use crate::view::decide::{decide, Address, Decision, Evidence, Health, Sandbox};
use crate::view::View;

/// Endpoints never classified are announced after Docker has been
/// unreachable this long (fail open; see the module docs).
pub const FAIL_OPEN_AFTER: Duration = Duration::from_secs(10);
/// An endpoint waiting this long for its first classification (its
/// container's `start` event did not classify it) makes the classifier
/// inspect every running container, at most this often.
pub const WAITING_RESYNC: Duration = Duration::from_secs(2);

pub use crate::model::state::Verdict;

/// What Docker says about a container: `None` for one that is not running.
pub fn verdict_of(c: &Container) -> Option<Verdict> {
    if !c.running {
        return None;
    }
    Some(match c.health.as_deref() {
        None => Verdict::NoCheck,
        Some("healthy") => Verdict::Healthy,
        Some("unhealthy") => Verdict::Unhealthy,
        // "starting", and anything a newer daemon may invent: hold.
        Some(_) => Verdict::Starting,
    })
}

/// What the classifier tells the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A fresh inspect of one container.
    Container(Container),
    /// The container is gone.
    Gone(String),
    /// Every running container: replaces all that the gate knew.
    Sync(Vec<Container>),
    /// The event stream is connected.
    ApiUp,
    /// Docker cannot be reached, and why.
    ApiDown(String),
}

/// The gate's decisions, free of I/O (the tasks feed it).
#[derive(Debug)]
pub struct Gate {
    /// Endpoint ID → its container and verdict.
    verdicts: HashMap<String, (String, Verdict)>,
    /// Container ID → its endpoint IDs, as last inspected.
    containers: HashMap<String, Vec<String>>,
    api_up: bool,
    /// Since when Docker is unreachable (from the start until it answers).
    api_down_since: Option<Instant>,
    /// Endpoints in the View not classified yet, since when.
    waiting: HashMap<String, Instant>,
    /// Endpoints announced without a verdict because Docker was unreachable.
    failed_open: HashSet<String>,
    /// Verdicts changed (or gone) since [`Gate::take_changes`] last
    /// looked: what the driver persists, so that a restarted driver decides
    /// as before until Docker answers again.
    changed: HashMap<String, Option<HealthRecord>>,
    /// Verdict changes (including the first one) of endpoints.
    pub transitions: u64,
    pub fail_open: u64,
}

/// What the filter decided about one view.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    pub view: View,
    /// Held endpoints (ID → why).
    pub held: BTreeMap<String, String>,
    /// Endpoints released just now, with how long they waited for their first verdict.
    pub released: Vec<(String, Duration)>,
    /// Some endpoint waits for its first verdict.
    pub waiting: bool,
}

impl Gate {
    pub fn new(now: Instant) -> Gate {
        Gate {
            verdicts: HashMap::new(),
            containers: HashMap::new(),
            api_up: false,
            api_down_since: Some(now),
            waiting: HashMap::new(),
            failed_open: HashSet::new(),
            changed: HashMap::new(),
            transitions: 0,
            fail_open: 0,
        }
    }

    /// Seeds the verdicts a previous run persisted (endpoint, its container
    /// and what Docker last said of it): kept, like any decision already
    /// made, until Docker says otherwise. So a restarted driver (or one that
    /// starts before dockerd answers) neither withdraws a healthy endpoint
    /// nor announces an unhealthy one in the meantime.
    pub fn remember(&mut self, remembered: impl IntoIterator<Item = (String, HealthRecord)>) {
        for (endpoint, h) in remembered {
            self.verdicts
                .insert(endpoint.clone(), (h.container.clone(), h.verdict));
            self.containers
                .entry(h.container)
                .or_default()
                .push(endpoint);
        }
    }

    /// The verdicts changed since the last call (`None`: gone), to persist.
    /// Only Docker's word is here, never a fail-open guess.
    pub fn take_changes(&mut self) -> Vec<(String, Option<HealthRecord>)> {
        self.changed.drain().collect()
    }

    fn set_verdict(&mut self, endpoint: &str, v: Option<(String, Verdict)>) {
        let old = match &v {
            Some(v) => self.verdicts.insert(endpoint.to_string(), v.clone()),
            None => self.verdicts.remove(endpoint),
        };
        if old != v {
            self.changed.insert(
                endpoint.to_string(),
                v.map(|(container, verdict)| HealthRecord { container, verdict }),
            );
        }
    }

    pub fn api_up(&self) -> bool {
        self.api_up
    }

    /// How long the longest-waiting unclassified endpoint has waited.
    pub fn longest_wait(&self, now: Instant) -> Option<Duration> {
        self.waiting
            .values()
            .map(|t| now.saturating_duration_since(*t))
            .max()
    }

    fn forget(&mut self, container: &str) {
        if let Some(eps) = self.containers.remove(container) {
            for e in eps {
                if self.verdicts.get(&e).is_some_and(|(c, _)| c == container) {
                    self.set_verdict(&e, None);
                }
            }
        }
    }

    fn learn(&mut self, c: Container) {
        let verdict = verdict_of(&c);
        // Endpoints it no longer has (or all, when it stopped) lose their verdict.
        let keep: &[String] = if verdict.is_some() { &c.endpoints } else { &[] };
        let dropped: Vec<String> = self
            .containers
            .get(&c.id)
            .into_iter()
            .flatten()
            .filter(|e| !keep.contains(e))
            .filter(|e| self.verdicts.get(*e).is_some_and(|(o, _)| o == &c.id))
            .cloned()
            .collect();
        for e in dropped {
            self.set_verdict(&e, None);
        }
        let Some(v) = verdict else {
            self.containers.remove(&c.id);
            return;
        };
        for e in &c.endpoints {
            let old = self.verdicts.get(e).map(|(_, o)| *o);
            self.set_verdict(e, Some((c.id.clone(), v)));
            if old != Some(v) {
                self.transitions += 1;
                info!(
                    endpoint = short_id(e),
                    container = short_id(&c.id),
                    verdict = v.name(),
                    announce = v.announces(),
                    "health gate: verdict"
                );
            }
            self.failed_open.remove(e);
        }
        self.containers.insert(c.id, c.endpoints);
    }

    pub fn apply(&mut self, u: Update, now: Instant) {
        match u {
            Update::Container(c) => self.learn(c),
            Update::Gone(id) => self.forget(&id),
            Update::Sync(all) => {
                let keep: HashSet<&String> = all.iter().map(|c| &c.id).collect();
                let gone: Vec<String> = self
                    .containers
                    .keys()
                    .filter(|c| !keep.contains(c))
                    .cloned()
                    .collect();
                for c in gone {
                    self.forget(&c);
                }
                for c in all {
                    self.learn(c);
                }
            }
            Update::ApiUp => {
                self.api_up = true;
                self.api_down_since = None;
            }
            Update::ApiDown(_) => {
                if self.api_up || self.api_down_since.is_none() {
                    self.api_down_since = Some(now);
                }
                self.api_up = false;
            }
        }
    }

    /// The view without the held endpoints' announcements. `endpoints`
    /// maps each joined endpoint's host route to its endpoint ID; any other
    /// announcement (a subnet) passes untouched.
    pub fn filter(
        &mut self,
        view: &View,
        endpoints: &BTreeMap<IpNet, String>,
        now: Instant,
    ) -> Filtered {
        let mut out = Filtered {
            view: view.clone(),
            ..Filtered::default()
        };
        let down_for = self
            .api_down_since
            .filter(|_| !self.api_up)
            .map(|t| now.saturating_duration_since(t));
        let mut still_waiting = HashSet::new();
        let mut fail_open = Vec::new();
        let mut keep = |prefix: &IpNet| {
            let Some(e) = endpoints.get(prefix) else {
                return true;
            };
            let health = match self.verdicts.get(e) {
                Some((_, v)) => {
                    if let Some(since) = self.waiting.remove(e) {
                        if v.announces() {
                            out.released
                                .push((e.clone(), now.saturating_duration_since(since)));
                        }
                    }
                    Health::Verdict {
                        announces: v.announces(),
                        name: v.name(),
                    }
                }
                None => {
                    let since = *self.waiting.entry(e.clone()).or_insert(now);
                    still_waiting.insert(e.clone());
                    let waited = now.saturating_duration_since(since);
                    let open = self.failed_open.contains(e)
                        || down_for.is_some_and(|d| d.min(waited) >= FAIL_OPEN_AFTER);
                    if open {
                        fail_open.push(e.clone());
                    }
                    Health::Waiting { fail_open: open }
                }
            };
            // The endpoint is in the View: joined, its sandbox not gone,
            // its address live.
            let evidence = Evidence {
                joined: true,
                sandbox: Sandbox::Unchecked,
                address: Address::Ready,
                health,
            };
            match decide(&evidence) {
                Decision::Announce => true,
                Decision::Hold(why) => {
                    out.held.insert(e.clone(), why.to_string());
                    false
                }
            }
        };
        // The view's maps are persistent (imbl, no `retain`): what is held
        // is taken out one by one, the rest stays shared with the input.
        let held: Vec<IpNet> = view
            .announcements
            .keys()
            .filter(|p| !keep(p))
            .copied()
            .collect();
        for p in &held {
            out.view.announcements.remove(p);
        }
        self.waiting.retain(|e, _| still_waiting.contains(e));
        for e in fail_open {
            if self.failed_open.insert(e.clone()) {
                self.fail_open += 1;
                warn!(endpoint = short_id(&e), after = ?FAIL_OPEN_AFTER,
                    "health gate: Docker is unreachable and this endpoint was never classified: announced WITHOUT a health verdict (fail open)");
            }
        }
        self.failed_open.retain(|e| still_waiting.contains(e));
        out.waiting = !self.waiting.is_empty();
        out
    }
}

#[cfg(test)]
mod tests;
