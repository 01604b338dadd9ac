//! The gobgpd 4.x codec (package `api`, service `GoBgpService`).
//!
//! In: the neutral requests of [`GobgpApi`] (our paths with their
//! [`RouteAttrs`], peers with their timers, BFD and graceful restart). Out:
//! `api` messages on the wire (our own proto, `proto/gobgp_v4.proto`), and
//! gobgpd's answers decoded into the neutral values of [`super::gobgp_api`].
//! The 4.x encoding lives only here: typed NLRI and attribute oneofs, enums
//! that start at UNSPECIFIED (GLOBAL 1, BEST 1, EOR 4), an own response per
//! call, `""` as the neighbour of our own paths, a path age the client must
//! set (gobgpd keeps what it is sent: 0 would read as 1970), BFD settings
//! and state, the reason a session went down, End-of-RIB events
//! (docs/gobgp-v4.md §3, §6).
//!
//! With multipath, 4.x best-path events are per-path deltas (a member
//! added, a member withdrawn while the others stay): they decode to
//! [`Event::BestDelta`], which the session resolves into whole sets before
//! the learner sees them; without it, to [`Event::Best`] as on 3.x.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tonic::transport::Channel;
use tonic::Status;

use super::gobgp_api::{
    deadline, mp_next_hop, next_within, parse_prefix, path_peer, Bfd, BfdInfo, BfdState,
    DecodeError, DownReason, Event, EventStream, Family, GlobalInfo, GobgpApi, LearnedPath,
    OwnPath, PathAttrs, PeerInfo, PeerSettings, RibPath, RibStream, SessionState, StartSettings,
    GRACEFUL_SHUTDOWN, GSHUT_LOCAL_PREF, GSHUT_POLICY, GSHUT_SET, GSHUT_STATEMENT, MAX_MESSAGE,
};
use super::gobgp_v3::community_text;
use futures::StreamExt;

pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("api");
}

use api::attribute::Attr;
use api::go_bgp_service_client::GoBgpServiceClient;
use api::{family, nlri, Attribute, Path};

/// A gobgpd 4.x client; every call waits at most `limit`.
#[derive(Clone)]
pub struct V4 {
    client: GoBgpServiceClient<Channel>,
    limit: Duration,
}

/// BFD's UDP port (RFC 5881).
const BFD_PORT: u32 = 3784;
/// What gobgpd 4.x answers to calls before StartBgp.
const NOT_STARTED: &str = "hasn't started yet";

pub fn family(f: Family) -> api::Family {
    api::Family {
        afi: match f {
            Family::Ipv4 => family::Afi::Ip as i32,
            Family::Ipv6 => family::Afi::Ip6 as i32,
        },
        safi: family::Safi::Unicast as i32,
    }
}

fn family_of(prefix: &IpNet) -> api::Family {
    family(Family::of(prefix))
}

fn attr(a: Attr) -> Attribute {
    Attribute { attr: Some(a) }
}

fn nlri_of(prefix: &IpNet) -> api::Nlri {
    api::Nlri {
        nlri: Some(nlri::Nlri::Prefix(api::IpAddressPrefix {
            prefix_len: u32::from(prefix.prefix_len()),
            prefix: prefix.network().to_string(),
        })),
    }
}

/// Now, as a protobuf timestamp: 4.x stores the age AddPath sends.
fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

