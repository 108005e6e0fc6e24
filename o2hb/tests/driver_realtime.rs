//! The real driver, several instances in one process on region files (period 100 ms, dead
//! threshold 5): events, clean stop, and write stalls injected through a slow device wrapper.

use o2hb::disk::{BlockIo, DirectFile};
use o2hb::driver::{
    CallbackKind, DriverConfig, FenceAction, HbEvent, Heartbeat, DLM_HB_NODE_DOWN_PRI,
    DLM_HB_NODE_UP_PRI, O2NET_HB_PRI,
};
use o2hb::source::RegionSource;
use o2hb::{Mode, Timing};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

const PERIOD: u64 = 100;
const THRESHOLD: u32 = 5;

fn region(dir: &Path, name: &str) -> RegionSource {
    let path = dir.join(name);
    o2hb::regionfile::format(&path, 512, 8).unwrap();
    o2hb::source::open(&path).unwrap()
}

fn config(node: u8, mode: Mode) -> DriverConfig {
    config_with(node, mode, THRESHOLD)
}

fn config_with(node: u8, mode: Mode, threshold: u32) -> DriverConfig {
    let mut cfg = DriverConfig::new(node);
    cfg.mode = mode;
    cfg.timing = Timing::new(PERIOD, threshold).unwrap();
    cfg.fence = FenceAction::Callback(Arc::new(|| panic!("unexpected fence")));
    cfg
}

/// A device whose writes hang while `stall` is set (a dead SAN path, say).
struct Stallable {
    inner: DirectFile,
    stall: Arc<AtomicBool>,
}

impl BlockIo for Stallable {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        while self.stall.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.inner.write_at(offset, buf)
    }
}

fn start_stallable(hb: &Heartbeat, src: &RegionSource) -> Arc<AtomicBool> {
    let stall = Arc::new(AtomicBool::new(false));
    let io = Stallable {
        inner: DirectFile::open(&src.path).unwrap(),
        stall: stall.clone(),
    };
    hb.start_region_with(&src.name, &src.device(), src.geometry, Box::new(io))
        .unwrap();
    stall
}

