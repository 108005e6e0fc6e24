//! The DLM of the node: o2dlm started on the node's o2net before any heartbeat event, fed
//! every node up/down after o2net. Its domains are joined through one
//! [`dlmfs_fuse::DomainRegistry`] shared by the dlmfs mount, `o2cb lock` sessions and
//! `o2cb lockdump`, which counts registrations as the kernel does.

use o2dlm::wire::{NodeInfo, REGION_NAME_LEN};
use o2dlm::DlmConfig;

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