/// A path for AddPath/DeletePath, the same attributes in the same order as
/// the 3.x codec writes them (see `gobgp_v3::encode_path`), typed, with its
/// age set to now.
pub fn encode_path(p: &OwnPath, asn: u32) -> Path {
    let attrs = &p.attrs;
    let mut pattrs = vec![attr(Attr::Origin(api::OriginAttribute { origin: 0 }))];
    match attrs.as_path_prepend {
        Some(n) if n > 0 && asn != 0 => pattrs.push(attr(Attr::AsPath(api::AsPathAttribute {
            segments: vec![api::AsSegment {
                r#type: api::as_segment::Type::AsSequence as i32,
                numbers: vec![asn; usize::from(n)],
            }],
        }))),
        _ => {}
    }
    match p.prefix {
        IpNet::V4(_) => pattrs.push(attr(Attr::NextHop(api::NextHopAttribute {
            next_hop: p.next_hop.to_string(),
        }))),
        IpNet::V6(_) => pattrs.push(attr(Attr::MpReach(api::MpReachNlriAttribute {
            family: Some(family_of(&p.prefix)),
            next_hops: vec![p.next_hop.to_string()],
            nlris: vec![nlri_of(&p.prefix)],
        }))),
    }
    if let Some(med) = attrs.med {
        pattrs.push(attr(Attr::MultiExitDisc(api::MultiExitDiscAttribute {
            med,
        })));
    }
    if let Some(local_pref) = attrs.local_pref {
        pattrs.push(attr(Attr::LocalPref(api::LocalPrefAttribute {
            local_pref,
        })));
    }
    if !attrs.communities.is_empty() {
        pattrs.push(attr(Attr::Communities(api::CommunitiesAttribute {
            communities: attrs.communities.clone(),
        })));
    }
    if !attrs.large_communities.is_empty() {
        pattrs.push(attr(Attr::LargeCommunities(
            api::LargeCommunitiesAttribute {
                communities: attrs
                    .large_communities
                    .iter()
                    .map(
                        |&[global_admin, local_data1, local_data2]| api::LargeCommunity {
                            global_admin,
                            local_data1,
                            local_data2,
                        },
                    )
                    .collect(),
            },
        )));
    }
    Path {
        nlri: Some(nlri_of(&p.prefix)),
        pattrs,
        family: Some(family_of(&p.prefix)),
        age: Some(now()),
        ..Path::default()
    }
}

/// A path of gobgpd's RIB or events, decoded with all the attributes we read.
pub fn decode_path(p: &Path) -> Result<RibPath, DecodeError> {
    let nlri = p.nlri.as_ref().ok_or(DecodeError::NoNlri)?;
    let prefix = match nlri.nlri.as_ref() {
        Some(nlri::Nlri::Prefix(x)) => parse_prefix(&x.prefix, x.prefix_len)?,
        None => return Err(DecodeError::NotPrefix("(not modelled)".into())),
    };
    let mut next_hop = None;
    let mut attrs = PathAttrs::default();
    for a in p.pattrs.iter().filter_map(|a| a.attr.as_ref()) {
        match a {
            Attr::NextHop(nh) => next_hop = nh.next_hop.parse().ok().or(next_hop),
            Attr::MpReach(mp) => next_hop = mp_next_hop(&mp.next_hops).or(next_hop),
            Attr::AsPath(ap) => {
                attrs.as_path = ap.segments.iter().flat_map(|s| s.numbers.clone()).collect();
            }
            Attr::MultiExitDisc(m) => attrs.med = Some(m.med),
            Attr::LocalPref(l) => attrs.local_pref = Some(l.local_pref),
            Attr::Communities(c) => {
                attrs.communities = c.communities.clone();
                attrs.communities.sort_unstable();
            }
            Attr::LargeCommunities(c) => {
                attrs.large_communities = c
                    .communities
                    .iter()
                    .map(|l| [l.global_admin, l.local_data1, l.local_data2])
                    .collect();
                attrs.large_communities.sort_unstable();
            }
            _ => {}
        }
    }
    Ok(RibPath {
        path: LearnedPath {
            prefix,
            next_hop,
            withdraw: p.is_withdraw,
            peer: path_peer(&p.neighbor_ip),
            as_path: attrs.as_path.clone(),
        },
        attrs,
        best: p.best,
        stale: p.stale,
    })
}

/// The decodable paths of one ListPath destination.
pub fn decode_destination(r: api::ListPathResponse) -> Vec<RibPath> {
    r.destination
        .map(|d| d.paths.iter().filter_map(|p| decode_path(p).ok()).collect())
        .unwrap_or_default()
}

/// One WatchEvent message. Table events: End-of-RIB markers (a path without
/// NLRI, from the EOR filter) become [`Event::EndOfRib`]; best paths become
/// [`Event::Best`], or [`Event::BestDelta`] when gobgpd runs with
/// `multipath` (per-path deltas). Peer events: the state of a peer (the
/// END_OF_INIT marker, which names no peer, is dropped).
pub fn decode_event(m: api::WatchEventResponse, multipath: bool) -> Vec<Event> {
    use api::watch_event_response::{peer_event, Event as E};
    match m.event {
        Some(E::Table(t)) => {
            let mut out = Vec::new();
            let mut paths = Vec::new();
            for p in &t.paths {
                if p.nlri.is_none() {
                    let fam = p.family.and_then(|f| Family::from_afi_safi(f.afi, f.safi));
                    if let (Some(family), Some(peer)) = (fam, path_peer(&p.neighbor_ip)) {
                        out.push(Event::EndOfRib { peer, family });
                    }
                    continue;
                }
                if let Ok(d) = decode_path(p) {
                    paths.push(d.path);
                }
            }
            if !paths.is_empty() {
                out.push(if multipath {
                    Event::BestDelta(paths)
                } else {
                    Event::Best(paths)
                });
            }
            out
        }
        Some(E::Peer(pe)) if pe.r#type != peer_event::Type::EndOfInit as i32 => pe
            .peer
            .and_then(|p| p.state)
            .map(|st| Event::Peer {
                address: st.neighbor_address,
                asn: st.peer_asn,
                state: SessionState::from_number(st.session_state),
            })
            .into_iter()
            .collect(),
        _ => vec![],
    }
}

