//! Benchmarks of the lock-resource engine, each against a baseline measured in the same run
//! (these machines are noisy): `cargo bench -p o2dlm --bench lockres`.
//!
//! 1. Uncontended lock + unlock on one resource (request EX, flush the grant AST, unlock),
//!    against a `std::sync::Mutex` lock + unlock pair. This is the engine's share of the
//!    locally-mastered lock+unlock that the Rust API will offer (target: >= 1M pairs/s).
//! 2. EX hand-off between two lock owners on one resource (request blocked, BAST, unlock,
//!    shuffle, grant AST), against the same mutex pair.
//! 3. Memory per idle resource: one million resources with 20-byte names in a
//!    `HashMap<LockName, LockResource>`, counted by a counting allocator, against the same
//!    map holding `()` (target: one million resources in at most 512 MiB); fresh, and after
//!    one lock/unlock with and without `shrink_if_idle`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use o2dlm::lockres::{Delivery, LockId, LockResource};
use o2dlm::wire::{LkmFlags, LockMode, LockName};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: usize = 5;

/// Best-of-`ROUNDS` operations per second of `f`, which performs `n` operations.
fn rate(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        f(n);
        best = best.min(t.elapsed());
    }
    n as f64 / best.as_secs_f64()
}

fn mutex_pairs(n: u64) {
    let m = Mutex::new(0u64);
    for _ in 0..n {
        *black_box(&m).lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }
    black_box(m);
}

fn lock_unlock_pairs(n: u64) {
    let mut r = LockResource::new(LockName::new(b"bench-uncontended").unwrap());
    let mut out: Vec<Delivery> = Vec::with_capacity(4);
    for i in 0..n {
        let id = LockId {
            node: 1,
            cookie: (1 << 56) | (i + 1),
        };
        r.request(id, LockMode::Ex, LkmFlags::empty()).unwrap();
        r.shuffle();
        r.flush(&mut out);
        r.unlock(id, LkmFlags::empty(), None).unwrap();
        r.shuffle();
        black_box(&out);
        out.clear();
    }
}

fn handoffs(n: u64) {
    let mut r = LockResource::new(LockName::new(b"bench-handoff").unwrap());
    let mut out: Vec<Delivery> = Vec::with_capacity(4);
    let mut holder = LockId { node: 1, cookie: 1 };
    r.request(holder, LockMode::Ex, LkmFlags::empty()).unwrap();
    r.flush(&mut out);
    for i in 0..n {
        let next = LockId {
            node: 1 + (i % 2 == 0) as u8,
            cookie: i + 2,
        };
        r.request(next, LockMode::Ex, LkmFlags::empty()).unwrap();
        r.shuffle();
        r.flush(&mut out); // BAST to the holder
        r.unlock(holder, LkmFlags::VALBLK, Some(&[i as u8; 64]))
            .unwrap();
        r.shuffle();
        r.flush(&mut out); // grant AST to the next owner
        black_box(&out);
        out.clear();
        holder = next;
    }
}

fn bytes_per_entry<V>(n: usize, make: impl Fn(&LockName) -> V) -> f64 {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut map: HashMap<LockName, V> = HashMap::new();
    for i in 0..n {
        let name = LockName::new(format!("M{i:019}").as_bytes()).unwrap();
        let v = make(&name);
        map.insert(name, v);
    }
    let used = ALLOCATED.load(Ordering::Relaxed) - before;
    black_box(&map);
    used as f64 / n as f64
}

fn main() {
    // cargo passes --bench; any other argument is a filter we do not support.
    let n = 2_000_000;
    let base = rate(n, mutex_pairs);
    let pairs = rate(n, lock_unlock_pairs);
    println!(
        "uncontended lock+unlock: {:.0} pairs/s; Mutex lock+unlock baseline {:.0} pairs/s; ratio {:.3}x",
        pairs,
        base,
        pairs / base
    );
    let h = rate(n / 2, handoffs);
    println!(
        "EX hand-off (BAST, unlock with LVB, grant): {:.0} hand-offs/s; ratio to Mutex pair {:.3}x",
        h,
        h / base
    );
    let count = 1_000_000;
    let unit = bytes_per_entry(count, |_| ());
    let full = bytes_per_entry(count, |name| LockResource::new(*name));
    let mib = |b: f64| b * count as f64 / (1024.0 * 1024.0);
    println!(
        "memory per idle resource: {:.0} bytes (map of names alone {:.0} bytes; size_of LockResource {} bytes); 1M resources = {:.0} MiB",
        full,
        unit,
        std::mem::size_of::<LockResource>(),
        mib(full)
    );
    // Resources that were locked and unlocked once, then went idle.
    let used = |shrink: bool| {
        move |name: &LockName| {
            let mut r = LockResource::new(*name);
            let id = LockId { node: 1, cookie: 1 };
            r.request(id, LockMode::Pr, LkmFlags::empty()).unwrap();
            let mut out = Vec::new();
            r.flush(&mut out);
            r.unlock(id, LkmFlags::empty(), None).unwrap();
            r.shuffle();
            if shrink {
                r.shrink_if_idle();
            }
            r
        }
    };
    let kept = bytes_per_entry(count, used(false));
    let shrunk = bytes_per_entry(count, used(true));
    println!(
        "memory per resource idle after one lock/unlock: {:.0} bytes as left ({:.0} MiB per million), {:.0} bytes after shrink_if_idle ({:.0} MiB per million)",
        kept,
        mib(kept),
        shrunk,
        mib(shrunk)
    );
}
