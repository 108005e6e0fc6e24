//! A [`RecoveryStore`] over plain lock-resource engines: the resource table of one node as
//! recovery sees it (owner, RECOVERING and RECOVERY_WAITING, refmap, the master's queues, the
//! node's own locks on resources mastered elsewhere). The simulator, the recovery tests and
//! the benchmark run [`crate::recovery::Recovery`] over it; the domain core implements the
//! same trait over its own table, following what this one does.

use std::collections::BTreeMap;

use crate::lockres::{Delivery, LockResource, Migrated};
use crate::migration::{is_migratable, pack_migration, pick_target, MigrationStore};
use crate::recovery::{pack_lockres, sender_lvb, MresHeader, RecoveryStore};
use crate::wire::{
    LockMode, LockName, Lvb, MigLockres, MigratableLock, NodeMap, QueueKind, LVB_LEN,
    MRES_MIGRATION, MRES_RECOVERY, NODE_UNKNOWN,
};
use crate::Error;

/// One resource in a [`MemStore`].
#[derive(Debug, Clone)]
pub struct MemRes {
    /// The master as this node knows it; `None` when unknown.
    pub owner: Option<u8>,
    /// The owner died and recovery has not finished (`DLM_LOCK_RES_RECOVERING`).
    pub recovering: bool,
    /// A dead node's locks were removed here; grants wait for the end of recovery
    /// (`DLM_LOCK_RES_RECOVERY_WAITING`).
    pub recovery_waiting: bool,
    /// Being handed to another master (`DLM_LOCK_RES_MIGRATING`).
    pub migrating: bool,
    /// Nodes holding a reference (meaningful on the master).
    pub refmap: NodeMap,
    /// The queues, when this node masters the resource or rebuilds it as recovery master.
    pub engine: Option<LockResource>,
    /// This node's locks while another node masters the resource, with the value block each
    /// lock's status block holds.
    pub own: Vec<(MigratableLock, Lvb)>,
}

impl MemRes {
    /// A resource this node masters.
    pub fn mastered(me: u8, engine: LockResource, refmap: NodeMap) -> MemRes {
        MemRes {
            owner: Some(me),
            recovering: false,
            recovery_waiting: false,
            migrating: false,
            refmap,
            engine: Some(engine),
            own: Vec::new(),
        }
    }

    /// A resource `owner` masters, on which this node holds `own` (empty: only a reference).
    pub fn remote(owner: u8, own: Vec<(MigratableLock, Lvb)>) -> MemRes {
        MemRes {
            owner: Some(owner),
            recovering: false,
            recovery_waiting: false,
            migrating: false,
            refmap: NodeMap::new(),
            engine: None,
            own,
        }
    }
}

/// The resource table of one node. See the module documentation.
#[derive(Debug, Clone)]
pub struct MemStore {
    me: u8,
    res: BTreeMap<LockName, MemRes>,
    next_mig_cookie: u64,
    /// ASTs and BASTs the end of recovery released, for the caller to deliver.
    deliveries: Vec<(LockName, Delivery)>,
}

impl MemStore {
    /// An empty table for node `me`.
    pub fn new(me: u8) -> MemStore {
        MemStore {
            me,
            res: BTreeMap::new(),
            next_mig_cookie: 1,
            deliveries: Vec::new(),
        }
    }

    /// The node this table belongs to.
    pub fn node(&self) -> u8 {
        self.me
    }

    /// Adds or replaces a resource.
    pub fn insert(&mut self, name: LockName, res: MemRes) {
        self.res.insert(name, res);
    }

    /// One resource.
    pub fn get(&self, name: &LockName) -> Option<&MemRes> {
        self.res.get(name)
    }

    /// Every resource, by name.
    pub fn resources(&self) -> impl Iterator<Item = (&LockName, &MemRes)> {
        self.res.iter()
    }

    /// How many resources this node masters.
    pub fn mastered_count(&self) -> usize {
        self.res
            .values()
            .filter(|r| r.owner == Some(self.me) && r.engine.is_some())
            .count()
    }

    /// Takes the deliveries (grants, BASTs) that the end of recovery released.
    pub fn take_deliveries(&mut self) -> Vec<(LockName, Delivery)> {
        std::mem::take(&mut self.deliveries)
    }