fn bfd_state(n: i32) -> BfdState {
    match api::BfdSessionState::try_from(n) {
        Ok(api::BfdSessionState::BfdUp) => BfdState::Up,
        Ok(api::BfdSessionState::BfdDown) => BfdState::Down,
        Ok(api::BfdSessionState::BfdAdminDown) => BfdState::AdminDown,
        Ok(api::BfdSessionState::BfdInit) => BfdState::Init,
        _ => BfdState::Unknown,
    }
}

fn down_reason(st: &api::PeerState) -> Option<DownReason> {
    use api::peer_state::DisconnectReason as R;
    let msg = st.disconnect_message.clone();
    Some(match R::try_from(st.disconnect_reason).ok()? {
        R::Unspecified => return None,
        R::HoldTimerExpired => DownReason::HoldTimerExpired,
        R::NotificationSent | R::HardReset => DownReason::NotificationSent(msg),
        R::NotificationReceived => DownReason::NotificationReceived(msg),
        R::ReadFailed | R::WriteFailed => DownReason::ConnectionLost,
        R::GracefulRestart => DownReason::GracefulRestart,
        R::AdminDownReason | R::Deconfigured => DownReason::Local,
        _ => DownReason::Other(format!("{} ({msg})", st.disconnect_reason)),
    })
}

fn decode_peer(p: api::Peer) -> PeerInfo {
    let conf = p.conf.unwrap_or_default();
    let st = p.state.unwrap_or_default();
    let timers = p.timers.and_then(|t| t.config).unwrap_or_default();
    let mut gr_families = Vec::new();
    let mut end_of_rib = Vec::new();
    for a in &p.afi_safis {
        let Some(f) = a
            .config
            .as_ref()
            .and_then(|c| c.family)
            .and_then(|f| Family::from_afi_safi(f.afi, f.safi))
        else {
            continue;
        };
        if let Some(s) = a.mp_graceful_restart.as_ref().and_then(|m| m.state) {
            if s.received && s.advertised {
                gr_families.push(f);
            }
            if s.end_of_rib_received {
                end_of_rib.push(f);
            }
        }
    }
    let bfd = p.bfd.filter(|b| b.enabled).map(|b| BfdInfo {
        settings: Bfd {
            interval: Duration::from_micros(u64::from(b.desired_minimum_tx_interval)),
            multiplier: u8::try_from(b.detection_multiplier).unwrap_or(u8::MAX),
        },
        state: st
            .bfd_state
            .as_ref()
            .map_or(BfdState::Unknown, |s| bfd_state(s.session_state)),
    });
    PeerInfo {
        address: conf.neighbor_address,
        asn: conf.peer_asn,
        state: SessionState::from_number(st.session_state),
        down_reason: down_reason(&st),
        bfd,
        graceful_restart: p
            .graceful_restart
            .filter(|g| g.enabled)
            .map(|g| g.restart_time),
        gr_families,
        end_of_rib,
        notifications_sent: st
            .messages
            .as_ref()
            .and_then(|m| m.sent.as_ref())
            .map_or(0, |s| s.notification),
        hold_time: timers.hold_time,
        keepalive: timers.keepalive_interval,
        local_address: p
            .transport
            .and_then(|t| t.local_address.parse::<IpAddr>().ok()),
    }
}

