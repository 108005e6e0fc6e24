//! Two dlmfs mounts backed by two nodes of an in-process cluster (whole nodes over loopback
//! TCP on 127.0.0.1 and 127.0.0.2): a lock held through one mount blocks the other, a
//! blocking open on node 2 is granted when node 1 closes (BAST, downconvert, grant over the
//! network), and the value block written on node 1 is read on node 2. Needs root and
//! /dev/fuse; unmounts and stops the nodes even on failure.

use std::time::Duration;

#[path = "common/o2dlm_cluster.rs"]
mod cluster;
#[path = "common/syscalls.rs"]
mod syscalls;

use syscalls::{eventually, open, pread, pwrite};

#[test]
fn locks_and_value_blocks_cross_the_cluster_through_two_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster::start(dir.path(), 24000);
    let (d1, d2) = (dir.path().join("n1/dom"), dir.path().join("n2/dom"));
    std::fs::create_dir(&d1).expect("mkdir joins the domain on node 1");
    std::fs::create_dir(&d2).expect("mkdir joins the domain on node 2");

    let w1 = open(&d1.join("L"), libc::O_CREAT | libc::O_RDWR).expect("EX on node 1");
    let msg = b"over o2net";
    assert_eq!(pwrite(&w1, msg, 0), Ok(msg.len()));
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
    let buf = pread(&r2, 64, 0);
    assert_eq!(buf.len(), 64);
    assert_eq!(&buf[..msg.len()], msg, "node 2 reads node 1's value block");
    drop(r2);
    drop(nodes);
}

#[test]
fn the_mount_and_direct_users_share_one_membership_of_a_domain() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster::start(dir.path(), 24600);
    let rt = nodes.rt.as_ref().unwrap().handle().clone();
    let reg1 = nodes.registries[0].clone();
    std::fs::create_dir(dir.path().join("n1/shared")).expect("mkdir on node 1");
    std::fs::create_dir(dir.path().join("n2/shared")).expect("mkdir on node 2");
    assert_eq!(reg1.refs("shared"), 1);
    // A second user of the joined domain on node 1 (the node would refuse a second join with
    // EEXIST) gets the same membership, and its locks are the mount's peers.
    let dom = rt
        .block_on(reg1.register(b"shared", true))
        .expect("registers the domain the mount joined");
    assert_eq!(reg1.refs("shared"), 2);
    assert_eq!(reg1.names(), vec![b"shared".to_vec()]);
    let held = rt
        .block_on(dom.lock(
            b"direct",
            o2dlm::wire::LockMode::Ex,
            o2dlm::wire::LkmFlags::empty(),
        ))
        .expect("EX through the registry's domain");
    assert_eq!(
        open(
            &dir.path().join("n2/shared/direct"),
            libc::O_CREAT | libc::O_RDONLY | libc::O_NONBLOCK
        )
        .err(),
        Some(libc::ETXTBSY),
        "a direct EX on node 1 blocks node 2's trylock open"
    );
    // The dump of the domain shows the mount's locks and the direct one alike.
    let f = open(
        &dir.path().join("n1/shared/viafile"),
        libc::O_CREAT | libc::O_RDWR,
    )
    .expect("EX through node 1's mount");
    let state = reg1.get("shared").expect("joined").locking_state();
    assert!(state.lines().any(|l| l == "NAME:direct"), "{state}");
    assert!(state.lines().any(|l| l == "NAME:viafile"), "{state}");
    drop(f);
    rt.block_on(held.unlock()).expect("unlock");
    // The direct user leaves: the mount's registration keeps the domain.
    rt.block_on(reg1.unregister(b"shared"));
    assert_eq!(reg1.refs("shared"), 1);
    assert!(reg1.get("shared").is_some());
    // Unmounting gives the mount's registration back: the domain is left.
    let mut nodes = nodes;
    nodes.mounts.clear();
    eventually("node 1 still in the domain after its unmount", || {
        reg1.refs("shared") == 0
    });
    assert!(reg1.names().is_empty());
}
