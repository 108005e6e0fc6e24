//! A two-node cluster in process (o2node's test cluster: whole nodes over loopback TCP on
//! 127.0.0.1 and 127.0.0.2, heartbeating on a shared region in memory) with a dlmfs mount
//! per node, for the dlmfs tests and the benchmark. Dropping it unmounts and stops the nodes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dlmfs_fuse::{mount, DomainRegistry, MountHandle, MountOptions, O2dlmNode};

#[path = "../../../o2node/tests/cluster/mod.rs"]
mod loopback;

pub struct Nodes {
    pub mounts: Vec<MountHandle>,
    pub cluster: loopback::Cluster,
    /// Each node's domain memberships, shared with its mount.
    #[allow(dead_code)] // used by the tests, not by the benchmark
    pub registries: Vec<Arc<DomainRegistry>>,
    pub rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.mounts.clear();
        self.cluster.shutdown();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Starts nodes 1 and 2 (o2net port from `port_base` and the pid), waits for them to be
/// online, and mounts their dlmfs at `dir`/n1 and `dir`/n2.
pub fn start(dir: &Path, port_base: u16) -> Nodes {
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
    let rt = loopback::runtime();
    let port = port_base + (std::process::id() % 500) as u16 * 2;
    // The kernel's purge interval.
    let cluster = rt.block_on(loopback::Cluster::start_on(port, 2, 8000));
    let mut nodes = Nodes {
        mounts: Vec::new(),
        registries: Vec::new(),
        rt: None,
        cluster,
    };
    for (i, n) in nodes.cluster.nodes.clone().into_iter().enumerate() {
        let p = dir.join(format!("n{}", i + 1));
        std::fs::create_dir(&p).unwrap();
        let registry = Arc::new(DomainRegistry::new(n));
        nodes.registries.push(registry.clone());
        let node = O2dlmNode::with_registry(registry, rt.handle().clone());
        nodes
            .mounts
            .push(mount(&p, Arc::new(node), MountOptions::default()).expect("mount"));
    }
    nodes.rt = Some(rt);
    nodes
}
