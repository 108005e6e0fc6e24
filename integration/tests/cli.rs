//! `o2cb-sim` (the same code as `o2cb sim`) as a user runs it: a summary
//! table and exit 0 for a clean run; for a violation, exit 1 with the seed,
//! the broken rule, the trace window and a replay command that, when run,
//! reproduces the same violation.

use std::process::Command;

fn sim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_o2cb-sim"))
        .args(args)
        .output()
        .expect("o2cb-sim runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_clean_run_prints_the_summary_table_and_exits_zero() {
    let (code, out, err) = sim(&[
        "--nodes",
        "4",
        "--seed",
        "3",
        "--faults",
        "crash,partition",
        "--duration",
        "600s",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("fault plan for seed 3"), "{out}");
    assert!(out.contains("node  boots crashes fences"), "{out}");
    for n in 0..4 {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("n{n} "))),
            "no row for n{n}:\n{out}"
        );
    }
    assert!(
        out.contains("hb-rules") && out.contains("no rule broken"),
        "{out}"
    );
}

#[test]
fn a_violation_gives_seed_trace_window_and_a_replay_that_reproduces_it() {
    let (code, out, _) = sim(&[
        "--nodes",
        "5",
        "--seeds",
        "0..4",
        "--faults",
        "partition",
        "--sabotage",
        "wrong-side-survives",
    ]);
    assert_eq!(code, 1, "{out}");
    let violation = out
        .lines()
        .find(|l| l.starts_with("VIOLATION (seed "))
        .expect("a VIOLATION line");
    assert!(violation.contains("quorum"), "{violation}");
    assert!(
        out.contains("SABOTAGE") && out.contains("FENCE (quorum)"),
        "trace window lacks the fence:\n{out}"
    );
    let replay = out
        .lines()
        .find_map(|l| l.strip_prefix("replay: o2cb sim "))
        .expect("a replay command");
    // Replaying prints the same violation (with the full trace, this time).
    let args: Vec<&str> = replay.split_whitespace().collect();
    let (code2, out2, _) = sim(&args);
    assert_eq!(code2, 1);
    let rule = violation
        .split_once("): ")
        .map(|(_, r)| r)
        .unwrap_or(violation);
    assert!(out2.contains(rule), "replay did not reproduce {rule:?}");
    assert!(
        out2.contains("timer hb.iteration"),
        "replay should print the readable trace"
    );
}

#[test]
fn bad_arguments_get_a_clear_error_and_exit_two() {
    let (code, _, err) = sim(&["--faults", "meteor"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown fault kind \"meteor\""), "{err}");
    let (code, _, err) = sim(&["--nodes", "256"]);
    assert_eq!(code, 2);
    assert!(err.contains("1 to 255 nodes"), "{err}");
}

#[test]
fn two_processes_print_the_same_trace_for_the_same_seed() {
    // Hash maps in one process are seeded differently from another's: the
    // trace must not depend on that.
    let run = || {
        let (code, out, _) = sim(&[
            "--nodes", "4", "--seed", "21", "--faults", "all", "--trace", "compact",
        ]);
        assert_eq!(code, 0, "{out}");
        // Everything but the summary line, which reports wall-clock time.
        out.lines()
            .filter(|l| !l.starts_with("seed 21:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (a, b) = (run(), run());
    assert!(a.lines().count() > 10_000);
    assert_eq!(a, b);
}

#[test]
fn the_trace_can_be_limited_to_nodes_and_a_time_window() {
    let (code, out, _) = sim(&[
        "--nodes",
        "3",
        "--seed",
        "2",
        "--faults",
        "none",
        "--duration",
        "60s",
        "--trace",
        "--trace-nodes",
        "1",
        "--trace-from",
        "10",
        "--trace-to",
        "20",
    ]);
    assert_eq!(code, 0, "{out}");
    let traced: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
    assert!(!traced.is_empty());
    for l in traced {
        assert!(l.contains("] n1 "), "not node 1: {l}");
        let t: f64 = l[1..13].trim().parse().expect("a timestamp");
        assert!((10.0..=20.0).contains(&t), "outside the window: {l}");
    }
}

const LOCK_RUN: [&str; 18] = [
    "--nodes",
    "3",
    "--seed",
    "1",
    "--workload",
    "locks",
    "--duration",
    "60s",
    "--hb-period-ms",
    "200",
    "--dead-threshold",
    "7",
    "--idle-timeout-ms",
    "3000",
    "--keepalive-ms",
    "500",
    "--reconnect-ms",
    "500",
];

#[test]
fn the_lock_workload_shows_dlm_grants_in_the_trace_and_its_checkers_in_the_table() {
    let mut args = LOCK_RUN.to_vec();
    args.extend(["--faults", "none", "--trace", "readable", "--trace-to", "8"]);
    let (code, out, err) = sim(&args);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in [
        "dlm: joined domain simdomain",
        "dlm: GRANT ",
        "o2dlm → n",
        "dlm-locks",
        "dlm-progress",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
}

#[test]
fn a_lock_sabotage_is_reported_with_its_checker_and_exit_one() {
    let mut args = LOCK_RUN.to_vec();
    args.extend(["--faults", "none", "--sabotage", "dlm-bypass"]);
    let (code, out, err) = sim(&args);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("dlm-exclusion: mutual exclusion"), "{out}");
}
