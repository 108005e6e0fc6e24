//! The o2net side of the node: the core's outputs carried out, requests dispatched to the
//! layer that registered their (type, key), send completions routed back to their sender.
//!
//! A request is handled inside the call that read it, one at a time across all peers (the
//! kernel's ordered o2net work queue): what the handler sends goes out before its status
//! reply, in the same batch of transmits.

use bytes::Bytes;
use o2hb::NegoKind;

use crate::stack::NodeStack;
use crate::types::{Event, FenceReason, Layer, Level, Output, RegionId};

/// Who answers a delivered request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handler {
    /// o2hb timeout negotiation of one region.
    Nego(NegoKind, RegionId),
    /// A DLM join-protocol message (`DLM_MOD_KEY`): the domain is named in the payload.
    DlmModule,
    /// A message of the domain whose key it is sent with.
    DlmDomain,
    /// An application message, answered 0.
    App,
}

/// Who waits for a send's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendOwner {
    Nego,
    /// A domain core's send, under its token.
    Dlm(o2dlm::wire::DomainName, u64),
    App(u64),
}

impl NodeStack {
    /// Runs the o2net core on one input and carries out everything that follows.
    pub(crate) fn net_input(&mut self, now: u64, input: o2net::Input<'_>) {
        self.net.handle(now, input);
        self.pump_net(now);
    }

    /// Hands a send to o2net (it waits in the core for a valid connection); its outputs are
    /// carried out by the caller's next [`NodeStack::pump_net`].
    pub(crate) fn net_send(
        &mut self,
        now: u64,
        owner: SendOwner,
        node: u8,
        msg_type: u16,
        key: u32,
        payload: Bytes,
    ) {
        let id = self.next_send;
        self.next_send += 1;
        self.sends.insert(id, owner);
        self.net.handle(
            now,
            o2net::Input::Send {
                id,
                node,
                msg_type,
                key,
                payload,
            },
        );
    }

    /// Carries out o2net's outputs until it has none.
    pub(crate) fn pump_net(&mut self, now: u64) {
        use o2net::Output as N;
        while let Some(o) = self.net.poll_output() {
            match o {
                N::Connect {
                    conn,
                    node,
                    local,
                    remote,
                } => self.out.push_back(Output::Connect {
                    conn,
                    node,
                    local,
                    remote,
                }),
                N::Transmit { conn, data } => self.out.push_back(Output::Transmit { conn, data }),
                N::Close { conn } => self.out.push_back(Output::Close { conn }),
                N::Deliver {
                    conn,
                    node,
                    header,
                    payload,
                    handler,
                } => {
                    let status = self.deliver(now, node, &header, &payload, handler);
                    self.net.handle(
                        now,
                        o2net::Input::HandlerDone {
                            conn,
                            request: header,
                            status,
                        },
                    );
                }
                N::SendDone { id, result } => {
                    let result = result.map_err(|e| e.errno());
                    match self.sends.remove(&id) {
                        Some(SendOwner::Dlm(domain, token)) => {
                            self.dlm_send_done(now, domain, token, result)
                        }
                        Some(SendOwner::App(id)) => self
                            .out
                            .push_back(Output::Event(Event::AppDone { id, result })),
                        Some(SendOwner::Nego) => {
                            if let Err(e) = result {
                                self.log(Layer::Hb, Level::Warn, || {
                                    format!("o2hb: negotiation message not delivered: errno {e}")
                                });
                            }
                        }
                        None => {}
                    }
                }
                // The reason was logged already, as the kernel logs it before fencing.
                N::Fence { reason } => {
                    self.fence_pending
                        .get_or_insert(FenceReason::Quorum(reason));
                }
                N::Log { level, message } => {
                    let level = match level {
                        o2net::LogLevel::Error => Level::Error,
                        o2net::LogLevel::Notice | o2net::LogLevel::Info => Level::Info,
                        o2net::LogLevel::Debug => Level::Debug,
                    };
                    self.log(Layer::Net, level, || message);
                }
            }
        }
    }

    /// Runs the handler of one request; returns its status.
    fn deliver(
        &mut self,
        now: u64,
        from: u8,
        header: &o2net::MsgHeader,
        payload: &[u8],
        handler: Handler,
    ) -> i32 {
        match handler {
            Handler::Nego(kind, region) => {
                let node_num = payload.first().copied().unwrap_or(u8::MAX);
                self.hb_input(
                    now,
                    o2hb::Input::Nego {
                        region,
                        kind,
                        node_num,
                    },
                );
                0
            }
            Handler::DlmModule => self.dlm_module_request(now, from, header.msg_type, payload),
            Handler::DlmDomain => {
                self.dlm_domain_request(now, from, header.msg_type, header.key, payload)
            }
            Handler::App => 0,
        }
    }
}
