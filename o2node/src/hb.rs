//! The heartbeat side of the node: regions started and stopped, o2hb's outputs carried out,
//! and node up/down handed on in the kernel's order (o2net first, `O2NET_HB_PRI`, then the
//! DLM, `DLM_HB_NODE_UP_PRI` / `DLM_HB_NODE_DOWN_PRI`).

use bytes::Bytes;
use o2hb::{Mode, NegoKind, RegionConfig};

use crate::error::NodeError;
use crate::net::{Handler, SendOwner};
use crate::stack::{NodeStack, Region, RegionState};
use crate::types::{Event, FenceReason, Layer, Level, Output, PeerHb, RegionId, Stage};

impl NodeStack {
    fn hb_now(&self, now: u64) -> o2hb::Now {
        o2hb::Now {
            mono_ms: now,
            wall_ms: self.cfg.wall_epoch_ms.saturating_add(now),
        }
    }

    /// Adds a region, registers its negotiation handlers with o2net and starts it.
    pub(crate) fn add_region(
        &mut self,
        now: u64,
        cfg: RegionConfig,
        generation: u64,
    ) -> Result<RegionId, NodeError> {
        let node = self.node();
        let region_name = cfg.name.clone();
        let refused = |message: String| NodeError::Region {
            node,
            region: region_name.clone(),
            message,
        };
        if self.regions.values().any(|r| r.name == cfg.name) {
            return Err(refused("already active".to_string()));
        }
        if generation == 0 {
            return Err(refused("generation 0 is the clean-stop marker".to_string()));
        }
        let (name, geometry) = (cfg.name.clone(), cfg.geometry);
        let id = self
            .hb
            .add_region(cfg)
            .map_err(|e| refused(e.to_string()))?;
        let num = if self.cfg.mode == Mode::Global { id } else { 0 };
        let nego_key = o2hb::core::nego_key(num, &name);
        for kind in [NegoKind::Timeout, NegoKind::Approve] {
            if let Err(e) =
                self.net
                    .register_handler(kind as u16, nego_key, 1, Handler::Nego(kind, id))
            {
                for k in [NegoKind::Timeout, NegoKind::Approve] {
                    self.net.unregister_handler(k as u16, nego_key);
                }
                let _ = self.hb.remove_region(id);
                return Err(refused(format!("negotiation handlers: {e}")));
            }
        }
        self.regions.insert(
            id,
            Region {
                name,
                geometry,
                nego_key,
                state: RegionState::Starting,
            },
        );
        self.hb_input(
            now,
            o2hb::Input::Start {
                region: id,
                generation,
            },
        );
        Ok(id)
    }

    /// Stops a region by request of the node's users.
    pub(crate) fn end_region(&mut self, now: u64, id: RegionId) -> Result<(), NodeError> {
        let node = self.node();
        let Some(r) = self.regions.get(&id) else {
            return Err(NodeError::Region {
                node,
                region: id.to_string(),
                message: "no such region".to_string(),
            });
        };
        let others = self
            .regions
            .iter()
            .any(|(o, r)| *o != id && r.state == RegionState::Steady);
        if !others && !self.dlm.is_empty() {
            return Err(NodeError::Region {
                node,
                region: r.name.clone(),
                message: "in use: domains are joined (leave them first)".to_string(),
            });
        }
        if let Some(r) = self.regions.get_mut(&id) {
            r.state = RegionState::Stopping;
        }
        self.hb_input(now, o2hb::Input::Stop { region: id });
        self.update_stage(now);
        Ok(())
    }

    /// Runs the heartbeat core on one input and carries its outputs out.
    pub(crate) fn hb_input(&mut self, now: u64, input: o2hb::Input<'_>) {
        let outputs = self.hb.handle(self.hb_now(now), input);
        for o in outputs {
            if self.stage == Stage::Fenced {
                return;
            }
            self.on_hb(now, o);
        }
    }

