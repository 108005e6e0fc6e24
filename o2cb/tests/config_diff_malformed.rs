//! Differential test on hand-written cluster.conf files, most of them broken:
//! ocfs2-tools' `o2cb` and ours must accept and refuse the same ones, list the
//! accepted ones identically and rewrite them byte for byte the same; our
//! refusals must name the file, the line and the problem.
//!
//! Where ocfs2-tools crashes (a `cluster:` stanza without `name`), we refuse
//! the file with an error instead.

mod config_common;

use config_common::{all_listings, oracle, ours, run, Run};

const H: &str = "cluster:\n\tname = c\n\tnode_count = 1\n\n";
const N: &str =
    "node:\n\tcluster = c\n\tname = n1\n\tnumber = 1\n\tip_address = 1.2.3.4\n\tip_port = 7777\n\n";

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let hn = |from: &str, to: &str| format!("{H}{}", N.replace(from, to)).into_bytes();
    let s = |t: &str| t.as_bytes().to_vec();
    vec![
        ("empty", s("")),
        ("valid", format!("{H}{N}").into_bytes()),
        ("only comments", s("#a\n#b")),
        ("blank lines only", s("\n\n  \n\t\n")),
        ("no final newline", s("cluster:\n\tname = c\n\tnode_count = 0")),
        ("NUL at line start ends the text", format!("{H}\0garbage\n{N}").into_bytes()),
        ("NUL inside a value", s("cluster:\n\tname = c\0x\n\tnode_count = 1\n")),
        ("NUL after '='", s("cluster:\n\tname = \0c\n\tnode_count = 1\n")),
        ("NUL inside a stanza name", s("clu\0ster:\n\tname = c\n\tnode_count = 1\n")),
        ("NUL after a name's first letter", s("c\0luster:\n\tname = c\n\tnode_count = 1\n")),
        ("CRLF line ends", H.replace('\n', "\r\n").into_bytes()),
        ("CR inside a value", s("cluster:\n\tname = c\r\n\tnode_count = 1\n")),
        ("'#' after leading whitespace", format!("{H}  # c\n").into_bytes()),
        ("'#' inside a value", s("cluster:\n\tname = c#x\n\tnode_count = 1\n")),
        ("comment inside a stanza", s("cluster:\n\tname = c\n# hi\n\tnode_count = 1\n")),
        ("missing '=' before a value", s("cluster:\n\tname c\n\tnode_count = 1\n")),
        ("missing '=' at line end", s("cluster:\n\tname\n\tnode_count = 1\n")),
        ("missing '=' at file end", s("cluster:\n\tname")),
        ("'=' at file end", s("cluster:\n\tname =")),
        ("attribute after a blank line", s("cluster:\n\tname = c\n\n\tnode_count = 1\n")),
        ("attribute after a whitespace-only line", s("cluster:\n\tname = c\n \t \n\tnode_count = 1\n")),
        ("attribute before any stanza", s("\tname = c\n")),
        ("space before ':'", s("cluster :\n\tname = c\n\tnode_count = 1\n")),
        ("whitespace after ':'", s("cluster: \t\n\tname = c\n\tnode_count = 1\n")),
        ("text after ':'", s("cluster: x\n\tname = c\n\tnode_count = 1\n")),
        ("header without ':'", s("cluster\n\tname = c\n\tnode_count = 1\n")),
        ("header at file end without ':'", s("cluster")),
        ("'-' in a stanza name", s("clu-ster:\n")),
        ("line starting with '-'", s("-cluster:\n")),
        ("digits as stanza name", s("123:\n\tx = 1\n")),
        ("unknown stanza type", format!("{H}foo:\n\tbar = 1\n\n").into_bytes()),
        ("unknown key", s("cluster:\n\tname = c\n\tnode_count = 1\n\tcolor = red\n")),
        ("repeated key, last wins", s("cluster:\n\tname = x\n\tname = c\n\tnode_count = 1\n")),
        ("key starting with a digit", s("cluster:\n\t9name = c\n\tname = c\n\tnode_count = 0\n")),
        ("'-' in a key", s("cluster:\n\tna-me = c\n")),
        ("space in a key", s("cluster:\n\tna me = c\n")),
        ("whitespace around '='", s("cluster:\n\tname\t  =c\n\tnode_count=0\n")),
        ("'=' inside a value", s("cluster:\n\tname = c=d\n\tnode_count = 0\n")),
        ("continuation line", s("cluster:\n\tname = c\\\nd\n\tnode_count = 1\n")),
        ("continued number", s("cluster:\n\tname = c\n\tnode_count = \\\n 5\n")),
        ("backslash inside a value", s("cluster:\n\tname = c\\d\n\tnode_count = 1\n")),
        ("backslash at file end", s("cluster:\n\tname = c\n\tnode_count = 1\\")),
        ("double backslash at line end", s("cluster:\n\tname = c\\\\\n\tnode_count = 1\n")),
        ("trailing whitespace", s("cluster:\n\tname = c  \t\n\tnode_count = 1 \n")),
        ("header right after an attribute", s("cluster:\n\tname = c\n\tnode_count = 0\ncluster:\n\tname = d\n\tnode_count = 0\n")),
        ("cluster without name", s("cluster:\n\tnode_count = 1\n")),
        ("cluster header alone", s("cluster:")),
        ("empty cluster name", s("cluster:\n\tname =\n\tnode_count = 0\n")),
        ("no node_count", s("cluster:\n\tname = c\n")),
        ("node_count -1", s("cluster:\n\tname = c\n\tnode_count = -1\n")),
        ("node_count -2", s("cluster:\n\tname = c\n\tnode_count = -2\n")),
        ("node_count +3", s("cluster:\n\tname = c\n\tnode_count = +3\n")),
        ("node_count in hex", s("cluster:\n\tname = c\n\tnode_count = 0x3\n")),
        ("node_count 2^32-1", s("cluster:\n\tname = c\n\tnode_count = 4294967295\n")),
        ("node_count 2^32", s("cluster:\n\tname = c\n\tnode_count = 4294967296\n")),
        ("node_count not the number of nodes", s("cluster:\n\tname = c\n\tnode_count = 7\n")),
        ("heartbeat_mode in capitals", s("cluster:\n\tname = c\n\tnode_count = 0\n\theartbeat_mode = GLOBAL\n")),
        ("unknown heartbeat_mode", s("cluster:\n\tname = c\n\tnode_count = 0\n\theartbeat_mode = disk\n")),
        ("empty heartbeat_mode", s("cluster:\n\tname = c\n\tnode_count = 0\n\theartbeat_mode =\n")),
        ("two clusters", format!("{H}cluster:\n\tname = d\n\tnode_count = 0\n\n{N}").into_bytes()),
        ("same cluster twice", format!("{H}{H}").into_bytes()),
        ("node of an unknown cluster", hn("cluster = c", "cluster = zz")),
        ("broken node of an unknown cluster", format!("{H}{}", N.replace("cluster = c", "cluster = zz").replace("number = 1", "number = x")).into_bytes()),
        ("node without cluster", hn("\tcluster = c\n", "")),
        ("node without name", hn("\tname = n1\n", "")),
        ("node with empty name", hn("name = n1", "name =")),
        ("node number not a number", hn("number = 1", "number = x")),
        ("node number 255", hn("number = 1", "number = 255")),
        ("node number 2^31-2", hn("number = 1", "number = 2147483646")),
        ("node number 2^31-1", hn("number = 1", "number = 2147483647")),
        ("node number -1", hn("number = 1", "number = -1")),
        ("node without number", hn("\tnumber = 1\n", "")),
        ("three-part address", hn("1.2.3.4", "1.2.3")),
        ("address with a leading zero", hn("1.2.3.4", "01.2.3.4")),
        ("address with trailing text", hn("1.2.3.4", "1.2.3.4 x")),
        ("node without address", hn("\tip_address = 1.2.3.4\n", "")),
        ("port not a number", hn("ip_port = 7777", "ip_port = 77x")),
        ("port 0", hn("ip_port = 7777", "ip_port = 0")),
        ("port 2^32-1", hn("ip_port = 7777", "ip_port = 4294967295")),
        ("port 2^32", hn("ip_port = 7777", "ip_port = 4294967296")),
        ("node without port", hn("\tip_port = 7777\n", "")),
        ("same node twice", format!("{H}{N}{N}").into_bytes()),
        ("two nodes with one number", format!("{H}{N}{}", N.replace("name = n1", "name = n2")).into_bytes()),
        ("heartbeat", format!("{H}heartbeat:\n\tcluster = c\n\tregion = R1\n").into_bytes()),
        ("heartbeat without region", format!("{H}heartbeat:\n\tcluster = c\n").into_bytes()),
        ("heartbeat with empty region", format!("{H}heartbeat:\n\tcluster = c\n\tregion =\n").into_bytes()),
        ("same region twice", format!("{H}heartbeat:\n\tcluster = c\n\tregion = R1\n\nheartbeat:\n\tcluster = c\n\tregion = R1\n").into_bytes()),
        ("bad heartbeat of an unknown cluster", format!("{H}heartbeat:\n\tcluster = q\n\tregion =\n").into_bytes()),
        ("non-ASCII cluster name", s("cluster:\n\tname = café\n\tnode_count = 0\n")),
        (
            "Latin-1 names",
            b"cluster:\n\tname = caf\xe9\n\tnode_count = 1\n\nnode:\n\tcluster = caf\xe9\n\tname = n\xf8de\n\tnumber = 1\n\tip_address = 1.2.3.4\n\tip_port = 7777\n\nheartbeat:\n\tcluster = caf\xe9\n\tregion = \xff\xfe\n".to_vec(),
        ),
        (
            "multi-line cluster name matched by a node",
            s("cluster:\n\tname = c\\\nd\n\tnode_count = 1\n\nnode:\n\tcluster = c\\\nd\n\tname = n1\n\tnumber = 1\n\tip_address = 1.2.3.4\n\tip_port = 7777\n"),
        ),
        (
            "stanzas in mixed order with unknown keys",
            s("node:\n\tip_port = 7001\n\tname = b\n\tcluster = c\n\tx = y\n\tnumber = 3\n\tip_address = 127.0.0.3\n\n\
heartbeat:\n\tregion = Z\n\tcluster = c\n\n\
cluster:\n\tnode_count = 9\n\tname = c\n\theartbeat_mode = Global\n\n\
node:\n\tname = a\n\tnumber = 2\n\tip_address = 127.0.0.2\n\tip_port = 7001\n\tcluster = c\n"),
        ),
    ]
}

