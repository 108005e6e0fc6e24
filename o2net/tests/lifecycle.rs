//! Resource use over many connection lifetimes, in a process of its own so
//! that the file descriptor count is ours alone: every closed connection
//! must give its socket back (reader, flusher and connect tasks all end).

use std::sync::Arc;
use std::time::{Duration, Instant};

use o2net::{Net, NetConfig, PeerState};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_many_times_leaks_no_sockets() {
    let port = 27951;
    let cfg = |n| {
        let mut c = NetConfig::loopback(n, 2, port).with_heartbeat(100, 3);
        c.idle_timeout_ms = 1000;
        c.keepalive_delay_ms = 200;
        c.reconnect_delay_ms = 100;
        c
    };
    let fence: o2net::FenceFn = Arc::new(|r: &str| panic!("fenced: {r}"));
    let n1 = Net::start(cfg(1), fence.clone()).unwrap();
    let n2 = Net::start(cfg(2), fence).unwrap();
    for n in [&n1, &n2] {
        n.heartbeat_up(1);
        n.heartbeat_up(2);
    }
    let connected = |n: &Net| n.peer_stats()[0].state == PeerState::Connected;
    wait_for("first connection", || connected(&n1) && connected(&n2)).await;
    let baseline = open_fds();
    for _ in 0..30 {
        // The peer dies and comes back, as heartbeat reports it.
        n2.heartbeat_down(1);
        n1.heartbeat_down(2);
        n1.heartbeat_up(2);
        n2.heartbeat_up(1);
        wait_for("reconnection", || connected(&n1) && connected(&n2)).await;
    }
    // Closed sockets are released as their tasks notice.
    wait_for("sockets released", || open_fds() <= baseline + 2).await;
    n1.shutdown();
    n2.shutdown();
}