/// AddPeer/UpdatePeer's message: both unicast families (as on 3.x), BFD in
/// microseconds (transmit and receive alike), graceful restart per family.
fn encode_peer(p: &PeerSettings) -> api::Peer {
    let gr = p.graceful_restart;
    let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
    api::Peer {
        conf: Some(api::PeerConf {
            auth_password: p
                .password
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
            description: "configured by ipvlan-bgp".into(),
            neighbor_address: p.address.to_string(),
            peer_asn: p.peer_asn,
            ..api::PeerConf::default()
        }),
        ebgp_multihop: p.multihop.map(|ttl| api::EbgpMultihop {
            enabled: true,
            multihop_ttl: ttl,
        }),
        route_reflector: p.rr_client.then(|| api::RouteReflector {
            route_reflector_client: true,
            route_reflector_cluster_id: String::new(),
        }),
        state: None,
        timers: Some(api::Timers {
            config: Some(api::TimersConfig {
                connect_retry: p.connect_retry,
                hold_time: p.hold_time,
                keepalive_interval: p.keepalive,
                ..api::TimersConfig::default()
            }),
            state: None,
        }),
        transport: Some(api::Transport {
            passive_mode: p.passive,
            ..api::Transport::default()
        }),
        graceful_restart: gr.map(|g| api::GracefulRestart {
            enabled: true,
            restart_time: g.restart_time,
            deferral_time: g.deferral_time,
            longlived_enabled: g.long_lived.is_some(),
            local_restarting: g.restarting,
            ..api::GracefulRestart::default()
        }),
        afi_safis: Family::ALL
            .into_iter()
            .map(|f| api::AfiSafi {
                config: Some(api::AfiSafiConfig {
                    family: Some(family(f)),
                    enabled: true,
                }),
                mp_graceful_restart: gr.map(|_| api::MpGracefulRestart {
                    config: Some(api::MpGracefulRestartConfig { enabled: true }),
                    state: None,
                }),
                long_lived_graceful_restart: gr.and_then(|g| g.long_lived).map(|t| {
                    api::LongLivedGracefulRestart {
                        config: Some(api::LongLivedGracefulRestartConfig {
                            enabled: true,
                            restart_time: t,
                        }),
                        state: None,
                    }
                }),
                ..api::AfiSafi::default()
            })
            .collect(),
        bfd: p.bfd.map(|b| api::BfdPeerConfig {
            enabled: true,
            port: BFD_PORT,
            desired_minimum_tx_interval: micros(b.interval),
            required_minimum_receive: micros(b.interval),
            detection_multiplier: u32::from(b.multiplier),
        }),
    }
}

impl V4 {
    pub fn new(channel: Channel, limit: Duration) -> V4 {
        V4 {
            client: GoBgpServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
            limit,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }
}

fn not_started(e: &Status) -> bool {
    e.message().contains(NOT_STARTED)
}

impl GobgpApi for V4 {
    async fn get_bgp(&mut self) -> Result<GlobalInfo, Status> {
        let g = match deadline(
            "GetBgp",
            self.limit,
            self.client.get_bgp(api::GetBgpRequest {}),
        )
        .await
        {
            Ok(r) => r.into_inner().global.unwrap_or_default(),
            // 4.x answers an error before StartBgp; 3.x answers AS 0.
            Err(e) if not_started(&e) => api::Global::default(),
            Err(e) => return Err(e),
        };
        Ok(GlobalInfo {
            asn: g.asn,
            router_id: g.router_id,
            use_multiple_paths: g.use_multiple_paths,
        })
    }

    async fn start_bgp(&mut self, s: &StartSettings) -> Result<(), Status> {
        let req = api::StartBgpRequest {
            global: Some(api::Global {
                asn: s.asn,
                router_id: s.router_id.clone(),
                listen_port: s.listen_port,
                use_multiple_paths: s.use_multiple_paths,
                ..api::Global::default()
            }),
        };
        deadline("StartBgp", self.limit, self.client.start_bgp(req)).await?;
        Ok(())
    }

    async fn stop_bgp(&mut self, graceful: bool) -> Result<(), Status> {
        let req = api::StopBgpRequest {
            allow_graceful_restart: graceful,
        };
        deadline("StopBgp", self.limit, self.client.stop_bgp(req)).await?;
        Ok(())
    }

