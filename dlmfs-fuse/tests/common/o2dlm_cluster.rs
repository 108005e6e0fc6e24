//! A two-node o2dlm cluster in process (o2net over loopback TCP on 127.0.0.1 and
//! 127.0.0.2, heartbeat events fed directly) with a dlmfs mount per node, for the o2dlm
//! tests and the benchmark. Dropping it unmounts and stops the nodes.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dlmfs_fuse::{mount, DomainRegistry, MountHandle, MountOptions, O2dlmNode};
use o2net::{Net, NetConfig, NodeInfo};

pub struct Nodes {
    pub mounts: Vec<MountHandle>,
    pub dlms: Vec<o2dlm::Dlm>,
    /// Each node's domain memberships, shared with its mount.
    #[allow(dead_code)] // used by the tests, not by the benchmark
    pub registries: Vec<Arc<DomainRegistry>>,
    pub nets: Vec<Net>,
    pub rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.mounts.clear();
        for n in &self.nets {
            n.shutdown();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Starts nodes 1 and 2 (o2net port from `port_base` and the pid) and mounts their dlmfs
/// at `dir`/n1 and `dir`/n2.
pub fn start(dir: &Path, port_base: u16) -> Nodes {
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = port_base + (std::process::id() % 500) as u16 * 2;
    let infos: Vec<NodeInfo> = (1..=2u8)
        .map(|i| NodeInfo {
            num: i,
            name: format!("n{i}"),
            addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, i), port),
        })
        .collect();
    let mut nodes = Nodes {
        mounts: Vec::new(),
        dlms: Vec::new(),
        registries: Vec::new(),
        nets: Vec::new(),
        rt: None,
    };
    let mut dlms = Vec::new();
    {
        let _enter = rt.enter();
        for i in 1..=2u8 {
            let mut c = NetConfig::new(i, infos.clone()).with_heartbeat(100, 3);
            c.reconnect_delay_ms = 200;
            let net = Net::start(c, Arc::new(|_: &str| {})).expect("o2net starts");
            let mut dc = o2dlm::DlmConfig {
                mastery_timeout_ms: 2000,
                ..o2dlm::DlmConfig::default()
            };
            dc.nodes = infos
                .iter()
                .map(|x| o2dlm::wire::NodeInfo {
                    nodenum: x.num,
                    ipv4_port: x.addr.port(),
                    ipv4_address: *x.addr.ip(),
                })
                .collect();
            dlms.push(o2dlm::Dlm::start(net.clone(), dc).expect("o2dlm starts"));
            nodes.nets.push(net);
        }
    }
    for net in &nodes.nets {
        for i in 1..=2 {
            net.heartbeat_up(i);
        }
    }
    for d in &dlms {
        for i in 1..=2 {
            d.node_up(i);
        }
    }
    nodes.dlms = dlms.clone();
    for (i, d) in dlms.into_iter().enumerate() {
        let p = dir.join(format!("n{}", i + 1));
        std::fs::create_dir(&p).unwrap();
        let registry = Arc::new(DomainRegistry::new(d));
        nodes.registries.push(registry.clone());
        let node = O2dlmNode::with_registry(registry, rt.handle().clone());
        nodes
            .mounts
            .push(mount(&p, Arc::new(node), MountOptions::default()).expect("mount"));
    }
    nodes.rt = Some(rt);
    nodes
}
