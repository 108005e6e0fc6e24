//! The DLM side of the node: its domains (one [`DomainCore`] each), the o2net handlers they
//! register, the answers of a node that is not in a domain, and the domains' outputs turned
//! into sends and events.
//!
//! Rules kept here: a domain is joined only once the node is online (heartbeat has seen every
//! live node, so the join asks all of them); a joined domain registers its message handlers
//! under its key and drops them once left; node up/down reach every domain after o2net has
//! handled them; a domain that cannot be left within a stop's bound is abandoned.

use std::collections::BTreeMap;

use bytes::Bytes;
use o2dlm::domain::{DomainConfig, DomainCore, Input as DomainInput, Output as DomainOutput};
use o2dlm::join::{self, DomainState};
use o2dlm::secondary::CookieSource;
use o2dlm::wire::{
    errno, DlmMessage, DlmStatus, DomainName, KeyKind, LkmFlags, LockMode, LockName, MsgType,
    NodeMap, DLM_MOD_KEY,
};
use o2net::NetCore;
use rustc_hash::FxHashMap;

use crate::error::NodeError;
use crate::net::{Handler, SendOwner};
use crate::stack::NodeStack;
use crate::types::{Event, FenceReason, Layer, Level, Output, Stage};

/// The node's domains and what they share.
pub(crate) struct Dlm {
    cookies: CookieSource,
    domains: BTreeMap<DomainName, DomainCore>,
    by_key: FxHashMap<u32, DomainName>,
    /// Nodes heartbeat says are live, for domains created later.
    live: NodeMap,
    /// Joins asked before the node was online.
    queued: Vec<DomainName>,
    /// Reused for each run's outputs.
    scratch: Vec<DomainOutput>,
}

/// The join-protocol messages: handled node-wide, the domain named inside.
pub(crate) fn register_module_handlers(net: &mut NetCore<Handler>) -> Result<(), NodeError> {
    let node = net.config().local;
    for t in MsgType::ALL {
        if t.key_kind() == KeyKind::Module {
            net.register_handler(t.to_wire(), DLM_MOD_KEY, max_len(*t), Handler::DlmModule)
                .map_err(|e| NodeError::Net {
                    node,
                    message: e.to_string(),
                })?;
        }
    }
    Ok(())
}

fn max_len(t: MsgType) -> u32 {
    u32::try_from(t.max_len()).unwrap_or(u32::MAX)
}

/// The domain message types, registered under a domain's key while it is joined.
fn domain_types() -> impl Iterator<Item = MsgType> {
    MsgType::ALL
        .iter()
        .copied()
        .filter(|t| t.key_kind() == KeyKind::Domain)
}

impl Dlm {
    pub(crate) fn new(node: u8) -> Dlm {
        Dlm {
            cookies: CookieSource::new(node),
            domains: BTreeMap::new(),
            by_key: FxHashMap::default(),
            live: NodeMap::new(),
            queued: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.domains
            .values()
            .filter_map(|c| c.next_deadline())
            .min()
    }

    /// No domain joined, joining or leaving.
    pub(crate) fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    #[cfg(debug_assertions)]
    pub(crate) fn joined_count(&self) -> usize {
        self.domains
            .values()
            .filter(|c| c.state() != DomainState::New)
            .count()
    }

    pub(crate) fn core(&self, name: &DomainName) -> Option<&DomainCore> {
        self.domains.get(name)
    }

    pub(crate) fn names(&self) -> Vec<DomainName> {
        self.domains.keys().copied().collect()
    }

    #[cfg(debug_assertions)]
    pub(crate) fn check_invariants(&self) {
        for (name, core) in &self.domains {
            debug_assert_eq!(
                self.by_key.get(&core.key()),
                Some(name),
                "domain {name} has no handlers under its key"
            );
            debug_assert!(!self.queued.contains(name));
        }
        debug_assert_eq!(self.by_key.len(), self.domains.len());
    }
}

impl NodeStack {
    /// A join the node's user asked for: started if online, queued while starting.
    pub(crate) fn ask_join(&mut self, now: u64, domain: DomainName) -> Result<(), NodeError> {
        let node = self.node();
        if self.dlm.domains.contains_key(&domain) || self.dlm.queued.contains(&domain) {
            return Err(NodeError::AlreadyJoined {
                node,
                domain: domain.to_string(),
            });
        }
        let key = domain.key();
        if let Some(other) = self.dlm.by_key.get(&key) {
            return Err(NodeError::KeyCollision {
                node,
                domain: domain.to_string(),
                other: other.to_string(),
                key,
            });
        }
        if self.stage == Stage::Starting {
            self.log(Layer::Dlm, Level::Info, || {
                format!("o2dlm: join of domain {domain} waits for heartbeat to be steady")
            });
            self.dlm.queued.push(domain);
            return Ok(());
        }
        self.start_join(now, domain)
    }