    fn on_hb(&mut self, now: u64, o: o2hb::Output) {
        use o2hb::Output as H;
        match o {
            H::Read {
                region,
                first_slot,
                slots,
            } => {
                if let Some(r) = self.regions.get(&region) {
                    let g = r.geometry;
                    self.out.push_back(Output::Read {
                        region,
                        offset: g.slot_offset(first_slot),
                        len: usize::from(slots) * g.block_bytes(),
                    });
                }
            }
            H::Write {
                region,
                slot,
                block,
            } => {
                if let Some(r) = self.regions.get(&region) {
                    self.out.push_back(Output::Write {
                        region,
                        offset: r.geometry.slot_offset(slot),
                        data: block,
                    });
                }
            }
            H::ArmTimer {
                region,
                timer,
                at_ms,
            } => {
                self.hb_timers.insert((region, timer), at_ms);
            }
            H::CancelTimer { region, timer } => {
                self.hb_timers.remove(&(region, timer));
            }
            H::NodeUp {
                region,
                node,
                generation,
            } => self.node_up(now, region, node, generation),
            H::NodeDown {
                region,
                node,
                generation,
            } => self.node_down(now, region, node, generation),
            H::Log(ev) => {
                let level = match ev.level {
                    o2hb::LogLevel::Error => Level::Error,
                    o2hb::LogLevel::Notice => Level::Info,
                    o2hb::LogLevel::Debug => Level::Debug,
                };
                self.log(Layer::Hb, level, || ev.message);
            }
            H::SendNego {
                region,
                to,
                kind,
                node_num,
            } => {
                if let Some(key) = self.regions.get(&region).map(|r| r.nego_key) {
                    let payload = Bytes::copy_from_slice(&[node_num]);
                    self.net_send(now, SendOwner::Nego, to, kind as u16, key, payload);
                }
            }
            H::Steady { region } => {
                if let Some(r) = self.regions.get_mut(&region) {
                    if r.state == RegionState::Starting {
                        r.state = RegionState::Steady;
                    }
                }
                self.out
                    .push_back(Output::Event(Event::RegionSteady { region }));
                self.update_stage(now);
            }
            H::StartAborted { region } => {
                if let Some(r) = self.regions.get_mut(&region) {
                    r.state = RegionState::Failed;
                }
                self.out
                    .push_back(Output::Event(Event::RegionFailed { region }));
                self.region_failed(now);
            }
            H::Stopped { region, clean } => {
                self.hb_timers.retain(|(r, _), _| *r != region);
                if let Some(r) = self.regions.remove(&region) {
                    for k in [NegoKind::Timeout, NegoKind::Approve] {
                        self.net.unregister_handler(k as u16, r.nego_key);
                    }
                }
                let _ = self.hb.remove_region(region);
                self.out
                    .push_back(Output::Event(Event::RegionStopped { region, clean }));
                self.update_stage(now);
            }
            H::Fence => self.fence_now(FenceReason::WriteTimeout),
        }
    }

    /// Heartbeat saw `node` come up: o2net connects, then the DLM counts it live.
    fn node_up(&mut self, now: u64, region: RegionId, node: u8, generation: u64) {
        self.peers.insert(
            node,
            PeerHb {
                live: true,
                generation,
            },
        );
        self.out.push_back(Output::Event(Event::NodeUp {
            node,
            generation,
            region,
        }));
        self.net_input(now, o2net::Input::HeartbeatUp(node));
        self.dlm_node_up(now, node);
    }

    /// Heartbeat saw `node` die: o2net fails its sends and drops its connection, then the
    /// DLM recovers.
    fn node_down(&mut self, now: u64, region: RegionId, node: u8, generation: u64) {
        self.peers.insert(
            node,
            PeerHb {
                live: false,
                generation,
            },
        );
        self.out.push_back(Output::Event(Event::NodeDown {
            node,
            generation,
            region,
        }));
        self.net_input(now, o2net::Input::HeartbeatDown(node));
        self.dlm_node_down(now, node);
    }
}
