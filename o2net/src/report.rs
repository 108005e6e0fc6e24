//! Text rendering of o2net connection statistics, for `o2cb` and the daemon's
//! status output: one line per configured peer with its state, traffic each
//! way and the age of the last keepalive heard.

use std::fmt::Write;

use crate::core::PeerStats;

/// A table of `stats`, with keepalive ages relative to `now_ms` (the time
/// base of the stats, e.g. [`crate::Net::now_ms`]).
pub fn connections_table(stats: &[PeerStats], now_ms: u64) -> String {
    let mut out = String::from(
        "node  name              address                state          hb   sent bytes/msgs      recv bytes/msgs      last keepalive\n",
    );
    for s in stats {
        let ka = match s.traffic.last_keepalive_received {
            Some(t) => {
                let age = now_ms.saturating_sub(t);
                format!("{}.{:03} s ago", age / 1000, age % 1000)
            }
            None => "never".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:>4}  {:<16}  {:<21}  {:<13}  {:<3}  {:<19}  {:<19}  {}",
            s.node,
            s.name,
            s.addr.to_string(),
            s.state.to_string(),
            if s.heartbeating { "yes" } else { "no" },
            format!("{}/{}", s.traffic.bytes_sent, s.traffic.msgs_sent),
            format!("{}/{}", s.traffic.bytes_received, s.traffic.msgs_received),
            ka
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{PeerState, Traffic};
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn one_line_per_peer_with_state_traffic_and_keepalive_age() {
        let stats = vec![
            PeerStats {
                node: 1,
                name: "alpha".into(),
                addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 7777),
                state: PeerState::Connected,
                heartbeating: true,
                traffic: Traffic {
                    bytes_sent: 100,
                    msgs_sent: 2,
                    bytes_received: 56,
                    msgs_received: 1,
                    last_keepalive_received: Some(9_250),
                    ..Traffic::default()
                },
                waiting_sends: 0,
            },
            PeerStats {
                node: 3,
                name: "gamma".into(),
                addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 7777),
                state: PeerState::NotConnected,
                heartbeating: false,
                traffic: Traffic::default(),
                waiting_sends: 0,
            },
        ];
        let t = connections_table(&stats, 10_000);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with(
                "   1  alpha             127.0.0.1:7777         connected      yes  100/2"
            ),
            "{t}"
        );
        assert!(lines[1].ends_with("0.750 s ago"), "{t}");
        assert!(lines[2].contains("not-connected  no   0/0"), "{t}");
        assert!(lines[2].ends_with("never"), "{t}");
    }
}