    /// The node came online: the joins asked meanwhile start.
    pub(crate) fn start_queued_joins(&mut self, now: u64) {
        for domain in std::mem::take(&mut self.dlm.queued) {
            if let Err(e) = self.start_join(now, domain) {
                self.join_failed(domain, e.errno());
            }
        }
    }

    /// A region failed to start: if the node cannot come online, queued joins fail.
    pub(crate) fn region_failed(&mut self, _now: u64) {
        if self.stage != Stage::Starting {
            return;
        }
        for domain in std::mem::take(&mut self.dlm.queued) {
            self.log(Layer::Dlm, Level::Error, || {
                format!("o2dlm: join of domain {domain} fails: heartbeat did not start")
            });
            self.join_failed(domain, errno::EINVAL);
        }
    }

    fn join_failed(&mut self, domain: DomainName, errno: i32) {
        self.out
            .push_back(Output::Event(Event::JoinFailed { domain, errno }));
    }

    /// Creates the domain's core, registers its handlers and starts the join
    /// (`dlm_try_to_join_domain` asks every node heartbeat has seen).
    fn start_join(&mut self, now: u64, domain: DomainName) -> Result<(), NodeError> {
        let node = self.node();
        let key = domain.key();
        for t in domain_types() {
            if let Err(e) =
                self.net
                    .register_handler(t.to_wire(), key, max_len(t), Handler::DlmDomain)
            {
                self.unregister_domain_handlers(key);
                return Err(NodeError::Net {
                    node,
                    message: format!("domain {domain}: {e}"),
                });
            }
        }
        let mut dc = DomainConfig::new(node, domain);
        dc.purge_interval_ms = self.cfg.dlm.purge_interval_ms;
        dc.mastery_timeout_ms = self.cfg.dlm.mastery_timeout_ms;
        dc.fs_proto = self.cfg.dlm.fs_proto;
        dc.regions = self.cfg.dlm_regions();
        dc.nodes = self.cfg.dlm_nodes();
        let mut core = DomainCore::new(dc);
        for n in self.dlm.live.iter() {
            core.handle(now, DomainInput::NodeUp(n));
        }
        core.drain_outputs();
        self.dlm.domains.insert(domain, core);
        self.dlm.by_key.insert(key, domain);
        self.run_domain(now, domain, DomainInput::Join);
        self.pump_net(now);
        Ok(())
    }

    fn unregister_domain_handlers(&mut self, key: u32) {
        for t in domain_types() {
            self.net.unregister_handler(t.to_wire(), key);
        }
    }

    /// Forgets a domain: its handlers go, so later messages for it find no handler
    /// (ENOPROTOOPT, as from a kernel node not in the domain).
    fn remove_domain(&mut self, domain: DomainName) {
        if let Some(core) = self.dlm.domains.remove(&domain) {
            let key = core.key();
            self.dlm.by_key.remove(&key);
            self.unregister_domain_handlers(key);
        }
        self.sends
            .retain(|_, o| !matches!(o, SendOwner::Dlm(d, _) if *d == domain));
    }

    pub(crate) fn dlm_leave(&mut self, now: u64, domain: DomainName) -> Result<(), NodeError> {
        let node = self.node();
        match self.dlm.domains.get(&domain).map(|c| c.state()) {
            Some(DomainState::Joined) => {
                self.run_domain(now, domain, DomainInput::Leave);
                self.pump_net(now);
                self.advance_stop(now);
                Ok(())
            }
            Some(_) => Err(NodeError::AlreadyJoined {
                node,
                domain: domain.to_string(),
            }),
            None => Err(NodeError::NotJoined {
                node,
                domain: domain.to_string(),
            }),
        }
    }

