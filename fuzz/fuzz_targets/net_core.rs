//! Fuzzes the o2net core with arbitrary bytes on an accepted connection
//! from a configured, heartbeating peer (handshake check, framing, replies,
//! keepalives), split into reads by the first byte, with timers firing in
//! between. Nothing may panic, and the core must close the connection or
//! keep answering.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use o2net::{Input, NetConfig, NetCore, NodeInfo};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let nodes = (1..=2u8)
        .map(|n| NodeInfo {
            num: n,
            name: format!("n{n}"),
            addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, n), 7777),
        })
        .collect();
    let Ok(mut core) = NetCore::<u8>::new(NetConfig::new(1, nodes)) else {
        return;
    };
    let _ = core.register_handler(1, 0, 16, 0);
    core.handle(0, Input::HeartbeatUp(1));
    core.handle(0, Input::HeartbeatUp(2));
    let conn = core.new_conn_id();
    let from = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 40000);
    core.handle(0, Input::Accepted { conn, from });
    let mut now = 0u64;
    for piece in stream.chunks(usize::from(sel).max(1)) {
        now += u64::from(sel) * 100;
        core.handle(now, Input::Received { conn, data: piece });
        core.handle(now, Input::Timeout);
        while let Some(o) = core.poll_output() {
            if let o2net::Output::Deliver { conn, header, .. } = o {
                core.handle(now, Input::HandlerDone { conn, request: header, status: 0 });
            }
        }
    }
});