/// ocfs2-tools accepted the file (a crash counts as a refusal).
fn accepted(r: &Run) -> bool {
    r.code == Some(0)
}

#[test]
fn malformed_files_are_accepted_and_refused_like_ocfs2_tools() {
    let (theirs_bin, ours_bin) = (oracle(), ours());
    let list = vec!["list-clusters".to_string()];
    let mut failures = Vec::new();
    for (name, bytes) in corpus() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("c.conf"), &bytes).expect("write case");
        let t = run(&theirs_bin, dir.path(), "c.conf", &list);
        let o = run(&ours_bin, dir.path(), "c.conf", &list);
        if accepted(&t) != accepted(&o) {
            failures.push(format!("{name}: ocfs2-tools {t:?}, ours {o:?}"));
            continue;
        }
        if accepted(&t) {
            let (lt, lo) = (
                all_listings(&theirs_bin, dir.path(), "c.conf"),
                all_listings(&ours_bin, dir.path(), "c.conf"),
            );
            if lt != lo {
                failures.push(format!("{name}: listings differ\n{lt}\n{lo}"));
            }
            // Any change rewrites the whole file: the bytes must agree.
            let (a, b) = (
                tempfile::tempdir().expect("temp dir"),
                tempfile::tempdir().expect("temp dir"),
            );
            std::fs::write(a.path().join("c.conf"), &bytes).expect("write case");
            std::fs::write(b.path().join("c.conf"), &bytes).expect("write case");
            let add = vec!["add-cluster".to_string(), "zz9".to_string()];
            let (ta, ob) = (
                run(&theirs_bin, a.path(), "c.conf", &add),
                run(&ours_bin, b.path(), "c.conf", &add),
            );
            let (fa, fb) = (
                std::fs::read(a.path().join("c.conf")).ok(),
                std::fs::read(b.path().join("c.conf")).ok(),
            );
            if ta != ob || fa != fb {
                failures.push(format!(
                    "{name}: rewrite differs\n{ta:?}\n{ob:?}\n{:?}\n{:?}",
                    fa.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    fb.map(|v| String::from_utf8_lossy(&v).into_owned())
                ));
            }
        } else {
            // Our refusal: exit 1, nothing on stdout, and a message naming the
            // file and the line.
            let names_line = o.stderr.split("c.conf:").nth(1).is_some_and(|rest| {
                rest.split(':')
                    .next()
                    .is_some_and(|n| n.parse::<usize>().is_ok())
            });
            if o.code != Some(1) || !o.stdout.is_empty() || !names_line {
                failures.push(format!("{name}: our refusal is unclear: {o:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// ocfs2-tools crashes on these; we refuse them with a clear error.
#[test]
fn files_that_crash_ocfs2_tools_are_refused_with_an_error() {
    for text in [
        "cluster:\n\tnode_count = 1\n",
        "cluster:",
        "cluster:\0\n\tname = c\n",
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("c.conf"), text).expect("write case");
        let t = run(
            &oracle(),
            dir.path(),
            "c.conf",
            &["list-clusters".to_string()],
        );
        assert_eq!(
            t.signal,
            Some(libc::SIGSEGV),
            "ocfs2-tools no longer crashes on {text:?}: {t:?}"
        );
        let o = run(
            &ours(),
            dir.path(),
            "c.conf",
            &["list-clusters".to_string()],
        );
        assert_eq!(o.code, Some(1), "{text:?}: {o:?}");
        assert!(
            o.stderr.contains("c.conf:1: cluster stanza has no 'name'"),
            "{text:?}: {o:?}"
        );
    }
}

/// ocfs2-tools reads a directory as an empty configuration and fails to
/// write it; so do we.
#[test]
fn a_directory_as_configuration_file_behaves_like_ocfs2_tools() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("c.conf")).expect("mkdir");
    for args in [
        vec!["list-clusters"],
        vec!["list-nodes", "a"],
        vec!["add-cluster", "a"],
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let t = run(&oracle(), dir.path(), "c.conf", &args);
        let o = run(&ours(), dir.path(), "c.conf", &args);
        assert_eq!(
            (t.code, &t.stdout),
            (o.code, &o.stdout),
            "{args:?}\n{t:?}\n{o:?}"
        );
    }
}

/// A file ocfs2-tools accepts but the O2CB rules do not (node number 255,
/// port 70000) lists the same as ocfs2-tools does, and with -v our warnings
/// point at the stanza as file:line, as our load errors do.
#[test]
fn rule_breaking_files_list_alike_and_warn_with_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "cluster:\n\tname = c\n\tnode_count = 1\n\nnode:\n\tname = a\n\tcluster = c\n\
                \tnumber = 255\n\tip_address = 1.2.3.4\n\tip_port = 70000\n";
    std::fs::write(dir.path().join("c.conf"), text).expect("write");
    let args = vec!["-v".to_string(), "list-nodes".to_string(), "c".to_string()];
    let t = run(&oracle(), dir.path(), "c.conf", &args);
    let o = run(&ours(), dir.path(), "c.conf", &args);
    assert_eq!((t.code, &t.stdout), (o.code, &o.stdout), "{t:?}\n{o:?}");
    for what in ["node 'a' has number 255", "node 'a' has port 70000"] {
        assert!(
            o.stderr
                .contains(&format!("o2cb: warning: c.conf:5: {what}")),
            "{}",
            o.stderr
        );
    }
}