    pub(crate) fn dlm_lock(
        &mut self,
        now: u64,
        domain: DomainName,
        name: LockName,
        mode: LockMode,
        flags: LkmFlags,
    ) -> Result<u64, NodeError> {
        let node = self.node();
        if self.dlm.domains.get(&domain).map(|c| c.state()) != Some(DomainState::Joined) {
            return Err(NodeError::NotJoined {
                node,
                domain: domain.to_string(),
            });
        }
        let cookie = self.dlm.cookies.next_cookie();
        let input = DomainInput::Lock {
            cookie,
            name,
            mode,
            flags,
        };
        self.run_domain(now, domain, input);
        self.pump_net(now);
        Ok(cookie)
    }

    /// A convert or unlock of a lock of `domain`.
    pub(crate) fn dlm_api(
        &mut self,
        now: u64,
        domain: DomainName,
        input: DomainInput,
    ) -> Result<(), NodeError> {
        if !self.dlm.domains.contains_key(&domain) {
            return Err(NodeError::NotJoined {
                node: self.node(),
                domain: domain.to_string(),
            });
        }
        self.run_domain(now, domain, input);
        self.pump_net(now);
        Ok(())
    }

    /// A clean stop starts: queued joins fail, joined domains are left.
    pub(crate) fn dlm_stop(&mut self, now: u64) {
        for domain in std::mem::take(&mut self.dlm.queued) {
            self.join_failed(domain, errno::ESHUTDOWN);
        }
        for domain in self.dlm.names() {
            if self.dlm.domains.get(&domain).map(|c| c.state()) == Some(DomainState::Joined) {
                self.run_domain(now, domain, DomainInput::Leave);
            }
        }
        self.pump_net(now);
    }

    /// The stop's bound passed: the domains not left yet are dropped with their locks.
    pub(crate) fn abandon_domains(&mut self, _now: u64) {
        let secs = self.cfg.stop_timeout_ms / 1000;
        for domain in self.dlm.names() {
            self.log(Layer::Dlm, Level::Warn, || {
                format!("o2dlm: domain {domain} not left within {secs} s; stopping without it (the other nodes recover it)")
            });
            self.remove_domain(domain);
            self.out.push_back(Output::Event(Event::Left {
                domain,
                clean: false,
            }));
        }
    }

    pub(crate) fn dlm_tick(&mut self, now: u64) {
        let due: Vec<DomainName> = self
            .dlm
            .domains
            .iter()
            .filter(|(_, c)| c.next_deadline().is_some_and(|d| d <= now))
            .map(|(n, _)| *n)
            .collect();
        for domain in due {
            self.run_domain(now, domain, DomainInput::Tick);
        }
        self.pump_net(now);
    }

    pub(crate) fn dlm_node_up(&mut self, now: u64, node: u8) {
        self.dlm.live.insert(node);
        for domain in self.dlm.names() {
            self.run_domain(now, domain, DomainInput::NodeUp(node));
        }
        self.pump_net(now);
    }

    pub(crate) fn dlm_node_down(&mut self, now: u64, node: u8) {
        self.dlm.live.remove(node);
        for domain in self.dlm.names() {
            self.run_domain(now, domain, DomainInput::NodeDown(node));
        }
        self.pump_net(now);
    }

    pub(crate) fn dlm_send_done(
        &mut self,
        now: u64,
        domain: DomainName,
        token: u64,
        result: Result<i32, i32>,
    ) {
        self.run_domain(now, domain, DomainInput::SendDone { token, result });
    }

    /// A join-protocol request: to the domain it names, or answered as a node without it.
    pub(crate) fn dlm_module_request(
        &mut self,
        now: u64,
        from: u8,
        msg_type: u16,
        payload: &[u8],
    ) -> i32 {
        let msg = match DlmMessage::decode(msg_type, payload) {
            Ok(m) => m,
            Err(e) => {
                self.log(Layer::Dlm, Level::Warn, || {
                    format!("o2dlm: bad join message type {msg_type} from node {from}: {e}")
                });
                return errno::EINVAL;
            }
        };
        let domain = match &msg {
            DlmMessage::QueryJoin(q) => q.domain,
            DlmMessage::AssertJoined(j) | DlmMessage::CancelJoin(j) => j.domain,
            DlmMessage::QueryRegion(q) => q.domain,
            DlmMessage::QueryNodeinfo(q) => q.domain,
            _ => return errno::EINVAL,
        };
        if self.dlm.domains.contains_key(&domain) {
            return self.run_domain(now, domain, DomainInput::Message { from, msg });
        }
        match msg {
            DlmMessage::QueryJoin(q) => {
                let live = self.dlm.live.contains(q.node_idx);
                join::answer_query_join(&q, live, None).to_status()
            }
            DlmMessage::AssertJoined(_) | DlmMessage::CancelJoin(_) => 0,
            _ => errno::EINVAL,
        }
    }