    async fn list_peers(&mut self, address: Option<&str>) -> Result<Vec<PeerInfo>, Status> {
        let req = api::ListPeerRequest {
            address: address.unwrap_or_default().to_string(),
            enable_advertised: false,
        };
        let mut s = match deadline("ListPeer", self.limit, self.client.list_peer(req)).await {
            Ok(s) => s.into_inner(),
            Err(e) if not_started(&e) => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        while let Some(r) = next_within("ListPeer", self.limit, &mut s).await? {
            out.extend(r.peer.map(decode_peer));
        }
        Ok(out)
    }

    async fn add_peer(&mut self, p: &PeerSettings) -> Result<(), Status> {
        let add = self.client.add_peer(api::AddPeerRequest {
            peer: Some(encode_peer(p)),
        });
        deadline("AddPeer", self.limit, add).await?;
        Ok(())
    }

    async fn update_peer(&mut self, p: &PeerSettings) -> Result<(), Status> {
        let req = api::UpdatePeerRequest {
            peer: Some(encode_peer(p)),
            do_soft_reset_in: false,
        };
        deadline("UpdatePeer", self.limit, self.client.update_peer(req)).await?;
        Ok(())
    }

    async fn add_path(&mut self, p: &OwnPath, asn: u32) -> Result<Vec<u8>, Status> {
        let req = api::AddPathRequest {
            table_type: api::TableType::Global as i32,
            vrf_id: String::new(),
            path: Some(encode_path(p, asn)),
        };
        let answer = deadline("AddPath", self.limit, self.client.add_path(req)).await?;
        Ok(answer.into_inner().uuid)
    }

    async fn add_paths(
        &mut self,
        paths: &[OwnPath],
        asn: u32,
        limit: Duration,
    ) -> Result<(), Status> {
        let msgs: Vec<api::AddPathStreamRequest> = paths
            .chunks(1000)
            .map(|chunk| api::AddPathStreamRequest {
                table_type: api::TableType::Global as i32,
                vrf_id: String::new(),
                paths: chunk.iter().map(|p| encode_path(p, asn)).collect(),
            })
            .collect();
        let stream = self.client.add_path_stream(tokio_stream::iter(msgs));
        deadline("AddPathStream", limit, stream).await?;
        Ok(())
    }

    async fn delete_path(&mut self, p: &OwnPath, asn: u32) -> Result<(), Status> {
        let req = api::DeletePathRequest {
            table_type: api::TableType::Global as i32,
            family: Some(family_of(&p.prefix)),
            path: Some(encode_path(p, asn)),
            ..api::DeletePathRequest::default()
        };
        deadline("DeletePath", self.limit, self.client.delete_path(req)).await?;
        Ok(())
    }

    async fn delete_path_uuid(&mut self, f: Family, uuid: &[u8]) -> Result<(), Status> {
        let req = api::DeletePathRequest {
            table_type: api::TableType::Global as i32,
            family: Some(family(f)),
            uuid: uuid.to_vec(),
            ..api::DeletePathRequest::default()
        };
        deadline("DeletePath", self.limit, self.client.delete_path(req)).await?;
        Ok(())
    }

    async fn delete_family(&mut self, f: Family) -> Result<(), Status> {
        let req = api::DeletePathRequest {
            table_type: api::TableType::Global as i32,
            family: Some(family(f)),
            ..api::DeletePathRequest::default()
        };
        deadline("DeletePath", self.limit, self.client.delete_path(req)).await?;
        Ok(())
    }

    async fn open_rib(&mut self, f: Family, prefixes: &[IpNet]) -> Result<RibStream, Status> {
        let req = api::ListPathRequest {
            table_type: api::TableType::Global as i32,
            family: Some(family(f)),
            prefixes: prefixes
                .iter()
                .map(|p| api::TableLookupPrefix {
                    prefix: p.to_string(),
                    r#type: api::table_lookup_prefix::Type::Exact as i32,
                })
                .collect(),
            ..api::ListPathRequest::default()
        };
        let s = deadline("ListPath", self.limit, self.client.list_path(req)).await?;
        Ok(RibStream::new(
            s.into_inner().map(|r| r.map(decode_destination)),
        ))
    }

    /// The peer filter makes gobgpd answer at once (its INIT events end with
    /// END_OF_INIT even without peers), so the stream's headers come within
    /// the deadline; a stream with only table filters may never open
    /// (docs/gobgp-v4.md §3).
    async fn watch(&mut self, multipath: bool) -> Result<EventStream, Status> {
        use api::watch_event_request::{table, Peer, Table};
        let filter = |t: table::filter::Type| table::Filter {
            r#type: t as i32,
            init: false,
            ..table::Filter::default()
        };
        let req = api::WatchEventRequest {
            peer: Some(Peer {}),
            table: Some(Table {
                filters: vec![
                    filter(table::filter::Type::Best),
                    filter(table::filter::Type::Eor),
                ],
            }),
            batch_size: 0,
        };
        let s = deadline("WatchEvent", self.limit, self.client.watch_event(req)).await?;
        Ok(EventStream::new(
            s.into_inner()
                .map(move |r| r.map(|m| decode_event(m, multipath))),
        ))
    }

    async fn honour_graceful_shutdown(&mut self) -> Result<(), Status> {
        let set = api::DefinedSet {
            defined_type: api::DefinedType::DefinedCommunity as i32,
            name: GSHUT_SET.into(),
            list: vec![community_text(GRACEFUL_SHUTDOWN)],
        };
        let policy = api::Policy {
            name: GSHUT_POLICY.into(),
            statements: vec![api::Statement {
                name: GSHUT_STATEMENT.into(),
                conditions: Some(api::Conditions {
                    community_set: Some(api::MatchSet {
                        r#type: api::match_set::Type::Any as i32,
                        name: GSHUT_SET.into(),
                    }),
                    ..api::Conditions::default()
                }),
                actions: Some(api::Actions {
                    route_action: api::RouteAction::Accept as i32,
                    local_pref: Some(api::LocalPrefAction {
                        value: GSHUT_LOCAL_PREF,
                    }),
                    ..api::Actions::default()
                }),
            }],
        };
        let assignment = api::PolicyAssignment {
            name: "global".into(),
            direction: api::PolicyDirection::Import as i32,
            policies: vec![api::Policy {
                name: GSHUT_POLICY.into(),
                statements: vec![],
            }],
            default_action: api::RouteAction::Accept as i32,
        };
        let limit = self.limit;
        let r = deadline(
            "AddDefinedSet",
            limit,
            self.client.add_defined_set(api::AddDefinedSetRequest {
                defined_set: Some(set),
                replace: false,
            }),
        )
        .await;
        tolerate_existing(r)?;
        let r = deadline(
            "AddPolicy",
            limit,
            self.client.add_policy(api::AddPolicyRequest {
                policy: Some(policy),
                refer_existing_statements: false,
            }),
        )
        .await;
        tolerate_existing(r)?;
        let r = deadline(
            "AddPolicyAssignment",
            limit,
            self.client
                .add_policy_assignment(api::AddPolicyAssignmentRequest {
                    assignment: Some(assignment),
                }),
        )
        .await;
        tolerate_existing(r)?;
        Ok(())
    }
}

fn tolerate_existing<T>(r: Result<T, Status>) -> Result<(), Status> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if super::gobgp_api::already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::gobgp_api::GracefulRestart;
    use crate::model::attrs::RouteAttrs;

