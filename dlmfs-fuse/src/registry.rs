//! The node's one table of joined domains, shared by dlmfs ([`crate::O2dlmNode`]) and the
//! node daemon's own users (`o2cb lock`, `o2cb lockdump`).
//!
//! A node has one membership of a domain, while the kernel counts registrations
//! (`dlm_register_domain` of a joined domain takes a reference). The registry does the
//! counting: every user registers and unregisters, the first registration joins, the last
//! one leaves, so a domain used both through /dlm and by `o2cb lock` is one membership.
//! Names are bytes, as the kernel takes them.

use std::collections::BTreeMap;
use std::time::Duration;

use o2dlm::DlmError;
use o2node::{Domain, Node};
use parking_lot::Mutex;

/// How often a leave still under way is logged. While the node runs on, a leave is never
/// abandoned, as the kernel's `dlm_unregister_domain` never gives up: a domain dropped
/// half-left would stay joined, refusing every later join of it on this node. A stopping
/// node leaves its domains itself, within its stop bound ([`DomainRegistry::forget_all`]).
const LEAVE_NOTICE: Duration = Duration::from_secs(5);

struct Entry {
    domain: Domain,
    refs: usize,
}

/// A node's DLM and its ref-counted domain memberships.
pub struct DomainRegistry {
    node: Node,
    table: Mutex<BTreeMap<Vec<u8>, Entry>>,
    /// Serializes joins and leaves, so that a domain is never joined twice, nor joined
    /// while its last user's leave is still under way.
    joining: tokio::sync::Mutex<()>,
}

impl DomainRegistry {
    /// An empty registry over `node`.
    pub fn new(node: Node) -> DomainRegistry {
        DomainRegistry {
            node,
            table: Mutex::new(BTreeMap::new()),
            joining: tokio::sync::Mutex::new(()),
        }
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Registers `name`: joins it unless joined (once the node is online, or refused while
    /// it starts unless `wait`). Every successful call needs one
    /// [`DomainRegistry::unregister`].
    pub async fn register(&self, name: &[u8], wait: bool) -> Result<Domain, DlmError> {
        let _serial = self.joining.lock().await;
        if let Some(e) = self.table.lock().get_mut(name) {
            e.refs += 1;
            return Ok(e.domain.clone());
        }
        let domain = self.node.join(name, wait).await?;
        self.table.lock().insert(
            name.to_vec(),
            Entry {
                domain: domain.clone(),
                refs: 1,
            },
        );
        Ok(domain)
    }

    /// Drops one registration of `name`; the last one leaves the domain (migrating what it
    /// masters and others use) and waits for the leave to finish.
    pub async fn unregister(&self, name: &[u8]) {
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
            leave(self.node.node(), d).await;
        }
    }

    /// A joined domain (for dumps), whoever joined it.
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<Domain> {
        self.table
            .lock()
            .get(name.as_ref())
            .map(|e| e.domain.clone())
    }

    /// The joined domains, by name.
    pub fn names(&self) -> Vec<Vec<u8>> {
        self.table.lock().keys().cloned().collect()
    }

    /// How many registrations `name` has (0: not joined).
    pub fn refs(&self, name: impl AsRef<[u8]>) -> usize {
        self.table.lock().get(name.as_ref()).map_or(0, |e| e.refs)
    }

    /// Forgets every registration: the node is stopping and leaves its domains itself
    /// (within its stop bound); nothing registers again, and the users' later unregisters
    /// find nothing to do.
    pub fn forget_all(&self) {
        self.table.lock().clear();
    }
}

async fn leave(node: u8, d: Domain) {
    let name = d.name();
    let leaving = d.leave();
    tokio::pin!(leaving);
    let mut waited = Duration::ZERO;
    loop {
        match tokio::time::timeout(LEAVE_NOTICE, &mut leaving).await {
            Ok(Ok(())) => return tracing::info!(node, domain = %name, "left domain {name}"),
            Ok(Err(e)) => return tracing::warn!(node, domain = %name, "leaving domain {name}: {e}"),
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
