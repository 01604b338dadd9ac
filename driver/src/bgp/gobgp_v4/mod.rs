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
//!
//! Rooms: [`path`] (prefixes and attributes, ours encoded and learned ones
//! decoded), [`event`] (the RIB stream and the WatchEvent stream decoded),
//! [`peer`] (peer settings encoded, peer state decoded); this file holds the
//! client and its calls.

pub mod api;
mod event;
mod path;
mod peer;

use std::time::Duration;

use ipnet::IpNet;
use tonic::transport::Channel;
use tonic::Status;

use super::gobgp_api::{
    deadline, next_within, EventStream, Family, GlobalInfo, GobgpApi, OwnPath, PeerInfo,
    PeerNextHop6, PeerSettings, RibStream, SessionState, StartSettings, MAX_MESSAGE,
};
use super::gobgp_policies::{export_own, gshut_import, Direction, PolicyInstall, SetKind};
use futures::StreamExt;

use api::go_bgp_service_client::GoBgpServiceClient;
pub use event::decode_event;
use path::family_of;
pub use path::{decode_destination, decode_path, encode_path, family};
use peer::{decode_peer, encode_peer};

/// A gobgpd 4.x client; every call waits at most `limit`.
#[derive(Clone)]
pub struct V4 {
    client: GoBgpServiceClient<Channel>,
    limit: Duration,
}

/// What gobgpd 4.x answers to calls before StartBgp.
const NOT_STARTED: &str = "hasn't started yet";

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

    async fn delete_peer(&mut self, address: &str) -> Result<(), Status> {
        let req = api::DeletePeerRequest {
            address: address.to_string(),
            interface: String::new(),
        };
        deadline("DeletePeer", self.limit, self.client.delete_peer(req)).await?;
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

    /// A WatchEvent stream of peer events alone: gobgpd registers it in
    /// its management loop (after any BGP message it is handling, as
    /// ListPeer would be) and first sends every peer's state as it stands
    /// (INIT events, then END_OF_INIT). The states are read and the stream
    /// dropped: O(peers), where ListPeer walks each established peer's
    /// paths to count them.
    async fn peer_up(&mut self, address: &str) -> Result<Option<bool>, Status> {
        use api::watch_event_response::{peer_event, Event as E};
        let wanted = address.parse::<std::net::IpAddr>().ok();
        let req = api::WatchEventRequest {
            peer: Some(api::watch_event_request::Peer {}),
            table: None,
            batch_size: 0,
        };
        let client = &mut self.client;
        let read = async move {
            let mut s = client.watch_event(req).await?.into_inner();
            let mut up = false;
            while let Some(m) = s.message().await? {
                let Some(E::Peer(pe)) = m.event else {
                    continue;
                };
                if pe.r#type == peer_event::Type::EndOfInit as i32 {
                    return Ok(Some(up));
                }
                if pe.r#type != peer_event::Type::Init as i32 {
                    continue;
                }
                if let Some(st) = pe.peer.and_then(|p| p.state) {
                    let same = match wanted {
                        Some(a) => st.neighbor_address.parse::<std::net::IpAddr>().ok() == Some(a),
                        None => st.neighbor_address == address,
                    };
                    if same
                        && SessionState::from_number(st.session_state) == SessionState::Established
                    {
                        up = true;
                    }
                }
            }
            Err(Status::unavailable(
                "gobgpd closed the peer probe's stream before END_OF_INIT",
            ))
        };
        deadline("WatchEvent (peer states)", self.limit, read).await
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
        self.install(&gshut_import()).await
    }

    async fn export_only_own_paths(&mut self, v6: &[PeerNextHop6]) -> Result<(), Status> {
        self.install(&export_own(v6)).await
    }
}

impl V4 {
    /// A policy with its sets and its global assignment: the sets first
    /// (the policy names them), then the policy, then the assignment.
    async fn install(&mut self, p: &PolicyInstall) -> Result<(), Status> {
        let (sets, policy, assignment) = wire_policy(p);
        for set in sets {
            self.add_defined_set(set).await?;
        }
        self.add_policy_and_assign(policy, assignment).await
    }

    /// AddDefinedSet; one already there is fine (installing again changes
    /// nothing).
    async fn add_defined_set(&mut self, set: api::DefinedSet) -> Result<(), Status> {
        let r = deadline(
            "AddDefinedSet",
            self.limit,
            self.client.add_defined_set(api::AddDefinedSetRequest {
                defined_set: Some(set),
                replace: false,
            }),
        )
        .await;
        tolerate_existing(r)
    }

