//! Lock mastery, the handler side (`dlmmaster.c`): the master list entry (MLE) that records
//! a mastery in progress, and how a node answers `DLM_MASTER_REQUEST_MSG` and
//! `DLM_ASSERT_MASTER_MSG` given what it knows of the resource. Pure decisions: the domain
//! applies them (sets refmap bits, queues the assert worker, changes owners, wakes waiters,
//! drops the MLE).
//!
//! The requesting side (sending the requests, counting votes, deciding, asserting, waiting
//! for an assert, restarting on node up/down or a timeout) is in [`crate::domain`].

use crate::wire::{
    AssertMaster, LockName, MasterResponse, NodeMap, ASSERT_MASTER_FINISH_MIGRATION,
    ASSERT_MASTER_MLE_CLEANUP, ASSERT_RESPONSE_MASTERY_REF, ASSERT_RESPONSE_REASSERT,
};
use crate::Error;

/// The kind of a master list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MleKind {
    /// Another node is mastering the resource; wait for its assert (`BLK`).
    Block,
    /// This node is trying to master it (`MAS`).
    Master,
    /// Mastery is moving to another node (`MIG`).
    Migration,
}

/// A master list entry (`dlm_master_list_entry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mle {
    pub kind: MleKind,
    pub name: LockName,
    /// The master, once known.
    pub master: Option<u8>,
    /// For a migration, the node taking over.
    pub new_master: Option<u8>,
    /// Nodes that may become master (they are mastering it too, or asked us).
    pub maybe: NodeMap,
    /// Nodes asked.
    pub vote: NodeMap,
    /// Nodes that answered.
    pub response: NodeMap,
    /// The domain members other than us, kept current by node up/down events.
    pub node: NodeMap,
    /// The round of votes of a MASTER entry: a restart after a membership change starts a
    /// new one, and answers to the old one's requests no longer count.
    pub round: u64,
}

impl Mle {
    /// A new entry (`dlm_init_mle`): node and vote maps are the domain map without us.
    pub fn new(kind: MleKind, name: LockName, self_node: u8, domain_map: &NodeMap) -> Mle {
        let mut others = *domain_map;
        others.remove(self_node);
        Mle {
            kind,
            name,
            master: None,
            new_master: None,
            maybe: NodeMap::new(),
            vote: others,
            response: NodeMap::new(),
            node: others,
            round: 0,
        }
    }
}

/// What mastery needs to know of a lock resource this node has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceMastery {
    /// The master, if known.
    pub owner: Option<u8>,
    pub recovering: bool,
    pub migrating: bool,
    /// Mastery (or a local operation) is in progress.
    pub in_progress: bool,
}

/// How to answer a master request, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRequestAnswer {
    pub response: MasterResponse,
    /// Set the requester's bit in the resource's refmap (we are its master).
    pub set_refmap: bool,
    /// Queue an assert (`ASSERT_MASTER_MLE_CLEANUP`) to every other domain node, the
    /// requester included: the request made nodes up to us create entries to clean up.
    pub dispatch_assert: bool,
    /// A BLOCK entry to insert: we had neither the resource nor an entry for it.
    pub new_mle: Option<Mle>,
}