    /// A grant reached this node's lock `cookie` on `name` (the proxy AST): it is granted in
    /// `mode`, with the value block when it asked for it. Unknown locks are ignored.
    pub fn apply_ast(&mut self, name: &LockName, cookie: u64, mode: LockMode, lvb: Option<Lvb>) {
        let Some(res) = self.res.get_mut(name) else {
            return;
        };
        if let Some((ml, l)) = res.own.iter_mut().find(|(m, _)| m.cookie == cookie) {
            ml.list = QueueKind::Granted;
            ml.type_ = Some(mode);
            ml.convert_type = None;
            if let Some(v) = lvb {
                *l = v;
            }
        }
    }

    /// `node` left the domain cleanly: its references go.
    pub fn forget_node(&mut self, node: u8) {
        for r in self.res.values_mut() {
            r.refmap.remove(node);
        }
    }

    fn run_queues(
        deliveries: &mut Vec<(LockName, Delivery)>,
        name: LockName,
        e: &mut LockResource,
    ) {
        e.shuffle();
        let mut out = Vec::new();
        e.flush(&mut out);
        deliveries.extend(out.into_iter().map(|d| (name, d)));
    }
}

impl RecoveryStore for MemStore {
    fn local_cleanup(&mut self, dead: u8) {
        let me = self.me;
        for res in self.res.values_mut() {
            res.refmap.remove(dead);
            match res.owner {
                Some(o) if o == me => {
                    if let Some(e) = res.engine.as_mut() {
                        let removed = e.remove_node_locks(dead);
                        if removed.held_ex {
                            e.invalidate_lvb();
                        }
                        if removed.count > 0 {
                            res.recovery_waiting = true;
                        }
                    }
                }
                Some(o) if o == dead => {
                    res.recovering = true;
                }
                _ => {}
            }
        }
    }

    fn recovery_data(&mut self, dead: u8, out: &mut Vec<MigLockres>) {
        let me = self.me;
        for (name, res) in self.res.iter() {
            let of_dead = match res.owner {
                Some(o) => o == dead,
                None => res.recovering,
            };
            if !of_dead || !res.recovering || res.engine.is_some() {
                continue;
            }
            let lvb = match sender_lvb(*name, res.own.iter().map(|(m, l)| (m, l))) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(node = me, lock = %name, "o2dlm recovery: {e}; sending no value block");
                    [0; crate::wire::LVB_LEN]
                }
            };
            let locks: Vec<MigratableLock> = res.own.iter().map(|(m, _)| *m).collect();
            let master = res.owner.unwrap_or(NODE_UNKNOWN);
            let head = MresHeader {
                sender: me,
                master,
                flags: MRES_RECOVERY,
                name: *name,
                lvb,
            };
            pack_lockres(head, &locks, &mut self.next_mig_cookie, out);
        }
    }

    fn rebuild(&mut self, from: u8, mres: &MigLockres) -> Result<(), Error> {
        let me = self.me;
        let res = self.res.entry(mres.name).or_insert_with(|| MemRes {
            owner: None,
            recovering: true,
            recovery_waiting: false,
            migrating: false,
            refmap: NodeMap::new(),
            engine: None,
            own: Vec::new(),
        });
        res.owner = Some(me);
        res.recovering = true;
        let engine = res
            .engine
            .get_or_insert_with(|| LockResource::new(mres.name));
        // This node's own records are new on the rebuilt queues, like anyone else's.
        let local = if from == me { NODE_UNKNOWN } else { me };
        for ml in &mres.locks {
            match engine.add_migrated_lock(local, mres.flags, &mres.lvb, ml)? {
                Migrated::Reference(n) | Migrated::Created(n) if n != me => res.refmap.insert(n),
                _ => {}
            }
        }
        if from == me {
            res.own.clear();
        }
        Ok(())
    }

    fn finish(&mut self, dead: u8, new_master: u8) -> usize {
        let me = self.me;
        let mut moved = 0;
        for (name, res) in self.res.iter_mut() {
            // The dead node's resources, and those rebuilt here; not those of another dead
            // node still waiting for its own recovery.
            let of_dead = res.owner == Some(dead)
                || (res.recovering && res.owner == Some(me) && new_master == me);
            if of_dead {
                moved += 1;
                res.recovering = false;
                res.owner = Some(new_master);
                if new_master != me {
                    // Queues rebuilt here for a recovery that another master finished.
                    res.engine = None;
                }
            }
            if of_dead || res.recovery_waiting {
                res.recovery_waiting = false;
                if let Some(e) = res.engine.as_mut() {
                    Self::run_queues(&mut self.deliveries, *name, e);
                }
            }
        }
        moved
    }
}

