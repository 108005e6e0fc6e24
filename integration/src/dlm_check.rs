//! The lock checkers of the DLM simulation, judged from what the API callers see:
//!
//! - mutual exclusion: no two locks on one name are held in incompatible modes at the same
//!   time (a holder holds from its grant until it asks to release or down-convert);
//! - value blocks: a grant that reads the value block under PR or EX sees the value the last
//!   EX holder wrote back, or zeros if the master has purged the idle resource since (as in
//!   the kernel, the value block lives in the master's resource and goes with it) or, once
//!   a master may have died, if recovery invalidated it;
//! - progress is judged by the run itself (every request finishes after faults heal).

use std::collections::BTreeMap;

use o2dlm::wire::{LockMode, LockName, Lvb, LVB_LEN};

/// What the checker is shown.
#[derive(Debug, Clone)]
pub enum LockEvent {
    Requested {
        at: u64,
        node: u8,
        cookie: u64,
    },
    /// A grant (new lock or conversion); `lvb` if the grant read the value block.
    Granted {
        at: u64,
        node: u8,
        cookie: u64,
        name: LockName,
        mode: LockMode,
        lvb: Option<Lvb>,
    },
    /// The holder lets go (`now_mode: None`) or down-converts; `wrote` is the value block an
    /// EX holder writes back.
    Released {
        at: u64,
        node: u8,
        cookie: u64,
        name: LockName,
        now_mode: Option<LockMode>,
        wrote: Option<Lvb>,
    },
    /// The master freed the idle resource, and its value block with it.
    Purged {
        at: u64,
        name: LockName,
    },
}

#[derive(Debug, Default)]
struct NameState {
    holders: BTreeMap<(u8, u64), LockMode>,
    last_written: Option<Lvb>,
}

/// Mutual exclusion and value-block checker. See the module documentation.
#[derive(Debug, Default)]
pub struct LockChecker {
    names: BTreeMap<LockName, NameState>,
    violations: Vec<String>,
    lost_ok: bool,
}

impl LockChecker {
    /// Judges one event.
    pub fn see(&mut self, ev: LockEvent) {
        match ev {
            LockEvent::Requested { .. } => {}
            LockEvent::Purged { at, name } => {
                let st = self.names.entry(name).or_default();
                if let Some((&(n, k), m)) = st.holders.iter().next() {
                    self.violations.push(format!(
                        "purge: at {at} ms the master freed {name} while node {n} holds {m} ({k:#x})"
                    ));
                }
                st.last_written = None;
            }
            LockEvent::Granted {
                at,
                node,
                cookie,
                name,
                mode,
                lvb,
            } => {
                let st = self.names.entry(name).or_default();
                for (&(n, k), &m) in &st.holders {
                    if (n, k) != (node, cookie) && !LockMode::compatible(m, mode) {
                        self.violations.push(format!(
                            "mutual exclusion: at {at} ms node {node} was granted {mode} on {name} ({cookie:#x}) while node {n} holds {m} ({k:#x})"
                        ));
                    }
                }
                st.holders.insert((node, cookie), mode);
                if let Some(v) = lvb {
                    if mode != LockMode::Nl {
                        let want = st.last_written.unwrap_or([0; LVB_LEN]);
                        if v != want && !(self.lost_ok && v == [0; LVB_LEN]) {
                            self.violations.push(format!(
                                "value block: at {at} ms node {node} read {} on {name} under {mode}; the last EX holder wrote {}",
                                value_of(&v),
                                value_of(&want)
                            ));
                        }
                    }
                }
            }
            LockEvent::Released {
                node,
                cookie,
                name,
                now_mode,
                wrote,
                ..
            } => {
                let st = self.names.entry(name).or_default();
                match now_mode {
                    Some(m) => {
                        st.holders.insert((node, cookie), m);
                    }
                    None => {
                        st.holders.remove(&(node, cookie));
                    }
                }
                if let Some(v) = wrote {
                    st.last_written = Some(v);
                }
            }
        }
    }

    /// `node`'s locks end now (its machine crashed or was fenced, or the others' heartbeat
    /// declared it dead, which the kernel takes to mean it has fenced).
    pub fn node_gone(&mut self, node: u8) {
        for st in self.names.values_mut() {
            st.holders.retain(|&(n, _), _| n != node);
        }
    }

    /// A master may have died with its value blocks: from now on a block read as zeros is
    /// the lost (invalid) block, not a stale one. This is how the kernel tells it: recovery
    /// zeroes an untrusted block (`dlm_revalidate_lvb`) and no status or lksb flag says so
    /// (`DLM_VALNOTVALID` exists in dlmapi.h but o2dlm never returns it).
    pub fn value_blocks_may_be_lost(&mut self) {
        self.lost_ok = true;
    }

    /// Everything found so far.
    pub fn violations(&self) -> Vec<String> {
        self.violations.clone()
    }
}

/// The value the simulation's writers put in the first 8 bytes.
fn value_of(lvb: &Lvb) -> String {
    let mut b = [0u8; 8];
    b.copy_from_slice(&lvb[..8]);
    format!("value {}", u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node `n`'s lock `n` is granted `mode` at `n` ms, reading `lvb`.
    fn granted(n: u8, mode: LockMode, lvb: Option<Lvb>) -> LockEvent {
        LockEvent::Granted {
            at: u64::from(n),
            node: n,
            cookie: u64::from(n),
            name: LockName::new(b"x").expect("valid"),
            mode,
            lvb,
        }
    }

    #[test]
    fn checker_catches_incompatible_grants() {
        let mut c = LockChecker::default();
        c.see(granted(1, LockMode::Pr, None));
        c.see(granted(2, LockMode::Pr, None));
        assert!(c.violations().is_empty());
        c.see(granted(3, LockMode::Ex, None));
        assert_eq!(c.violations().len(), 2, "{:?}", c.violations());
    }

    #[test]
    fn checker_catches_a_stale_value_block() {
        let mut c = LockChecker::default();
        let mut v = [0u8; LVB_LEN];
        v[7] = 9;
        c.see(granted(1, LockMode::Ex, Some([0; LVB_LEN])));
        c.see(LockEvent::Released {
            at: 1,
            node: 1,
            cookie: 1,
            name: LockName::new(b"x").expect("valid"),
            now_mode: None,
            wrote: Some(v),
        });
        c.see(granted(2, LockMode::Pr, Some(v)));
        assert!(c.violations().is_empty());
        c.see(granted(3, LockMode::Pr, Some([0; LVB_LEN])));
        assert_eq!(c.violations().len(), 1, "{:?}", c.violations());
    }
}