    fn own(prefix: &str, nh: &str, attrs: RouteAttrs) -> OwnPath {
        OwnPath {
            prefix: prefix.parse().unwrap(),
            next_hop: nh.parse().unwrap(),
            attrs,
        }
    }

    fn arm(a: &Attribute) -> &'static str {
        match a.attr.as_ref() {
            Some(Attr::Origin(_)) => "origin",
            Some(Attr::AsPath(_)) => "as_path",
            Some(Attr::NextHop(_)) => "next_hop",
            Some(Attr::MultiExitDisc(_)) => "med",
            Some(Attr::LocalPref(_)) => "local_pref",
            Some(Attr::Communities(_)) => "communities",
            Some(Attr::MpReach(_)) => "mp_reach",
            Some(Attr::LargeCommunities(_)) => "large_communities",
            _ => "other",
        }
    }

    /// The same attributes as the 3.x codec, in the same order, typed;
    /// AS_SEQUENCE stays 2; the age is now (4.x keeps what it is sent).
    #[test]
    fn attributes_are_encoded_typed_and_decode_back() {
        let attrs = RouteAttrs {
            communities: vec![65000 << 16 | 100, GRACEFUL_SHUTDOWN],
            large_communities: vec![[65000, 1, 2]],
            local_pref: Some(200),
            med: Some(50),
            as_path_prepend: Some(2),
        };
        let p = encode_path(&own("10.1.1.2/32", "192.0.2.1", attrs.clone()), 65000);
        let arms: Vec<&str> = p.pattrs.iter().map(arm).collect();
        assert_eq!(
            arms,
            [
                "origin",
                "as_path",
                "next_hop",
                "med",
                "local_pref",
                "communities",
                "large_communities"
            ]
        );
        let Some(Attr::AsPath(ap)) = &p.pattrs[1].attr else {
            panic!()
        };
        assert_eq!(ap.segments[0].r#type, 2, "AS_SEQUENCE is 2 on both lines");
        assert_eq!(ap.segments[0].numbers, [65000, 65000]);
        let age = p.age.unwrap().seconds;
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((unix - age).abs() <= 2, "age {age} vs now {unix}");
        assert_eq!(p.family, Some(api::Family { afi: 1, safi: 1 }));
        let d = decode_path(&p).unwrap();
        assert_eq!(d.attrs.as_ours(65000), Some(attrs.clone()));
        assert_eq!(d.path.next_hop, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(d.path.peer, None, "\"\" is our own on 4.x");
        // IPv6: MP_REACH_NLRI with the family, the next hop and the NLRI.
        let p = encode_path(
            &own("fd00:1::5/128", "2001:db8::1", RouteAttrs::default()),
            65000,
        );
        assert_eq!(
            p.pattrs.iter().map(arm).collect::<Vec<_>>(),
            ["origin", "mp_reach"]
        );
        let Some(Attr::MpReach(mp)) = &p.pattrs[1].attr else {
            panic!()
        };
        assert_eq!(mp.family, Some(api::Family { afi: 2, safi: 1 }));
        assert_eq!(mp.next_hops, ["2001:db8::1"]);
        assert_eq!(mp.nlris.len(), 1);
        let d = decode_path(&p).unwrap();
        assert_eq!(d.path.prefix, "fd00:1::5/128".parse::<IpNet>().unwrap());
        assert!(d.attrs.as_ours(65000).is_some_and(|a| a.is_empty()));
    }

    fn table_event(paths: Vec<Path>) -> api::WatchEventResponse {
        api::WatchEventResponse {
            event: Some(api::watch_event_response::Event::Table(
                api::watch_event_response::TableEvent { paths },
            )),
        }
    }

    fn learned(prefix: &str, peer: &str, withdraw: bool) -> Path {
        let mut p = encode_path(&own(prefix, "192.0.2.2", RouteAttrs::default()), 0);
        p.neighbor_ip = peer.into();
        p.is_withdraw = withdraw;
        p
    }

    #[test]
    fn best_events_are_sets_without_multipath_and_deltas_with_it() {
        let ev = || table_event(vec![learned("10.1.2.0/24", "192.0.2.2", true)]);
        let [Event::Best(p)] = &decode_event(ev(), false)[..] else {
            panic!()
        };
        assert!(p[0].withdraw && p[0].peer.as_deref() == Some("192.0.2.2"));
        let [Event::BestDelta(p)] = &decode_event(ev(), true)[..] else {
            panic!()
        };
        assert_eq!(p.len(), 1);
        assert!(decode_event(table_event(vec![]), true).is_empty());
    }

    #[test]
    fn end_of_rib_markers_and_peer_events_decode() {
        let eor = Path {
            family: Some(family(Family::Ipv6)),
            neighbor_ip: "192.0.2.2".into(),
            ..Path::default()
        };
        let ev = decode_event(
            table_event(vec![eor, learned("10.1.2.0/24", "192.0.2.2", false)]),
            false,
        );
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(
            ev[0],
            Event::EndOfRib {
                peer: "192.0.2.2".into(),
                family: Family::Ipv6
            }
        );
        use api::watch_event_response::{peer_event, PeerEvent};
        let peer = |t: peer_event::Type, addr: &str| api::WatchEventResponse {
            event: Some(api::watch_event_response::Event::Peer(PeerEvent {
                r#type: t as i32,
                peer: Some(api::Peer {
                    state: Some(api::PeerState {
                        neighbor_address: addr.into(),
                        peer_asn: 65001,
                        session_state: api::peer_state::SessionState::Established as i32,
                        ..api::PeerState::default()
                    }),
                    ..api::Peer::default()
                }),
            })),
        };
        assert_eq!(
            decode_event(peer(peer_event::Type::State, "192.0.2.2"), false),
            [Event::Peer {
                address: "192.0.2.2".into(),
                asn: 65001,
                state: SessionState::Established
            }]
        );
        assert!(decode_event(peer(peer_event::Type::EndOfInit, "invalid IP"), false).is_empty());
    }

    fn settings() -> PeerSettings {
        PeerSettings {
            address: "192.0.2.2".parse().unwrap(),
            peer_asn: 65001,
            password: None,
            passive: true,
            rr_client: false,
            multihop: None,
            hold_time: 9,
            keepalive: 3,
            connect_retry: 5,
            bfd: Some(Bfd {
                interval: Duration::from_millis(300),
                multiplier: 3,
            }),
            graceful_restart: Some(GracefulRestart {
                restart_time: 120,
                deferral_time: 5,
                restarting: false,
                long_lived: None,
            }),
        }
    }

    #[test]
    fn peers_carry_bfd_in_microseconds_and_graceful_restart() {
        let m = encode_peer(&settings());
        assert_eq!(
            m.bfd,
            Some(api::BfdPeerConfig {
                enabled: true,
                port: 3784,
                desired_minimum_tx_interval: 300_000,
                required_minimum_receive: 300_000,
                detection_multiplier: 3,
            })
        );
        let gr = m.graceful_restart.unwrap();
        assert!(gr.enabled && !gr.local_restarting && !gr.longlived_enabled);
        assert_eq!((gr.restart_time, gr.deferral_time), (120, 5));
        assert!(m.transport.unwrap().passive_mode);
        let fams: Vec<(i32, bool)> = m
            .afi_safis
            .iter()
            .map(|a| {
                (
                    a.config.unwrap().family.unwrap().afi,
                    a.mp_graceful_restart.unwrap().config.unwrap().enabled,
                )
            })
            .collect();
        assert_eq!(fams, [(1, true), (2, true)]);
        let mut s = settings();
        s.bfd = None;
        assert!(encode_peer(&s).bfd.is_none());
    }

    #[test]
    fn peers_decode_with_bfd_state_and_why_they_went_down() {
        let mut m = encode_peer(&settings());
        m.state = Some(api::PeerState {
            neighbor_address: "192.0.2.2".into(),
            peer_asn: 65001,
            session_state: api::peer_state::SessionState::Active as i32,
            disconnect_reason: api::peer_state::DisconnectReason::HoldTimerExpired as i32,
            bfd_state: Some(api::BfdPeerState {
                session_state: api::BfdSessionState::BfdDown as i32,
                ..api::BfdPeerState::default()
            }),
            ..api::PeerState::default()
        });
        let p = decode_peer(m.clone());
        assert!(!p.is_established());
        assert_eq!(p.down_reason, Some(DownReason::HoldTimerExpired));
        let bfd = p.bfd.unwrap();
        assert_eq!(bfd.state, BfdState::Down);
        assert_eq!(bfd.settings.interval, Duration::from_millis(300));
        assert_eq!(bfd.settings.detection(), Duration::from_millis(900));
        let st = m.state.as_mut().unwrap();
        st.disconnect_reason = api::peer_state::DisconnectReason::NotificationSent as i32;
        st.disconnect_message = "BFD is down".into();
        let p = decode_peer(m.clone());
        assert_eq!(
            p.down_reason,
            Some(DownReason::NotificationSent("BFD is down".into()))
        );
        assert!(p.down_reason.unwrap().is_hard());
        let st = m.state.as_mut().unwrap();
        st.disconnect_reason = api::peer_state::DisconnectReason::Deconfigured as i32;
        assert_eq!(decode_peer(m.clone()).down_reason, Some(DownReason::Local));
        m.state.as_mut().unwrap().disconnect_reason = 0;
        assert_eq!(decode_peer(m.clone()).down_reason, None);
        // What 4.8's ListPeer really gives after a hold expiry: no reason,
        // one more NOTIFICATION sent.
        m.state.as_mut().unwrap().messages = Some(api::Messages {
            sent: Some(api::Message {
                notification: 1,
                ..api::Message::default()
            }),
            received: None,
        });
        assert_eq!(decode_peer(m).notifications_sent, 1);
    }

    /// The password read from a file or the environment reaches AddPeer.
    #[test]
    fn the_password_reaches_add_peer() {
        let mut s = settings();
        s.password = Some(crate::bgp::gobgp_api::Secret("s3cret".into()));
        assert_eq!(encode_peer(&s).conf.unwrap().auth_password, "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    /// The session's own local address (the IPv6 next hop prefers it) is
    /// read from ListPeer's transport; an empty one is none.
    #[test]
    fn the_local_address_of_a_session_is_read() {
        let mut m = encode_peer(&settings());
        m.transport = Some(api::Transport {
            local_address: "2001:db8:a::1".into(),
            ..api::Transport::default()
        });
        assert_eq!(
            decode_peer(m.clone()).local_address,
            "2001:db8:a::1".parse().ok()
        );
        m.transport.as_mut().unwrap().local_address = String::new();
        assert_eq!(decode_peer(m).local_address, None);
    }
}