impl MigrationStore for MemStore {
    fn mastered(&self, out: &mut Vec<LockName>) {
        let me = self.me;
        out.extend(
            self.res
                .iter()
                .filter(|(_, r)| r.owner == Some(me))
                .map(|(n, _)| *n),
        );
    }

    fn migration_target(&self, name: &LockName, exiting: &NodeMap) -> Option<u8> {
        let me = self.me;
        let r = self.res.get(name)?;
        let e = r.engine.as_ref()?;
        if r.owner != Some(me) || r.migrating || r.recovering || !is_migratable(me, e, &r.refmap) {
            return None;
        }
        pick_target(me, e, &r.refmap, exiting)
    }

    fn migration_data(&mut self, name: &LockName, out: &mut Vec<MigLockres>) {
        let me = self.me;
        let Some(r) = self.res.get_mut(name) else {
            return;
        };
        let Some(e) = r.engine.as_ref() else { return };
        r.migrating = true;
        pack_migration(me, e, &mut self.next_mig_cookie, out);
    }

    fn migration_aborted(&mut self, name: &LockName) {
        if let Some(r) = self.res.get_mut(name) {
            r.migrating = false;
        }
    }

    fn handed_over(&mut self, name: &LockName, new_master: u8) {
        if let Some(r) = self.res.get_mut(name) {
            // No local lock was on it (that is what made it migratable): nothing stays here.
            r.engine = None;
            r.refmap = NodeMap::new();
            r.migrating = false;
            r.owner = Some(new_master);
        }
    }

    fn receive_migrated(
        &mut self,
        from: u8,
        mres: &MigLockres,
        members: &NodeMap,
    ) -> Result<(), Error> {
        let me = self.me;
        let res = self.res.entry(mres.name).or_insert_with(|| MemRes {
            owner: None,
            recovering: false,
            recovery_waiting: false,
            migrating: true,
            refmap: NodeMap::new(),
            engine: None,
            own: Vec::new(),
        });
        res.migrating = true;
        res.owner = Some(me);
        if res.engine.is_none() {
            // This node's own locks are already on the queues when the records arrive.
            let mut e = LockResource::new(mres.name);
            for (ml, _) in &res.own {
                e.add_migrated_lock(NODE_UNKNOWN, MRES_MIGRATION, &[0; LVB_LEN], ml)?;
            }
            res.engine = Some(e);
        }
        let Some(engine) = res.engine.as_mut() else {
            return Ok(());
        };
        let mut dead_ex = false;
        for ml in &mres.locks {
            if !members.contains(ml.node) {
                dead_ex |= ml.list != QueueKind::Blocked && ml.type_ == Some(LockMode::Ex);
                continue;
            }
            match engine.add_migrated_lock(me, mres.flags, &mres.lvb, ml)? {
                Migrated::Reference(n) | Migrated::Created(n) if n != me => res.refmap.insert(n),
                _ => {}
            }
        }
        // Migration carries the master's value block as it is.
        engine.set_lvb(mres.lvb);
        if dead_ex {
            engine.invalidate_lvb();
        }
        if mres.flags & crate::wire::MRES_ALL_DONE != 0 {
            res.own.clear();
        }
        let _ = from;
        Ok(())
    }

    fn add_ref(&mut self, name: &LockName, node: u8) {
        if let Some(r) = self.res.get_mut(name) {
            r.refmap.insert(node);
        }
    }

    fn finish_migration(&mut self, name: &LockName) {
        if let Some(r) = self.res.get_mut(name) {
            r.migrating = false;
            if let Some(e) = r.engine.as_mut() {
                Self::run_queues(&mut self.deliveries, *name, e);
            }
        }
    }

    fn migrate_request(
        &mut self,
        name: &LockName,
        old_master: u8,
        new_master: u8,
    ) -> Result<bool, i32> {
        let _ = (old_master, new_master);
        match self.res.get_mut(name) {
            Some(r) if r.recovering => Err(crate::wire::errno::EINVAL),
            Some(r) => {
                r.migrating = true;
                // No mastery in progress here (this table has no master list entries).
                Ok(false)
            }
            None => Ok(false),
        }
    }

    fn new_owner(&mut self, name: &LockName, owner: u8) -> bool {
        let Some(r) = self.res.get_mut(name) else {
            return false;
        };
        r.owner = Some(owner);
        r.migrating = false;
        true
    }
}