fn wait_event(
    rx: &mut UnboundedReceiver<HbEvent>,
    want: impl Fn(&HbEvent) -> bool,
    timeout: Duration,
) -> HbEvent {
    let deadline = Instant::now() + timeout;
    loop {
        match rx.try_recv() {
            Ok(ev) if want(&ev) => return ev,
            Ok(_) => {}
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(
                    Instant::now() < deadline,
                    "event not seen within {timeout:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("event channel closed: {e}"),
        }
    }
}

fn is_up(node: u8) -> impl Fn(&HbEvent) -> bool {
    move |e| matches!(e, HbEvent::NodeUp { node: n, .. } if *n == node)
}

fn is_down(node: u8) -> impl Fn(&HbEvent) -> bool {
    move |e| matches!(e, HbEvent::NodeDown { node: n, .. } if *n == node)
}

#[test]
fn three_instances_see_each_other_and_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let src = region(dir.path(), "r");
    let hbs: Vec<Heartbeat> = (0..3)
        .map(|n| Heartbeat::start(config_with(n, Mode::Local, 20)).unwrap())
        .collect();
    let mut rxs: Vec<_> = hbs.iter().map(Heartbeat::subscribe).collect();
    for hb in &hbs {
        hb.start_region(&src).unwrap();
    }
    let t = Duration::from_secs(10);
    // Each instance sees all three up, in whatever order they came; everyone agrees on each
    // node's generation.
    let mut seen: Vec<Vec<(u8, u64)>> = Vec::new();
    for rx in rxs.iter_mut() {
        let mut ups = Vec::new();
        let deadline = Instant::now() + t;
        while ups.len() < 3 {
            assert!(Instant::now() < deadline, "only {ups:?} came up");
            match rx.try_recv() {
                Ok(HbEvent::NodeUp {
                    node, generation, ..
                }) => ups.push((node, generation)),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        ups.sort();
        seen.push(ups);
    }
    assert_eq!(
        seen[0].iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    assert_eq!(hbs[0].live_nodes().to_string(), "0 1 2");

    let mut hbs = hbs;
    let stopped = Instant::now();
    hbs.pop().unwrap().shutdown();
    for rx in rxs.iter_mut().take(2) {
        wait_event(rx, is_down(2), t);
    }
    // Generation 0 is seen at the next read, well before the 2 s dead time.
    assert!(
        stopped.elapsed() < Duration::from_millis(1200),
        "{:?}",
        stopped.elapsed()
    );
}

#[test]
fn a_stalled_device_fences_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let src = region(dir.path(), "r");
    let a = Heartbeat::start(config(0, Mode::Local)).unwrap();
    let mut a_rx = a.subscribe();
    a.start_region(&src).unwrap();
    let (fenced_tx, fenced) = mpsc::channel();
    let mut cfg = config(1, Mode::Local);
    cfg.fence = FenceAction::Callback(Arc::new(move || {
        let _ = fenced_tx.send(Instant::now());
    }));
    let b = Heartbeat::start(cfg).unwrap();
    let stall = start_stallable(&b, &src);
    wait_event(&mut a_rx, is_up(1), Duration::from_secs(10));
    // Let b arm its write timeout (it arms after steady state), then hang its writes.
    std::thread::sleep(Duration::from_millis(300));
    let stalled = Instant::now();
    stall.store(true, Ordering::SeqCst);
    let at = fenced
        .recv_timeout(Duration::from_secs(5))
        .expect("node 1 fences");
    // The write timeout is (5 − 1) × 100 ms after the last good write, which was at most one
    // period before the stall.
    let after = at - stalled;
    assert!(
        after >= Duration::from_millis(250) && after < Duration::from_millis(3000),
        "fenced {after:?} after the stall"
    );
    wait_event(&mut a_rx, is_down(1), Duration::from_secs(5));
    stall.store(false, Ordering::SeqCst);
}

#[test]
fn global_mode_tolerates_one_stalled_region_of_three_but_not_two() {
    let dir = tempfile::tempdir().unwrap();
    let srcs: Vec<RegionSource> = (0..3)
        .map(|i| region(dir.path(), &format!("g{i}")))
        .collect();
    let a = Heartbeat::start(config(0, Mode::Global)).unwrap();
    for s in &srcs {
        a.start_region(s).unwrap();
    }
    let (fenced_tx, fenced) = mpsc::channel();
    let mut cfg = config(1, Mode::Global);
    cfg.fence = FenceAction::Callback(Arc::new(move || {
        let _ = fenced_tx.send(Instant::now());
    }));
    let b = Heartbeat::start(cfg).unwrap();
    let mut b_rx = b.subscribe();
    let stalls: Vec<_> = srcs.iter().map(|s| start_stallable(&b, s)).collect();
    wait_event(&mut b_rx, is_up(0), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));

    stalls[0].store(true, Ordering::SeqCst);
    // Four write timeouts' worth: one failed region of three is tolerated.
    assert!(
        fenced.recv_timeout(Duration::from_millis(1600)).is_err(),
        "one stalled region of three must not fence"
    );
    assert!(
        a.live_nodes().contains(1),
        "node 1 is still live in the other regions"
    );

    let second = Instant::now();
    stalls[1].store(true, Ordering::SeqCst);
    let at = fenced
        .recv_timeout(Duration::from_secs(5))
        .expect("two failed regions of three fence");
    assert!(
        at - second < Duration::from_millis(3000),
        "{:?}",
        at - second
    );
    for s in &stalls {
        s.store(false, Ordering::SeqCst);
    }
}

#[test]
fn callbacks_run_in_kernel_priority_order_and_status_follows() {
    let dir = tempfile::tempdir().unwrap();
    let src = region(dir.path(), "r");
    let a = Heartbeat::start(config(0, Mode::Local)).unwrap();
    let calls: Arc<Mutex<Vec<(&'static str, HbEvent)>>> = Arc::default();
    // Registered in the "wrong" order on purpose: priority decides, as in the kernel.
    for (who, kind, pri) in [
        ("dlm", CallbackKind::NodeDown, DLM_HB_NODE_DOWN_PRI),
        ("dlm", CallbackKind::NodeUp, DLM_HB_NODE_UP_PRI),
        ("o2net", CallbackKind::NodeUp, O2NET_HB_PRI),
        ("o2net", CallbackKind::NodeDown, O2NET_HB_PRI),
    ] {
        let calls = calls.clone();
        a.register_callback(
            kind,
            pri,
            Arc::new(move |ev: &HbEvent| calls.lock().unwrap().push((who, ev.clone()))),
        );
    }
    let mut rx = a.subscribe();
    a.start_region(&src).unwrap();
    let b = Heartbeat::start(config(1, Mode::Local)).unwrap();
    b.start_region(&src).unwrap();
    wait_event(&mut rx, is_up(1), Duration::from_secs(10));
    let st = a.status();
    assert_eq!(st.live.to_string(), "0 1");
    assert_eq!(st.regions.len(), 1);
    assert!(
        st.regions[0].steady && !st.regions[0].quorum && !st.regions[0].failed,
        "{st:?}"
    );
    assert_eq!(
        (st.regions[0].name.as_str(), st.regions[0].live.to_string()),
        (src.name.as_str(), "0 1".to_string())
    );

    b.shutdown();
    wait_event(&mut rx, is_down(1), Duration::from_secs(10));
    let got: Vec<(&str, bool, u8)> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|(w, e)| match e {
            HbEvent::NodeUp { node, .. } => (*w, true, *node),
            HbEvent::NodeDown { node, .. } => (*w, false, *node),
            HbEvent::Fenced => (*w, false, 255),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("o2net", true, 0),
            ("dlm", true, 0),
            ("o2net", true, 1),
            ("dlm", true, 1),
            ("o2net", false, 1),
            ("dlm", false, 1)
        ]
    );
    assert_eq!(a.status().live.to_string(), "0");
}

#[test]
fn the_fence_command_runs_instead_of_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let src = region(dir.path(), "r");
    let a = Heartbeat::start(config(0, Mode::Local)).unwrap();
    a.start_region(&src).unwrap();
    let marker = dir.path().join("fenced");
    let mut cfg = config(1, Mode::Local);
    cfg.fence = FenceAction::Command(format!("echo node 1 > {}", marker.display()));
    let b = Heartbeat::start(cfg).unwrap();
    let mut b_rx = b.subscribe();
    let stall = start_stallable(&b, &src);
    std::thread::sleep(Duration::from_millis(300));
    stall.store(true, Ordering::SeqCst);
    wait_event(&mut b_rx, |e| *e == HbEvent::Fenced, Duration::from_secs(5));
    // The command ran before the event went out; the node is down for good.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "node 1\n");
    assert!(b.status().fenced);
    assert!(b.status().regions.is_empty(), "fencing stops every region");
    stall.store(false, Ordering::SeqCst);
}

