//! The node's one table of joined o2dlm domains, shared by dlmfs ([`crate::O2dlmNode`]) and
//! the node daemon's own users (`o2cb lock`, `o2cb lockdump`).
//!
//! o2dlm allows one membership of a domain per node, while the kernel counts registrations
//! (`dlm_register_domain` of a joined domain takes a reference). The registry does the
//! counting: every user registers and unregisters, the first registration joins, the last
//! one leaves, so a domain used both through /dlm and by `o2cb lock` is one membership.

use std::collections::BTreeMap;
use std::time::Duration;

use o2dlm::{Dlm, DlmError, Domain};
use parking_lot::Mutex;

/// How often a leave still under way is logged. While the node runs on, a leave is never
/// abandoned, as the kernel's `dlm_unregister_domain` never gives up: a domain dropped
/// half-left would stay joined in o2dlm, refusing every later join of it on this node. A node
/// stopping ([`DomainRegistry::leave_all`]) gives up after one such period, as a lock file
/// kept open holds its domain for good and the node is going away anyway.
const LEAVE_NOTICE: Duration = Duration::from_secs(5);

struct Entry {
    domain: Domain,
    refs: usize,
}

/// A node's DLM and its ref-counted domain memberships.
pub struct DomainRegistry {
    dlm: Dlm,
    table: Mutex<BTreeMap<String, Entry>>,
    /// Serializes joins and leaves, so that a domain is never joined twice, nor joined
    /// while its last user's leave is still under way.
    joining: tokio::sync::Mutex<()>,
}

impl DomainRegistry {
    /// An empty registry over `dlm`.
    pub fn new(dlm: Dlm) -> DomainRegistry {
        DomainRegistry {
            dlm,
            table: Mutex::new(BTreeMap::new()),
            joining: tokio::sync::Mutex::new(()),
        }
    }

    /// The node's DLM.
    pub fn dlm(&self) -> &Dlm {
        &self.dlm
    }

    /// Registers `name`: joins it unless joined. Every successful call needs one
    /// [`DomainRegistry::unregister`].
    pub async fn register(&self, name: &str) -> Result<Domain, DlmError> {
        let _serial = self.joining.lock().await;
        if let Some(e) = self.table.lock().get_mut(name) {
            e.refs += 1;
            return Ok(e.domain.clone());
        }
        let domain = self.dlm.join(name).await?;
        self.table.lock().insert(
            name.to_string(),
            Entry {
                domain: domain.clone(),
                refs: 1,
            },
        );
        Ok(domain)
    }

    /// Drops one registration of `name`; the last one leaves the domain (migrating what it
    /// masters and others use) and waits for the leave to finish.
    pub async fn unregister(&self, name: &str) {
        let _serial = self.joining.lock().await;
        let last = {
            let mut t = self.table.lock();
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
            leave(self.dlm.node(), d, false).await;
        }
    }

    /// A joined domain (for dumps), whoever joined it.
    pub fn get(&self, name: &str) -> Option<Domain> {
        self.table.lock().get(name).map(|e| e.domain.clone())
    }

    /// The joined domains, by name.
    pub fn names(&self) -> Vec<String> {
        self.table.lock().keys().cloned().collect()
    }

    /// How many registrations `name` has (0: not joined).
    pub fn refs(&self, name: &str) -> usize {
        self.table.lock().get(name).map_or(0, |e| e.refs)
    }

    /// Leaves every domain whatever its registrations: a clean stop of the node, after which
    /// nothing registers again (the users' later unregisters find nothing to do).
    pub async fn leave_all(&self) {
        let _serial = self.joining.lock().await;
        let all: Vec<Domain> = std::mem::take(&mut *self.table.lock())
            .into_values()
            .map(|e| e.domain)
            .collect();
        for d in all {
            leave(self.dlm.node(), d, true).await;
        }
    }
}

async fn leave(node: u8, d: Domain, stopping: bool) {
    let name = d.name();
    let leaving = d.leave();
    tokio::pin!(leaving);
    let mut waited = Duration::ZERO;
    loop {
        match tokio::time::timeout(LEAVE_NOTICE, &mut leaving).await {
            Ok(Ok(())) => return tracing::info!(node, domain = %name, "left domain {name}"),
            Ok(Err(e)) => return tracing::warn!(node, domain = %name, "leaving domain {name}: {e}"),
            Err(_) if stopping => {
                return tracing::warn!(
                    node,
                    domain = %name,
                    "domain {name} not left within {} s; stopping without it (a lock held here?)",
                    LEAVE_NOTICE.as_secs()
                )
            }
            Err(_) => {
                waited += LEAVE_NOTICE;
                tracing::warn!(
                    node,
                    domain = %name,
                    "still leaving domain {name} after {} s (handing resources mastered here to other nodes)",
                    waited.as_secs()
                )
            }
        }
    }
}
