//! The IPAM's methods on the plugin socket: Docker's `IpamDriver.*` and
//! our own `IpvlanBgp.IpamShow` and `IpvlanBgp.IpamReleaseHost`.
//!
//! In: a method name and its body (bytes, no Content-Type), from
//! `api::server`, which routes every `IpamDriver.*` and `IpvlanBgp.Ipam*`
//! call here. Out: a JSON answer, or a [`RequestError`] that the caller
//! answers with HTTP 500 (dockerd shows the text of an IPAM error only
//! then). Calls run concurrently and never take the network driver's lock:
//! an address from a held block costs no etcd round trip and waits for no
//! Join; only a claim of a new block waits for etcd, under its deadline.

use std::net::IpAddr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{info, warn};

use super::convert::{self, ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE};
use super::error::RequestError;
use super::show;
use super::wire::{
    AddressRequest, AddressSpacesResponse, CapabilitiesResponse, PoolRequest,
    ReleaseAddressRequest, ReleaseHostRequest, ReleasePoolRequest,
};
use crate::api::status::{BlockStatus, IpamStatus};
use crate::ipam::{release_host, Ipam, Store, Use};
use crate::metrics::IpamFigures;

/// Whether an address is the gateway of a network the driver holds now
/// (asked before the gateway's address is given back: two networks on one
/// pool share this host's gateway, and a refused second network's release
/// must not free the first one's).
pub type GatewayInUse = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// The IPAM side of the plugin: `None` when the driver runs without etcd.
pub struct IpamService<S: Store> {
    ipam: Option<Arc<Ipam<S>>>,
    gateway_in_use: GatewayInUse,
}

