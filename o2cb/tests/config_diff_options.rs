//! Differential test of option parsing: random argument lists made of every
//! spelling getopt_long knows (abbreviations, `--opt=value`, clusters of
//! short options, `--`, `-`, missing and unexpected arguments), for the global
//! options and for the options of `add-node` and `list-*`, run through
//! ocfs2-tools' `o2cb` and ours. Exit code, stdout, stderr and the resulting
//! file must be the same.

mod config_common;

use config_common::{oracle, ours, prop_assert_same_outcome, run_raw};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const START: &str = "cluster:\n\tname = c\n\theartbeat_mode = local\n\tnode_count = 1\n\n\
node:\n\tcluster = c\n\tnumber = 0\n\tip_port = 7777\n\tip_address = 127.0.0.1\n\tname = n0\n\n";

fn tokens(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(pool), 0..max)
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

/// Runs both tools in fresh directories holding [`START`] as `c.conf`, with
/// `args` as the whole command line (no `--config-file` is added).
fn compare(args: &[String]) -> Result<(), TestCaseError> {
    let (a, b) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    for d in [&a, &b] {
        std::fs::write(d.path().join("c.conf"), START).expect("write config");
    }
    let (t, o) = (
        run_raw(&oracle(), a.path(), args),
        run_raw(&ours(), b.path(), args),
    );
    let ctx = format!("{args:?}\ntheirs: {t:?}\nours:   {o:?}");
    prop_assert_same_outcome(&t, &o, [a.path(), b.path()], "c.conf", &ctx)
}

fn check_all(strategy: impl Strategy<Value = Vec<String>>, seed: u64) {
    oracle();
    let config = Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    };
    if let Err(e) = TestRunner::new(config).run(&strategy, |args| compare(&args)) {
        panic!("{e}");
    }
}

#[test]
fn global_options_parse_like_ocfs2_tools() {
    // Only reading commands: without --config-file the tools read (never
    // write) /etc/ocfs2/cluster.conf.
    const POOL: &[&str] = &[
        "-v",
        "-vv",
        "-h",
        "-V",
        "-x",
        "-hv",
        "-vx",
        "-:",
        "--verbose",
        "--verb",
        "--ver",
        "--v",
        "--version",
        "--vers",
        "--help",
        "--he",
        "--help=1",
        "--config-file",
        "--config-file=c.conf",
        "--conf=c.conf",
        "--c",
        "c.conf",
        "--config-file=",
        "--",
        "-",
        "--bogus",
        "--bogus=1",
        "list-clusters",
        "list-nodes",
        "c",
        "no-such-command",
    ];
    check_all(tokens(POOL, 6), 0x6107_0001);
}

#[test]
fn add_node_options_parse_like_ocfs2_tools() {
    const POOL: &[&str] = &[
        "--ip",
        "--ip=127.0.0.9",
        "--i",
        "127.0.0.8",
        "--ip=",
        "--port",
        "--port=7001",
        "--p",
        "9",
        "--po=x",
        "--number",
        "--number=3",
        "--nu",
        "--n=254",
        "--n=255",
        "-5",
        "--",
        "-",
        "-x",
        "-ix",
        "--=x",
        "--bogus",
        "--oneline",
        "c",
        "n1",
        "n2",
        "zz",
    ];
    let strategy = tokens(POOL, 7).prop_map(|rest| {
        let mut v = vec!["--config-file=c.conf".to_string(), "add-node".to_string()];
        v.extend(rest);
        v
    });
    check_all(strategy, 0x6107_0002);
}

#[test]
fn list_options_parse_like_ocfs2_tools() {
    const POOL: &[&str] = &[
        "--oneline",
        "--one",
        "--o",
        "--oneline=1",
        "--onel=",
        "-o",
        "-",
        "--",
        "--x",
        "c",
        "zz",
        "n0",
    ];
    let strategy = (
        prop::sample::select(vec!["list-cluster", "list-nodes", "list-heartbeats"]),
        tokens(POOL, 5),
    )
        .prop_map(|(cmd, rest)| {
            let mut v = vec!["--config-file=c.conf".to_string(), cmd.to_string()];
            v.extend(rest);
            v
        });
    check_all(strategy, 0x6107_0003);
}