/// `dlm_master_request_handler`: the answer of node `self_node` to `requester` asking who
/// masters `name`. `mle` is our entry for the name (the requester is added to its maybe map
/// where the kernel does). Requests with an over-long name are answered `DLM_IVBUFLEN` by the
/// caller (they do not decode). States the kernel treats as impossible (it crashes) are
/// errors.
pub fn answer_master_request(
    self_node: u8,
    domain_joined: bool,
    domain_map: &NodeMap,
    requester: u8,
    name: LockName,
    res: Option<&ResourceMastery>,
    mle: Option<&mut Mle>,
) -> Result<MasterRequestAnswer, Error> {
    let answer = |response| MasterRequestAnswer {
        response,
        set_refmap: false,
        dispatch_assert: false,
        new_mle: None,
    };
    let bug = |reason: &'static str| Error::Mastery { name, reason };
    if !domain_joined {
        return Ok(answer(MasterResponse::No));
    }
    if let Some(res) = res {
        if res.recovering || res.migrating {
            return Ok(answer(MasterResponse::Error));
        }
        match res.owner {
            Some(o) if o == self_node => {
                return Ok(MasterRequestAnswer {
                    set_refmap: true,
                    dispatch_assert: true,
                    ..answer(MasterResponse::Yes)
                })
            }
            Some(_) => return Ok(answer(MasterResponse::No)),
            None => {}
        }
        if !res.in_progress {
            return Err(bug("resource without owner is not being mastered"));
        }
        let mle = mle.ok_or_else(|| bug("resource being mastered has no master list entry"))?;
        let (out, set_maybe) = match (mle.kind, mle.master) {
            (MleKind::Block, _) => (answer(MasterResponse::No), true),
            (MleKind::Migration, Some(m)) if m == self_node => {
                return Err(bug("master request for a resource we are migrating"))
            }
            (MleKind::Migration, _) => (answer(MasterResponse::No), true),
            (MleKind::Master, Some(m)) if m == self_node => (
                MasterRequestAnswer {
                    set_refmap: true,
                    dispatch_assert: true,
                    ..answer(MasterResponse::Yes)
                },
                false,
            ),
            (MleKind::Master, Some(_)) => (answer(MasterResponse::No), false),
            (MleKind::Master, None) => (answer(MasterResponse::Maybe), true),
        };
        if set_maybe {
            mle.maybe.insert(requester);
        }
        return Ok(out);
    }
    match mle {
        None => {
            let mut block = Mle::new(MleKind::Block, name, self_node, domain_map);
            block.maybe.insert(requester);
            Ok(MasterRequestAnswer {
                new_mle: Some(block),
                ..answer(MasterResponse::No)
            })
        }
        Some(mle) => {
            if mle.master == Some(self_node) {
                return Err(bug("we are master but have no resource"));
            }
            mle.maybe.insert(requester);
            Ok(answer(match mle.kind {
                MleKind::Block | MleKind::Migration => MasterResponse::No,
                MleKind::Master => MasterResponse::Maybe,
            }))
        }
    }
}

/// What to do about an assert-master message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AssertAnswer {
    /// The reply: `ASSERT_RESPONSE_*` bits, or -EINVAL, which makes the asserting node crash
    /// ("kill the caller").
    pub reply: i32,
    /// The resource's new owner.
    pub set_owner: Option<u8>,
    /// A migration ends: clear the resource's MIGRATING state.
    pub clear_migrating: bool,
    /// The entry's master is now known: record it, wake its waiters, unlink the entry.
    pub finish_mle: bool,
    /// Mark the resource SETREF_INPROG until the reply is sent (a deref must wait).
    pub setref_inprog: bool,
}

/// `dlm_assert_master_handler`: node `self_node` hears that `assert.node_idx` masters
/// `assert.name`. `res` is our resource of that name and `mle` our entry, if any. An assert
/// whose name does not decode is answered 0 by the caller. A state the kernel treats as
/// impossible (another owner while we have no entry) is an error.
pub fn answer_assert_master(
    self_node: u8,
    assert: &AssertMaster,
    res: Option<&ResourceMastery>,
    mle: Option<&Mle>,
) -> Result<AssertAnswer, Error> {
    const EINVAL: i32 = -22;
    let from = assert.node_idx;
    if let Some(m) = mle {
        if m.kind == MleKind::Migration
            && assert.flags & ASSERT_MASTER_MLE_CLEANUP == 0
            && assert.flags & ASSERT_MASTER_FINISH_MIGRATION == 0
        {
            // A migration only ends with the new master's FINISH_MIGRATION assert.
            return Ok(AssertAnswer::default());
        }
    }
    let kill = AssertAnswer {
        reply: EINVAL,
        ..AssertAnswer::default()
    };
    if let Some(r) = res {
        if r.recovering {
            return Ok(kill);
        }
        match mle {
            None => {
                if r.owner.is_some_and(|o| o != from) {
                    return Err(Error::Mastery {
                        name: assert.name,
                        reason: "assert from a node that is not the known owner",
                    });
                }
            }
            Some(m) if m.kind != MleKind::Migration => match r.owner {
                Some(o) if o == from => {}
                Some(_) => return Ok(kill),
                None if !r.in_progress => return Ok(kill),
                None => {}
            },
            Some(m) => {
                if m.new_master != Some(from) {
                    return Ok(kill);
                }
            }
        }
    }
    let mut out = AssertAnswer {
        setref_inprog: res.is_some(),
        ..AssertAnswer::default()
    };
    if let Some(m) = mle {
        // Our own mastery attempt reached other nodes: they hold entries the new master must
        // clear by asserting to everyone.
        if m.kind == MleKind::Master && m.response.iter().any(|n| n != self_node && n != from) {
            out.reply |= ASSERT_RESPONSE_REASSERT;
        }
        out.finish_mle = true;
        if res.is_some() {
            if m.kind == MleKind::Migration {
                out.set_owner = m.new_master;
                out.clear_migrating = true;
            } else {
                out.set_owner = Some(from);
            }
            out.reply |= ASSERT_RESPONSE_MASTERY_REF;
        }
    }
    Ok(out)
}
