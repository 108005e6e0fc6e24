//! The DLM of the node: o2dlm started on the node's o2net before any heartbeat event, fed
//! every node up/down after o2net, and the table of joined domains.
//!
//! o2dlm allows one registration of a domain per node, while the kernel counts
//! registrations (`dlm_register_domain` of a joined domain takes a reference): the table
//! does the counting, so that `o2cb lock` sessions share a domain and the last one out
//! leaves it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use o2dlm::wire::{NodeInfo, REGION_NAME_LEN};
use o2dlm::{Dlm, DlmConfig, DlmError, Domain};

use super::Guard;

/// How long a clean stop waits for a domain to be left before going on without it (leave
/// waits while other nodes use resources mastered here, which migration will fix).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

struct Entry {
    domain: Domain,
    refs: usize,
}

/// The node's DLM and its joined domains.
pub(crate) struct Domains {
    pub dlm: Dlm,
    table: Mutex<BTreeMap<String, Entry>>,
    /// Serializes joins and leaves, so that two sessions never join the same domain twice.
    joining: tokio::sync::Mutex<()>,
}

/// The DLM's view of the cluster: the node table and, in global mode, the regions, which a
/// joining node must share with the members (QUERY_NODEINFO, QUERY_REGION).
pub(crate) fn config(cluster: &o2nm::Cluster) -> DlmConfig {
    let nodes = cluster
        .nodes()
        .map(|n| NodeInfo {
            nodenum: n.num,
            ipv4_port: n.port,
            ipv4_address: n.addr,
        })
        .collect();
    let regions = (cluster.heartbeat_mode() == o2nm::HeartbeatMode::Global).then(|| {
        cluster
            .regions()
            .iter()
            .map(|r| {
                let mut slot = [0u8; REGION_NAME_LEN];
                let name = o2nm::text::encode(&r.name);
                let n = name.len().min(REGION_NAME_LEN);
                slot[..n].copy_from_slice(&name[..n]);
                slot
            })
            .collect()
    });
    DlmConfig {
        nodes,
        regions,
        ..DlmConfig::default()
    }
}

impl Domains {
    pub fn new(dlm: Dlm) -> Domains {
        Domains {
            dlm,
            table: Mutex::new(BTreeMap::new()),
            joining: tokio::sync::Mutex::new(()),
        }
    }

    /// Registers `name`: joins it unless joined; every call needs an [`Domains::unregister`].
    pub async fn register(&self, name: &str) -> Result<Domain, DlmError> {
        let _serial = self.joining.lock().await;
        if let Some(e) = self.table.guard().get_mut(name) {
            e.refs += 1;
            return Ok(e.domain.clone());
        }
        let domain = self.dlm.join(name).await?;
        self.table.guard().insert(
            name.to_string(),
            Entry {
                domain: domain.clone(),
                refs: 1,
            },
        );
        Ok(domain)
    }

    /// Drops one registration; the last one leaves the domain.
    pub async fn unregister(&self, name: &str) {
        let _serial = self.joining.lock().await;
        let last = {
            let mut t = self.table.guard();
            match t.get_mut(name) {
                Some(e) if e.refs > 1 => {
                    e.refs -= 1;
                    None
                }
                Some(_) => t.remove(name).map(|e| e.domain),
                None => None,
            }
        };
        if let Some(d) = last {
            leave(self.dlm.node(), d).await;
        }
    }

    /// A joined domain, for dumps.
    pub fn get(&self, name: &str) -> Option<Domain> {
        self.table.guard().get(name).map(|e| e.domain.clone())
    }

    /// The joined domains, by name.
    pub fn names(&self) -> Vec<String> {
        self.table.guard().keys().cloned().collect()
    }

    /// Leaves every domain (a clean stop).
    pub async fn leave_all(&self) {
        let _serial = self.joining.lock().await;
        let all: Vec<Domain> = std::mem::take(&mut *self.table.guard())
            .into_values()
            .map(|e| e.domain)
            .collect();
        for d in all {
            leave(self.dlm.node(), d).await;
        }
    }
}

async fn leave(node: u8, d: Domain) {
    let name = d.name();
    match tokio::time::timeout(LEAVE_TIMEOUT, d.leave()).await {
        Ok(Ok(())) => tracing::info!(node, domain = %name, "left domain {name}"),
        Ok(Err(e)) => tracing::warn!(node, domain = %name, "leaving domain {name}: {e}"),
        Err(_) => tracing::warn!(
            node,
            domain = %name,
            "domain {name} not left within {} s (resources mastered here still in use elsewhere)",
            LEAVE_TIMEOUT.as_secs()
        ),
    }
}