    /// AddPolicy, then AddPolicyAssignment; either one already there is
    /// fine (installing again changes nothing).
    async fn add_policy_and_assign(
        &mut self,
        policy: api::Policy,
        assignment: api::PolicyAssignment,
    ) -> Result<(), Status> {
        let limit = self.limit;
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
        Err(e) if super::gobgp_api::policy_already_installed(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A [`PolicyInstall`] in this line's messages: the defined sets, the
/// policy, and its assignment to the global table (the policy named, its
/// statements not repeated).
fn wire_policy(p: &PolicyInstall) -> (Vec<api::DefinedSet>, api::Policy, api::PolicyAssignment) {
    let sets = p
        .sets
        .iter()
        .map(|s| api::DefinedSet {
            defined_type: match s.kind {
                SetKind::Neighbor => api::DefinedType::DefinedNeighbor,
                SetKind::Community => api::DefinedType::DefinedCommunity,
            } as i32,
            name: s.name.clone(),
            list: s.list.clone(),
        })
        .collect();
    let any = |set: &Option<String>| {
        set.as_ref().map(|name| api::MatchSet {
            r#type: api::match_set::Type::Any as i32,
            name: name.clone(),
        })
    };
    let statements = p
        .statements
        .iter()
        .map(|s| api::Statement {
            name: s.name.clone(),
            conditions: Some(api::Conditions {
                neighbor_set: any(&s.neighbor_set),
                community_set: any(&s.community_set),
                afi_safi_in: s.family.map(family).into_iter().collect(),
                route_type: if s.local_only {
                    api::conditions::RouteType::Local
                } else {
                    api::conditions::RouteType::Unspecified
                } as i32,
                ..api::Conditions::default()
            }),
            actions: Some(api::Actions {
                route_action: api::RouteAction::Accept as i32,
                nexthop: s.next_hop.map(|a| api::NexthopAction {
                    address: a.to_string(),
                    ..api::NexthopAction::default()
                }),
                local_pref: s.local_pref.map(|value| api::LocalPrefAction { value }),
                ..api::Actions::default()
            }),
        })
        .collect();
    let policy = api::Policy {
        name: p.name.clone(),
        statements,
    };
    let assignment = api::PolicyAssignment {
        name: "global".into(),
        direction: match p.direction {
            Direction::Import => api::PolicyDirection::Import,
            Direction::Export => api::PolicyDirection::Export,
        } as i32,
        policies: vec![api::Policy {
            name: p.name.clone(),
            statements: vec![],
        }],
        default_action: if p.default_accept {
            api::RouteAction::Accept
        } else {
            api::RouteAction::Reject
        } as i32,
    };
    (sets, policy, assignment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::gobgp_api::{
        EXPORT_POLICY, EXPORT_STATEMENT, GSHUT_LOCAL_PREF, GSHUT_POLICY, GSHUT_SET, GSHUT_STATEMENT,
    };

    /// The export policy in this line's messages (what it says is tested in
    /// [`crate::bgp::gobgp_policies`]): an uplink peer's statement with its
    /// neighbour set, ipv6-unicast, LOCAL and its next hop, then the LOCAL
    /// one; assigned to the global export, REJECT by default, the policy
    /// referred to by name.
    #[test]
    fn the_export_policy_in_this_lines_messages() {
        let v6 = [PeerNextHop6 {
            peer: "203.0.113.1".parse().unwrap(),
            next_hop: "fd00:0:ff::2".parse().unwrap(),
        }];
        let local = api::conditions::RouteType::Local as i32;
        let accept = api::RouteAction::Accept as i32;
        let (sets, policy, assignment) = wire_policy(&export_own(&v6));
        assert_eq!(
            sets,
            [api::DefinedSet {
                defined_type: api::DefinedType::DefinedNeighbor as i32,
                name: "ipvlan-bgp-v6-next-hop-203.0.113.1".into(),
                list: vec!["203.0.113.1/32".into()],
            }]
        );
        assert_eq!(
            policy,
            api::Policy {
                name: EXPORT_POLICY.into(),
                statements: vec![
                    api::Statement {
                        name: v6[0].name(),
                        conditions: Some(api::Conditions {
                            neighbor_set: Some(api::MatchSet {
                                r#type: api::match_set::Type::Any as i32,
                                name: v6[0].name(),
                            }),
                            afi_safi_in: vec![api::Family { afi: 2, safi: 1 }],
                            route_type: local,
                            ..api::Conditions::default()
                        }),
                        actions: Some(api::Actions {
                            route_action: accept,
                            nexthop: Some(api::NexthopAction {
                                address: "fd00:0:ff::2".into(),
                                ..api::NexthopAction::default()
                            }),
                            ..api::Actions::default()
                        }),
                    },
                    api::Statement {
                        name: EXPORT_STATEMENT.into(),
                        conditions: Some(api::Conditions {
                            route_type: local,
                            ..api::Conditions::default()
                        }),
                        actions: Some(api::Actions {
                            route_action: accept,
                            ..api::Actions::default()
                        }),
                    },
                ],
            }
        );
        assert_eq!(
            assignment,
            api::PolicyAssignment {
                name: "global".into(),
                direction: api::PolicyDirection::Export as i32,
                policies: vec![api::Policy {
                    name: EXPORT_POLICY.into(),
                    statements: vec![],
                }],
                default_action: api::RouteAction::Reject as i32,
            }
        );
    }

    /// The GRACEFUL_SHUTDOWN import policy in this line's messages: the
    /// community set, the statement that sets LOCAL_PREF, assigned to the
    /// global import, ACCEPT by default.
    #[test]
    fn the_gshut_policy_in_this_lines_messages() {
        let (sets, policy, assignment) = wire_policy(&gshut_import());
        assert_eq!(
            sets,
            [api::DefinedSet {
                defined_type: api::DefinedType::DefinedCommunity as i32,
                name: GSHUT_SET.into(),
                list: vec!["65535:0".into()],
            }]
        );
        assert_eq!(
            policy.statements,
            [api::Statement {
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
            }]
        );
        assert_eq!(policy.name, GSHUT_POLICY);
        assert_eq!(
            (assignment.direction, assignment.default_action),
            (
                api::PolicyDirection::Import as i32,
                api::RouteAction::Accept as i32
            )
        );
    }

    /// gobgpd's answers when the policy is there already (installed twice:
    /// no duplicate statement, no error); any other error still fails.
    #[test]
    fn installing_again_is_tolerated() {
        for m in [
            "statement ipvlan-bgp-own-paths already defined",
            "duplicated policy ipvlan-bgp-export-own",
            "already exists",
        ] {
            assert!(
                tolerate_existing::<()>(Err(Status::unknown(m))).is_ok(),
                "{m}"
            );
        }
        assert!(tolerate_existing::<()>(Err(Status::unknown("not found policy x"))).is_err());
    }
}