impl<S: Store> Clone for IpamService<S> {
    fn clone(&self) -> Self {
        IpamService {
            ipam: self.ipam.clone(),
            gateway_in_use: self.gateway_in_use.clone(),
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::Malformed(
            "empty body; expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))
}

fn value<T: serde::Serialize>(v: T) -> Result<Value, RequestError> {
    serde_json::to_value(v).map_err(|e| RequestError::Malformed(e.to_string()))
}

impl<S: Store + 'static> IpamService<S> {
    pub fn new(ipam: Option<Arc<Ipam<S>>>, gateway_in_use: GatewayInUse) -> Self {
        IpamService {
            ipam,
            gateway_in_use,
        }
    }

    pub fn ipam(&self) -> Option<&Arc<Ipam<S>>> {
        self.ipam.as_ref()
    }

    fn on(&self) -> Result<&Ipam<S>, RequestError> {
        self.ipam.as_deref().ok_or(RequestError::Off)
    }

    /// This host's blocks, strays, counters and etcd's health, for
    /// `status` (None while the IPAM is off). No etcd call.
    pub fn status(&self) -> Option<IpamStatus> {
        let ipam = self.ipam.as_deref()?;
        let local = show::local_view(ipam);
        let stats = ipam.stats();
        Some(IpamStatus {
            host: ipam.host(),
            store: ipam.health(),
            blocks: local
                .blocks
                .iter()
                .map(|(pool, block, used)| BlockStatus {
                    pool: *pool,
                    block: *block,
                    used: used.len(),
                })
                .collect(),
            strays: local.strays,
            claims: stats.claims,
            lost_races: stats.lost_races,
            etcd_failures: stats.etcd_failures,
        })
    }

    /// The figures `/metrics` shows (disabled while the IPAM is off).
    pub fn figures(&self) -> IpamFigures {
        let Some(ipam) = self.ipam.as_deref() else {
            return IpamFigures::default();
        };
        let s = ipam.snapshot();
        let stats = ipam.stats();
        let health = ipam.health();
        IpamFigures {
            enabled: true,
            store_up: health.up,
            store_failures: health.failures,
            pools: s.pools.len(),
            blocks: s.pools.values().map(|p| p.blocks.len()).sum(),
            addresses: s.pools.values().map(|p| p.addresses().count()).sum(),
            strays: s.pools.values().map(|p| p.strays.len()).sum(),
            claims: stats.claims,
            lost_races: stats.lost_races,
            etcd_failures: stats.etcd_failures,
        }
    }

    /// Whether `method` is one of the IPAM's.
    pub fn serves(method: &str) -> bool {
        method.starts_with("IpamDriver.") || method.starts_with("IpvlanBgp.Ipam")
    }

    /// Answers one call; `None` for a method it does not know (a 404,
    /// which libnetwork reads as "not implemented").
    pub async fn handle(&self, method: &str, body: &[u8]) -> Option<Result<Value, RequestError>> {
        Some(match method {
            "IpamDriver.GetCapabilities" => value(CapabilitiesResponse {
                requires_mac_address: false,
                requires_request_replay: false,
            }),
            "IpamDriver.GetDefaultAddressSpaces" => value(AddressSpacesResponse {
                local_default_address_space: ADDRESS_SPACE.into(),
                global_default_address_space: GLOBAL_ADDRESS_SPACE.into(),
            }),
            "IpamDriver.RequestPool" => self.request_pool(body).await,
            "IpamDriver.ReleasePool" => self.release_pool(body),
            "IpamDriver.RequestAddress" => self.request_address(body).await,
            "IpamDriver.ReleaseAddress" => self.release_address(body).await,
            "IpvlanBgp.IpamShow" => match self.on() {
                Ok(ipam) => value(show::collect(ipam).await),
                Err(e) => Err(e),
            },
            "IpvlanBgp.IpamReleaseHost" => self.release_host(body).await,
            _ => return None,
        })
    }

    async fn request_pool(&self, body: &[u8]) -> Result<Value, RequestError> {
        let req: PoolRequest = parse(body)?;
        let ipam = self.on()?;
        let want = convert::pool_request(&req)?;
        let rec = ipam.request_pool(want.pool, want.block_len).await?;
        info!(pool = %rec.cidr, block_len = rec.block_len, "pool ready");
        value(convert::pool_answer(rec.cidr))
    }

    /// Other hosts use the pool: nothing is released in etcd. This host's
    /// blocks of it go after the grace period once their addresses are
    /// back (the gateway's release comes just before).
    fn release_pool(&self, body: &[u8]) -> Result<Value, RequestError> {
        let req: ReleasePoolRequest = parse(body)?;
        let pool = convert::parse_pool_id(&req.pool_id)?;
        info!(%pool, "pool released by Docker (its blocks here go when empty for the grace period)");
        Ok(serde_json::json!({}))
    }

    async fn request_address(&self, body: &[u8]) -> Result<Value, RequestError> {
        let req: AddressRequest = parse(body)?;
        let (pool, want) = convert::address_request(&req)?;
        let ipam = self.on()?;
        // dockerd keeps PoolIDs across restarts and never replays
        // RequestPool: a pool this host does not know (its state was lost)
        // is looked up in etcd first.
        if ipam.pool(pool).is_none() {
            ipam.request_pool(pool, None).await?;
        }
        let addr = ipam.request_address(pool, want).await?;
        value(convert::address_answer(addr, pool, want))
    }

    async fn release_address(&self, body: &[u8]) -> Result<Value, RequestError> {
        let req: ReleaseAddressRequest = parse(body)?;
        let (pool, addr) = convert::release_request(&req)?;
        let ipam = self.on()?;
        if ipam.in_use(pool, addr) == Some(Use::Gateway) {
            let check = self.gateway_in_use.clone();
            let busy = tokio::task::spawn_blocking(move || check(addr))
                .await
                .unwrap_or(true);
            if busy {
                info!(%pool, %addr, "kept the gateway: a network on this host still uses it");
                return Ok(serde_json::json!({}));
            }
        }
        if !ipam.release_address(pool, addr)? {
            warn!(%pool, %addr, "Docker released an address this host did not hand out");
        }
        Ok(serde_json::json!({}))
    }

    async fn release_host(&self, body: &[u8]) -> Result<Value, RequestError> {
        let req: ReleaseHostRequest = parse(body)?;
        let ipam = self.on()?;
        if req.host == ipam.host() {
            return Err(RequestError::Invalid(format!(
                "{} is this host: release a dead host's blocks from another host (this one's containers would lose their blocks)",
                req.host
            )));
        }
        let released = release_host(ipam.store(), ipam.keys(), &req.host).await?;
        for b in &released {
            warn!(host = %req.host, pool = %b.pool, block = %b.block, "released a block of another host (ipam release-host)");
        }
        let blocks: Vec<String> = released.iter().map(|b| b.block.to_string()).collect();
        Ok(serde_json::json!({"host": req.host, "released": blocks}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::store::fake::MemStore;
    use crate::ipam::IpamConfig;
    use serde_json::json;

    struct Shared(Arc<MemStore>);
    impl Store for Shared {
        async fn range(
            &self,
            p: &str,
        ) -> Result<crate::ipam::store::Range, crate::ipam::StoreError> {
            self.0.range(p).await
        }
        async fn txn(
            &self,
            t: crate::ipam::store::Txn,
        ) -> Result<crate::ipam::store::TxnResult, crate::ipam::StoreError> {
            self.0.txn(t).await
        }
    }

    fn service(dir: &std::path::Path, m: &Arc<MemStore>, host: &str) -> IpamService<Shared> {
        let ipam = Ipam::open(
            Shared(m.clone()),
            IpamConfig::new(host, dir.join(format!("{host}.json"))),
        )
        .unwrap();
        IpamService::new(Some(Arc::new(ipam)), Arc::new(|_| false))
    }

    async fn call(s: &IpamService<Shared>, method: &str, body: Value) -> Result<Value, String> {
        s.handle(method, body.to_string().as_bytes())
            .await
            .expect("a known method")
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn two_hosts_share_a_pool_and_never_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(MemStore::default());
        let (h1, h2) = (service(dir.path(), &m, "h1"), service(dir.path(), &m, "h2"));
        let mut seen = std::collections::BTreeSet::new();
        for h in [&h1, &h2] {
            let p = call(h, "IpamDriver.RequestPool", json!({"AddressSpace": "ipvlan-bgp", "Pool": "10.20.0.0/16", "SubPool": "", "Options": {}, "V6": false})).await.unwrap();
            assert_eq!(p["PoolID"], "ipvlan-bgp/10.20.0.0/16");
            let g = call(h, "IpamDriver.RequestAddress", json!({"PoolID": p["PoolID"], "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}})).await.unwrap();
            assert!(g["Address"].as_str().unwrap().ends_with("/16"), "{g}");
            assert!(seen.insert(g["Address"].as_str().unwrap().to_string()));
            for _ in 0..3 {
                let a = call(
                    h,
                    "IpamDriver.RequestAddress",
                    json!({"PoolID": p["PoolID"], "Address": "", "Options": null}),
                )
                .await
                .unwrap();
                let a = a["Address"].as_str().unwrap().to_string();
                assert!(a.ends_with("/32"), "{a}");
                assert!(seen.insert(a.clone()), "{a} twice");
            }
        }
        // h1 takes a fixed address; h2 is refused it, naming h1.
        let a = call(
            &h1,
            "IpamDriver.RequestAddress",
            json!({"PoolID": "ipvlan-bgp/10.20.0.0/16", "Address": "10.20.200.5", "Options": null}),
        )
        .await
        .unwrap();
        assert_eq!(a["Address"], "10.20.200.5/32");
        let e = call(
            &h2,
            "IpamDriver.RequestAddress",
            json!({"PoolID": "ipvlan-bgp/10.20.0.0/16", "Address": "10.20.200.6", "Options": null}),
        )
        .await
        .unwrap_err();
        assert!(e.contains("10.20.200.6") && e.contains("h1"), "{e}");
        // h2 releases h1's blocks only as another host, never its own.
        let e = call(&h2, "IpvlanBgp.IpamReleaseHost", json!({"host": "h2"}))
            .await
            .unwrap_err();
        assert!(e.contains("is this host"), "{e}");
        let r = call(&h2, "IpvlanBgp.IpamReleaseHost", json!({"host": "h1"}))
            .await
            .unwrap();
        assert_eq!(r["released"].as_array().unwrap().len(), 2, "{r}");
        let show = call(&h2, "IpvlanBgp.IpamShow", json!({})).await.unwrap();
        assert!(
            show["pools"][0]["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["host"] == "h2"),
            "{show}"
        );
    }

    #[tokio::test]
    async fn a_gateway_in_use_is_kept_and_the_ipam_off_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(MemStore::default());
        let ipam = Arc::new(
            Ipam::open(
                Shared(m.clone()),
                IpamConfig::new("h1", dir.path().join("h1.json")),
            )
            .unwrap(),
        );
        let busy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let b = busy.clone();
        let s = IpamService::new(
            Some(ipam.clone()),
            Arc::new(move |_| b.load(std::sync::atomic::Ordering::SeqCst)),
        );
        call(
            &s,
            "IpamDriver.RequestPool",
            json!({"Pool": "10.20.0.0/16"}),
        )
        .await
        .unwrap();
        let g = call(&s, "IpamDriver.RequestAddress", json!({"PoolID": "ipvlan-bgp/10.20.0.0/16", "Options": {"RequestAddressType": "com.docker.network.gateway"}})).await.unwrap();
        let gw: IpAddr = g["Address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let pool = "10.20.0.0/16".parse().unwrap();
        call(
            &s,
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": "ipvlan-bgp/10.20.0.0/16", "Address": gw.to_string()}),
        )
        .await
        .unwrap();
        assert_eq!(
            ipam.in_use(pool, gw),
            Some(Use::Gateway),
            "kept: a network uses it"
        );
        busy.store(false, std::sync::atomic::Ordering::SeqCst);
        call(
            &s,
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": "ipvlan-bgp/10.20.0.0/16", "Address": gw.to_string()}),
        )
        .await
        .unwrap();
        assert_eq!(ipam.in_use(pool, gw), None);

        let off: IpamService<Shared> = IpamService::new(None, Arc::new(|_| false));
        let caps = call(&off, "IpamDriver.GetCapabilities", json!(null))
            .await
            .unwrap();
        assert_eq!(caps["RequiresRequestReplay"], false);
        let e = call(
            &off,
            "IpamDriver.RequestPool",
            json!({"Pool": "10.20.0.0/16"}),
        )
        .await
        .unwrap_err();
        assert!(e.contains("--etcd-endpoints"), "{e}");
        assert!(off.handle("IpamDriver.Nonsense", b"{}").await.is_none());
        let e = call(&s, "IpamDriver.RequestPool", json!("not an object"))
            .await
            .unwrap_err();
        assert!(e.contains("malformed"), "{e}");
    }
}
