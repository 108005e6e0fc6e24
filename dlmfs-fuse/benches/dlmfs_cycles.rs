//! open+close lock cycles per second through a FUSE dlmfs mount, against the same lock
//! cycle through the Rust DLM API in the same run (`cargo bench -p dlmfs-fuse`, as root).
//!
//! - `mount, cached`: open(O_RDWR)+close of one lock file; after the first open the EX lock
//!   stays cached, so each cycle is the FUSE round trips (open, flush, release) only.
//! - `mount, handoff`: two mounts (nodes 1 and 2) alternately open+close one lock file with
//!   blocking opens, so every cycle is a BAST, a downconvert and a grant.
//! - `API`: `DlmDomain::lock` EX + `unlock` on the in-process DLM (o2dlm's lock-resource
//!   engine): the DLM work without FUSE.
//!
//! The same over a two-node cluster on loopback TCP (`O2dlmNode`, what the daemon
//! mounts), against o2dlm's async API: `lock(EX)` + `unlock` on node 1, and EX handed
//! between the two nodes.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/o2dlm_cluster.rs"]
mod cluster;

use dlmfs_fuse::userdlm::Request;
use dlmfs_fuse::{mount, Dlm, LocalDlm, LockEvents, MountOptions};
use o2dlm::wire::LockMode;

/// The API cycle's lock needs no callbacks: nothing else uses its resource.
struct NoEvents;

impl LockEvents for NoEvents {
    fn ast(&self, _: Option<o2dlm::wire::Lvb>) {}
    fn bast(&self, _: LockMode) {}
}

const RUN: Duration = Duration::from_secs(2);

fn rate(mut cycle: impl FnMut()) -> f64 {
    for _ in 0..100 {
        cycle();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..100 {
            cycle();
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn open_close(p: &CString) {
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o664) };
    assert!(fd >= 0, "open failed: {}", std::io::Error::last_os_error());
    unsafe { libc::close(fd) };
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The mount cycles on two nodes' mounts `p1` and `p2` (in a domain `bench` of each): cached
/// EX on `p1`, then EX handed between them.
fn mount_rates(p1: &Path, p2: &Path) -> (f64, f64) {
    std::fs::create_dir(p1.join("bench")).unwrap();
    std::fs::create_dir(p2.join("bench")).unwrap();
    let cached = c(&p1.join("bench/cached"));
    let mount_cached = rate(|| open_close(&cached));
    let (h1, h2) = (c(&p1.join("bench/pingpong")), c(&p2.join("bench/pingpong")));
    let mount_handoff = rate(|| {
        open_close(&h1);
        open_close(&h2);
    }) * 2.0;
    (mount_cached, mount_handoff)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let dlm = LocalDlm::new();
    let (p1, p2) = (dir.path().join("n1"), dir.path().join("n2"));
    std::fs::create_dir(&p1).unwrap();
    std::fs::create_dir(&p2).unwrap();
    let m1 = mount(&p1, Arc::new(dlm.node(1)), MountOptions::default()).expect("mount (root?)");
    let m2 = mount(&p2, Arc::new(dlm.node(2)), MountOptions::default()).expect("mount (root?)");
    let (mount_cached, mount_handoff) = mount_rates(&p1, &p2);

    let node = dlm.node(3);
    let domain = node.join(b"bench").unwrap();
    let ex = Request {
        mode: LockMode::Ex,
        convert: false,
        noqueue: false,
    };
    let lvb = [0u8; 64];
    let events: Arc<dyn LockEvents> = Arc::new(NoEvents);
    let api = rate(|| {
        domain.lock(1, b"api", ex, &lvb, events.clone()).unwrap();
        domain.unlock(1, &lvb).unwrap();
    });
    domain.leave();
    drop(m1);
    drop(m2);

    println!(
        "dlmfs open+close lock cycles per second ({} s each)",
        RUN.as_secs()
    );
    println!("in-process DLM:");
    report("API lock EX + unlock", api, None);
    report("mount, cached EX (open+close)", mount_cached, Some(api));
    report(
        "mount, EX handed between two nodes",
        mount_handoff,
        Some(api),
    );
    o2dlm_cluster();
}

fn report(what: &str, rate: f64, baseline: Option<f64>) {
    match baseline {
        Some(b) => println!("  {what:<40} {rate:>10.0}/s  ratio to API {:.3}", rate / b),
        None => println!("  {what:<40} {rate:>10.0}/s  (baseline)"),
    }
}

/// The same cycles over two o2dlm nodes on loopback TCP.
fn o2dlm_cluster() {
    use o2dlm::wire::LkmFlags;
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster::start(dir.path(), 25000);
    let (p1, p2) = (dir.path().join("n1"), dir.path().join("n2"));
    let (mount_cached, mount_handoff) = mount_rates(&p1, &p2);

    let rt = nodes.rt.as_ref().expect("runtime");
    let domains = rt.block_on(nodes.cluster.join_all("apibench"));
    let (d1, d2) = (&domains[0], &domains[1]);
    let api = rate(|| {
        rt.block_on(async {
            let l = d1
                .lock("api", LockMode::Ex, LkmFlags::VALBLK)
                .await
                .unwrap();
            l.unlock_with(LkmFlags::VALBLK).await.unwrap();
        })
    });
    let api_handoff = rate(|| {
        rt.block_on(async {
            for d in [d1, d2] {
                let l = d
                    .lock("pingpong", LockMode::Ex, LkmFlags::VALBLK)
                    .await
                    .unwrap();
                l.unlock_with(LkmFlags::VALBLK).await.unwrap();
            }
        })
    }) * 2.0;
    rt.block_on(async {
        let _ = d1.leave().await;
        let _ = d2.leave().await;
    });
    drop(nodes);

    println!("two o2dlm nodes on loopback TCP:");
    report("API lock EX + unlock on node 1", api, None);
    report("mount, cached EX (open+close)", mount_cached, Some(api));
    println!("  (handoff baseline: the API's EX handed between the nodes)");
    report("API EX handed between two nodes", api_handoff, None);
    report(
        "mount, EX handed between two nodes",
        mount_handoff,
        Some(api_handoff),
    );
}