#[test]
fn timeout_negotiation_over_a_message_hook_keeps_all_hung_nodes_alive() {
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let src = region(dir.path(), "r");
    // A stand-in for o2net: deliver each negotiation message to the addressed node by key.
    let peers: Arc<Mutex<HashMap<u8, Arc<Heartbeat>>>> = Arc::default();
    let (fenced_tx, fenced) = mpsc::channel();
    let mut hbs = Vec::new();
    for node in 0..2u8 {
        let mut cfg = config(node, Mode::Local);
        let net = peers.clone();
        let key = o2hb::core::nego_key(0, &src.name);
        let (wrong_key_tx, _) = (fenced_tx.clone(), ());
        cfg.nego_sender = Some(Arc::new(move |m: o2hb::driver::NegoSend| {
            // Local mode keys use region number 0: crc32_le(32, region name).
            if m.key != key {
                let _ = wrong_key_tx.send(255);
            }
            if let Some(peer) = net.lock().unwrap().get(&m.to) {
                peer.deliver_nego_by_key(m.key, m.kind, m.node_num);
            }
        }));
        let tx = fenced_tx.clone();
        cfg.fence = FenceAction::Callback(Arc::new(move || {
            let _ = tx.send(node);
        }));
        let hb = Arc::new(Heartbeat::start(cfg).unwrap());
        peers.lock().unwrap().insert(node, hb.clone());
        hbs.push(hb);
    }
    let stalls: Vec<_> = hbs.iter().map(|hb| start_stallable(hb, &src)).collect();
    std::thread::sleep(Duration::from_millis(500));
    for s in &stalls {
        s.store(true, Ordering::SeqCst);
    }
    // Without negotiation both would fence 400 ms after their last write; the master (node 0)
    // collects node 1's request, approves, and both re-arm, again and again.
    assert!(
        fenced.recv_timeout(Duration::from_millis(2500)).is_err(),
        "a node fenced although every node's writes hung"
    );
    for s in &stalls {
        s.store(false, Ordering::SeqCst);
    }
    peers.lock().unwrap().clear();
}
