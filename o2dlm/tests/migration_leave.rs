//! Migration on a clean leave: a leaving node hands every resource it masters to the kernel's
//! choice of target with MIG_LOCKRES, MIGRATE_REQUEST and ASSERT_MASTER, locks and value
//! blocks intact, and a node with nothing to hand over just leaves.

use o2dlm::lockres::LockResource;
use o2dlm::migration::{is_migratable, pick_target};
use o2dlm::recovery_cluster::RecoCluster;
use o2dlm::wire::{
    DomainName, LockMode, LockName, MigratableLock, NodeMap, QueueKind, MRES_MIGRATION,
    NODE_UNKNOWN,
};

use LockMode::{Ex, Pr};
use QueueKind::{Blocked, Granted};

fn name(s: &str) -> LockName {
    LockName::new(s.as_bytes()).unwrap()
}

fn cluster(nodes: &[u8]) -> RecoCluster {
    RecoCluster::new(DomainName::new(b"mig").unwrap(), nodes, 2)
}

fn master_of(c: &RecoCluster, res: &str) -> Vec<(u8, Option<u8>)> {
    c.nodes()
        .iter()
        .filter_map(|(&n, node)| node.store.get(&name(res)).map(|r| (n, r.owner)))
        .collect()
}

#[test]
fn a_leaving_master_hands_each_resource_to_the_kernels_target() {
    let mut c = cluster(&[1, 2, 3]);
    c.add_resource(
        name("held"),
        3,
        &[(2, Ex, Granted, None), (1, Pr, Blocked, None)],
        [4; 64],
        &[],
    );
    c.add_resource(
        name("read"),
        3,
        &[(1, Pr, Granted, None), (2, Pr, Granted, None)],
        [8; 64],
        &[],
    );
    c.add_resource(name("ref"), 3, &[], [0; 64], &[2]);
    c.leave(3);
    assert!(c.run_until_quiet(60_000));
    assert_eq!(c.check(), Vec::<String>::new());
    assert!(c.left().contains(&3));
    assert!(!c.nodes().contains_key(&3));

    // Targets: the first lock's node; for a reference-only resource the lowest refmap node.
    let mut moved: Vec<(String, u8)> = c
        .migrations
        .iter()
        .map(|(_, old, n, new)| {
            assert_eq!(*old, 3);
            (n.to_string(), *new)
        })
        .collect();
    moved.sort();
    assert_eq!(
        moved,
        vec![
            ("held".to_string(), 2),
            ("read".to_string(), 1),
            ("ref".to_string(), 2)
        ]
    );
    // Every member agrees on the new owners.
    assert_eq!(master_of(&c, "held"), vec![(1, Some(2)), (2, Some(2))]);
    assert_eq!(master_of(&c, "read"), vec![(1, Some(1)), (2, Some(1))]);
    // Queues and value blocks came across unchanged; the waiter still waits.
    let held = c.nodes()[&2].store.get(&name("held")).unwrap();
    let e = held.engine.as_ref().unwrap();
    let q: Vec<(u8, LockMode, QueueKind)> =
        e.locks().map(|(q, l)| (l.id.node, l.mode, q)).collect();
    assert_eq!(q, vec![(2, Ex, Granted), (1, Pr, Blocked)]);
    assert_eq!(*e.lvb(), [4; 64]);
    assert!(held.refmap.contains(1));
    let read = c.nodes()[&1].store.get(&name("read")).unwrap();
    assert_eq!(*read.engine.as_ref().unwrap().lvb(), [8; 64]);
    assert!(read.refmap.contains(2));
    // No recovery ran: this was a clean leave.
    assert!(c.log.is_empty(), "{:?}", c.log);
}

#[test]
fn a_node_that_masters_nothing_just_leaves() {
    let mut c = cluster(&[1, 2, 3]);
    c.add_resource(
        name("elsewhere"),
        1,
        &[(2, Pr, Granted, None)],
        [1; 64],
        &[],
    );
    c.leave(3);
    assert!(c.left().contains(&3));
    assert!(c.migrations.is_empty());
    assert!(c.run_until_quiet(10_000));
    assert_eq!(c.check(), Vec::<String>::new());
}

#[test]
fn the_target_dying_mid_migration_sends_the_resource_elsewhere() {
    let mut c = cluster(&[1, 2, 3, 4]);
    c.add_resource(
        name("r"),
        4,
        &[
            (1, Pr, Granted, None),
            (2, Pr, Granted, None),
            (3, Pr, Blocked, None),
        ],
        [6; 64],
        &[],
    );
    c.leave(4);
    // The first target (node 1, first granted lock) dies before it asserts.
    c.run_until(c.now() + 1);
    c.kill(1, |_| 100);
    assert!(c.run_until_quiet(120_000));
    assert_eq!(c.check(), Vec::<String>::new());
    assert!(c.left().contains(&4));
    let owners = master_of(&c, "r");
    assert!(owners.iter().all(|&(_, o)| o == Some(2)), "{owners:?}");
    let r = c.nodes()[&2].store.get(&name("r")).unwrap();
    let q: Vec<(u8, QueueKind)> = r
        .engine
        .as_ref()
        .unwrap()
        .locks()
        .map(|(q, l)| (l.id.node, q))
        .collect();
    // Node 1's lock went with it; node 3 still waits... or is granted PR next to node 2.
    assert!(q.contains(&(2, Granted)), "{q:?}");
    assert!(q.iter().any(|&(n, _)| n == 3), "{q:?}");
    assert!(!q.iter().any(|&(n, _)| n == 1), "{q:?}");
}

fn engine(locks: &[(u8, LockMode, QueueKind)]) -> LockResource {
    let mut e = LockResource::new(name("t"));
    for (i, &(node, mode, list)) in locks.iter().enumerate() {
        let ml = MigratableLock {
            cookie: (u64::from(node) << 56) | (i as u64 + 1),
            list,
            flags: 0,
            type_: Some(mode),
            convert_type: None,
            highest_blocked: None,
            node,
        };
        e.add_migrated_lock(NODE_UNKNOWN, MRES_MIGRATION, &[0; 64], &ml)
            .unwrap();
    }
    e
}

#[test]
fn migratable_and_target_follow_the_kernels_rules() {
    let none = NodeMap::new();
    let mut refs = NodeMap::new();
    refs.insert(5);
    refs.insert(2);
    // A local lock pins the resource; no user at all makes it purgeable, not migratable.
    assert!(!is_migratable(
        3,
        &engine(&[(3, Pr, Granted), (1, Pr, Granted)]),
        &none
    ));
    assert!(!is_migratable(3, &engine(&[]), &none));
    assert!(is_migratable(3, &engine(&[]), &refs));
    assert!(is_migratable(3, &engine(&[(1, Pr, Blocked)]), &none));
    // First lock in granted, converting, blocked order; exiting nodes skipped; then refmap.
    let e = engine(&[(4, Ex, Blocked), (1, Pr, Granted), (2, Pr, Granted)]);
    assert_eq!(pick_target(3, &e, &none, &none), Some(1));
    let mut exiting = NodeMap::new();
    exiting.insert(1);
    assert_eq!(pick_target(3, &e, &none, &exiting), Some(2));
    exiting.insert(2);
    exiting.insert(4);
    assert_eq!(pick_target(3, &e, &refs, &exiting), Some(5));
    assert_eq!(pick_target(3, &engine(&[]), &refs, &none), Some(2));
}
