//! Two dlmfs mounts backed by two nodes of an in-process o2dlm cluster (o2net over loopback
//! TCP on 127.0.0.1 and 127.0.0.2): a lock held through one mount blocks the other, a
//! blocking open on node 2 is granted when node 1 closes (BAST, downconvert, grant over the
//! network), and the value block written on node 1 is read on node 2. Needs root and
//! /dev/fuse; unmounts and stops the nodes even on failure.

use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dlmfs_fuse::{mount, MountHandle, MountOptions, O2dlmNode};
use o2net::{Net, NetConfig, NodeInfo};

struct Nodes {
    mounts: Vec<MountHandle>,
    nets: Vec<Net>,
    rt: Option<tokio::runtime::Runtime>,
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

fn start(dir: &Path) -> Nodes {
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = 24000 + (std::process::id() % 500) as u16 * 2;
    let infos: Vec<NodeInfo> = (1..=2u8)
        .map(|i| NodeInfo {
            num: i,
            name: format!("n{i}"),
            addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, i), port),
        })
        .collect();
    let mut nodes = Nodes {
        mounts: Vec::new(),
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
    for (i, d) in dlms.into_iter().enumerate() {
        let p = dir.join(format!("n{}", i + 1));
        std::fs::create_dir(&p).unwrap();
        let node = O2dlmNode::new(d, rt.handle().clone());
        nodes
            .mounts
            .push(mount(&p, Arc::new(node), MountOptions::default()).expect("mount"));
    }
    nodes.rt = Some(rt);
    nodes
}

struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

fn open(p: &Path, flags: i32) -> Result<Fd, i32> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o664) };
    if fd < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(Fd(fd))
    }
}

#[test]
fn locks_and_value_blocks_cross_the_cluster_through_two_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start(dir.path());
    let (d1, d2) = (dir.path().join("n1/dom"), dir.path().join("n2/dom"));
    std::fs::create_dir(&d1).expect("mkdir joins the domain on node 1");
    std::fs::create_dir(&d2).expect("mkdir joins the domain on node 2");

    let w1 = open(&d1.join("L"), libc::O_CREAT | libc::O_RDWR).expect("EX on node 1");
    let msg = b"over o2net";
    assert_eq!(
        unsafe { libc::pwrite(w1.0, msg.as_ptr().cast(), msg.len(), 0) },
        msg.len() as isize
    );
    assert_eq!(
        open(
            &d2.join("L"),
            libc::O_CREAT | libc::O_RDONLY | libc::O_NONBLOCK
        )
        .err(),
        Some(libc::ETXTBSY),
        "node 1's EX blocks node 2's trylock"
    );
    let p2 = d2.join("L");
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let r = open(&p2, libc::O_RDONLY);
        let _ = tx.send(());
        r
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "node 2's open waits while node 1 holds EX"
    );
    drop(w1);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("granted once node 1 closes");
    let r2 = waiter.join().unwrap().expect("PR on node 2");
    let mut buf = [0u8; 64];
    assert_eq!(
        unsafe { libc::pread(r2.0, buf.as_mut_ptr().cast(), 64, 0) },
        64
    );
    assert_eq!(&buf[..msg.len()], msg, "node 2 reads node 1's value block");
    drop(r2);
    drop(nodes);
}
