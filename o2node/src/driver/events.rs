//! What the driver does with the stack's events: logs them in the kernel's words, wakes the
//! waiters of region starts and stops and of the API, and hands them to subscribers.

use super::{Node, State};
use crate::types::Event;

impl Node {
    pub(super) fn on_event(&self, st: &mut State, now: u64, e: Event) {
        let node = self.inner.node;
        match &e {
            Event::NodeUp {
                node: up,
                generation,
                region,
            } => {
                tracing::info!(
                    node,
                    peer = up,
                    generation = format_args!("0x{generation:x}"),
                    region,
                    "o2hb: node {up} up"
                )
            }
            Event::NodeDown {
                node: down,
                generation,
                region,
            } => {
                tracing::info!(
                    node,
                    peer = down,
                    generation = format_args!("0x{generation:x}"),
                    region,
                    "o2hb: node {down} down"
                )
            }
            Event::RegionSteady { region } => {
                if let Some(tx) = st.starting.remove(region) {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::RegionFailed { region } => {
                if let Some(tx) = st.starting.remove(region) {
                    let _ = tx.send(Err(
                        "heartbeat could not stabilize (the kernel's EIO)".to_string()
                    ));
                }
            }
            Event::RegionStopped { region, clean } => {
                // Dropping the thread's handle ends it once its current request is done.
                st.disks.remove(region);
                if let Some(tx) = st.starting.remove(region) {
                    let _ = tx.send(Err("stopped while starting".to_string()));
                }
                for tx in st.stopping.remove(region).unwrap_or_default() {
                    let _ = tx.send(*clean);
                }
                tracing::info!(node, region, clean, "o2hb: heartbeat stopped");
            }
            Event::Online => {
                tracing::info!(node, "node {node} online: heartbeat steady, locks served")
            }
            Event::Stopped => tracing::info!(node, "node {node} offline"),
            Event::AppDone { id, result } => {
                if let Some(tx) = st.apps.remove(id) {
                    let _ = tx.send(*result);
                }
            }
            Event::NetUp { .. } | Event::NetDown { .. } => {}
            Event::Joined { .. }
            | Event::JoinFailed { .. }
            | Event::Left { .. }
            | Event::LockDone { .. }
            | Event::Bast { .. }
            | Event::Unlocked { .. } => st.dlm.on_event(&mut st.stack, now, &e),
        }
        st.subscribers.retain(|s| s.send(e.clone()).is_ok());
    }
}
