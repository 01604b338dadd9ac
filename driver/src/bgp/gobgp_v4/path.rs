//! Paths on the 4.x wire: prefixes as typed NLRI, attributes as typed
//! oneofs.
//!
//! In: our [`OwnPath`]s (prefix, next hop, [`RouteAttrs`](crate::model::attrs::RouteAttrs)) and our ASN;
//! gobgpd's `api::Path`s and `ListPath` answers. Out: `api::Path`s to add
//! or delete (with the age set: gobgpd keeps what it is sent), and
//! [`RibPath`]s decoded from what gobgpd holds.

use std::time::SystemTime;

use ipnet::IpNet;

use super::super::gobgp_api::{
    mp_next_hop, parse_prefix, path_peer, DecodeError, Family, LearnedPath, OwnPath, PathAttrs,
    RibPath,
};
use super::api;
use api::attribute::Attr;
use api::{family, nlri, Attribute, Path};

pub fn family(f: Family) -> api::Family {
    api::Family {
        afi: match f {
            Family::Ipv4 => family::Afi::Ip as i32,
            Family::Ipv6 => family::Afi::Ip6 as i32,
        },
        safi: family::Safi::Unicast as i32,
    }
}

pub(super) fn family_of(prefix: &IpNet) -> api::Family {
    family(Family::of(prefix))
}

fn attr(a: Attr) -> Attribute {
    Attribute { attr: Some(a) }
}

pub(super) fn nlri_of(prefix: &IpNet) -> api::Nlri {
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

/// Our path to `prefix` via `nh` (the tests of this codec).
#[cfg(test)]
pub(super) fn own(prefix: &str, nh: &str, attrs: crate::model::attrs::RouteAttrs) -> OwnPath {
    OwnPath {
        prefix: prefix.parse().unwrap(),
        next_hop: nh.parse().unwrap(),
        attrs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::gobgp_api::GRACEFUL_SHUTDOWN;
    use crate::model::attrs::RouteAttrs;

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
}
