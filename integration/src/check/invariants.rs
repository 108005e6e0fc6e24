//! The invariants checker: the rules a node's cores keep about their own state after every
//! input (a resource kept as master is owned here, every lock of ours has its resource, a
//! joined domain counts this node in). The node adapter asks the cores after every step and
//! notes the first rule broken; this checker makes it a violation at that step, where the
//! state went wrong, rather than at the end-of-run rules it would break later.

use super::{Checker, Tally, Violation, World};
use crate::stack::Note;
use crate::trace::{Record, What};

#[derive(Debug, Default)]
pub struct Invariants {
    steps_with_domains: u64,
    broken: u64,
}

impl Checker for Invariants {
    fn name(&self) -> &'static str {
        "invariants"
    }

    fn observe(&mut self, rec: &Record<'_>, _world: &World<'_>, out: &mut Vec<Violation>) {
        match &rec.what {
            What::Note(Note::Invariant(broken)) => {
                self.broken += 1;
                out.push(Violation {
                    checker: self.name(),
                    at: rec.at,
                    since: rec.at,
                    nodes: rec.node.into_iter().collect(),
                    message: format!("n{}: {broken}", rec.node.map_or(0, |n| n)),
                });
            }
            What::Note(Note::Dlm(_)) => self.steps_with_domains += 1,
            _ => {}
        }
    }

    fn finish(&mut self, _world: &World<'_>, _out: &mut Vec<Violation>) {}

    fn tally(&self) -> Tally {
        Tally {
            judged: self.steps_with_domains,
            open: 0,
        }
    }
}