    /// A request of the domain whose key it came with.
    pub(crate) fn dlm_domain_request(
        &mut self,
        now: u64,
        from: u8,
        msg_type: u16,
        key: u32,
        payload: &[u8],
    ) -> i32 {
        let Some(&domain) = self.dlm.by_key.get(&key) else {
            return errno::EINVAL;
        };
        match DlmMessage::decode(msg_type, payload) {
            Ok(msg) => self.run_domain(now, domain, DomainInput::Message { from, msg }),
            Err(e) => {
                self.log(Layer::Dlm, Level::Warn, || {
                    format!(
                        "o2dlm: domain {domain}: bad message type {msg_type} from node {from}: {e}"
                    )
                });
                // What the kernel's handlers answer a message they cannot read.
                match MsgType::from_wire(msg_type) {
                    Some(
                        MsgType::MasterRequest
                        | MsgType::CreateLock
                        | MsgType::ConvertLock
                        | MsgType::UnlockLock
                        | MsgType::ProxyAst,
                    ) => DlmStatus::Ivbuflen.to_wire(),
                    Some(MsgType::AssertMaster) => 0,
                    _ => errno::EINVAL,
                }
            }
        }
    }

    /// Runs one domain core on one input and carries out its outputs (sends are queued in
    /// o2net; the caller pumps it). Returns the core's status (a handler's reply).
    pub(crate) fn run_domain(&mut self, now: u64, domain: DomainName, input: DomainInput) -> i32 {
        let mut outs = std::mem::take(&mut self.dlm.scratch);
        let status = match self.dlm.domains.get_mut(&domain) {
            Some(core) => {
                let status = core.handle(now, input);
                core.take_outputs(&mut outs);
                status
            }
            None => errno::EINVAL,
        };
        for o in outs.drain(..) {
            self.domain_output(now, domain, o);
        }
        self.dlm.scratch = outs;
        status
    }

    fn domain_output(&mut self, now: u64, domain: DomainName, o: DomainOutput) {
        let event = |e: Event| Output::Event(e);
        match o {
            DomainOutput::Send { token, to, msg } => {
                if self.cfg.log_messages {
                    self.log(Layer::Dlm, Level::Debug, || describe_send(to, &msg));
                }
                let t = msg.msg_type().to_wire();
                let key = msg.key(&domain);
                let payload = Bytes::from(msg.to_vec());
                self.net_send(now, SendOwner::Dlm(domain, token), to, t, key, payload);
            }
            DomainOutput::Done { cookie, result } => self.out.push_back(event(Event::LockDone {
                domain,
                cookie,
                result,
            })),
            DomainOutput::Bast { cookie, blocked } => self.out.push_back(event(Event::Bast {
                domain,
                cookie,
                blocked,
            })),
            DomainOutput::Unlocked {
                cookie,
                status,
                removed,
                cancel,
            } => self.out.push_back(event(Event::Unlocked {
                domain,
                cookie,
                status,
                removed,
                cancel,
            })),
            DomainOutput::Joined => {
                self.out.push_back(event(Event::Joined { domain }));
                if self.stage == Stage::Stopping {
                    self.run_domain(now, domain, DomainInput::Leave);
                }
            }
            DomainOutput::JoinFailed(errno) => {
                self.remove_domain(domain);
                self.join_failed(domain, errno);
                self.advance_stop(now);
            }
            DomainOutput::Fatal(why) => {
                let why = format!("domain {domain}: {why}");
                self.fence_pending.get_or_insert(FenceReason::Dlm(why));
            }
            DomainOutput::Left => {
                self.remove_domain(domain);
                self.out.push_back(event(Event::Left {
                    domain,
                    clean: true,
                }));
                self.advance_stop(now);
            }
        }
    }
}

/// A DLM send for the debug log and traces.
fn describe_send(to: u8, msg: &DlmMessage) -> String {
    let mut detail = format!("{msg:?}");
    if let Some((cut, _)) = detail.char_indices().nth(160) {
        detail.truncate(cut);
        detail.push('…');
    }
    format!("o2dlm → n{to}: {} {detail}", msg.msg_type())
}
