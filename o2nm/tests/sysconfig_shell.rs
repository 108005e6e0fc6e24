//! The o2cb init script sources the sysconfig file with the shell: for files
//! we accept, our values must be what `sh` sees after sourcing them (and our
//! defaults what the script uses for empty or missing values).

use std::path::Path;
use std::process::Command;

use o2nm::O2cbSysconfig;

/// What the init script would use, from sourcing `text` in `sh`.
fn sourced(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("o2cb");
    std::fs::write(&file, text).expect("write sysconfig");
    let script = r#". "$1"
echo "${O2CB_ENABLED:-false}"
echo "${O2CB_STACK:-o2cb}"
echo "${O2CB_BOOTCLUSTER}"
echo "${O2CB_HEARTBEAT_THRESHOLD:-31}"
echo "${O2CB_IDLE_TIMEOUT_MS:-30000}"
echo "${O2CB_KEEPALIVE_DELAY_MS:-2000}"
echo "${O2CB_RECONNECT_DELAY_MS:-2000}""#;
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&file)
        .env_clear()
        .output()
        .expect("run sh");
    assert!(out.status.success(), "sh refused {text:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn ours(text: &str) -> Vec<String> {
    let s =
        O2cbSysconfig::parse(text, Path::new("o2cb")).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    vec![
        s.enabled.to_string(),
        s.stack.as_str().to_string(),
        s.boot_cluster.unwrap_or_default(),
        s.timeouts.dead_threshold.to_string(),
        s.timeouts.idle_timeout_ms.to_string(),
        s.timeouts.keepalive_delay_ms.to_string(),
        s.timeouts.reconnect_delay_ms.to_string(),
    ]
}

#[test]
fn accepted_files_mean_what_the_shell_makes_of_them() {
    let debian = std::fs::read_to_string("/etc/default/o2cb").ok();
    let mut cases = vec![
        String::new(),
        "# only a comment\n".to_string(),
        "O2CB_ENABLED=true\nO2CB_STACK=o2cb\nO2CB_BOOTCLUSTER=ocfs2\n".to_string(),
        "O2CB_HEARTBEAT_THRESHOLD=61\nO2CB_IDLE_TIMEOUT_MS=60000\nO2CB_KEEPALIVE_DELAY_MS=5000\nO2CB_RECONNECT_DELAY_MS=4000\n"
            .to_string(),
        "export O2CB_BOOTCLUSTER=\"web1\"\n  O2CB_IDLE_TIMEOUT_MS='45000'   # comment\n".to_string(),
        "O2CB_HEARTBEAT_THRESHOLD=\nO2CB_IDLE_TIMEOUT_MS=\"\"\nO2CB_BOOTCLUSTER=\n".to_string(),
        "O2CB_BOOTCLUSTER=first\nO2CB_BOOTCLUSTER=second\nUNRELATED=1\n".to_string(),
        "O2CB_STACK=pcmk\nO2CB_ENABLED=false".to_string(),
    ];
    cases.extend(debian);
    for text in &cases {
        assert_eq!(ours(text), sourced(text), "{text:?}");
    }
}

/// Our writer produces the bytes of the init script's own `write_sysconfig`
/// (run from /etc/init.d/o2cb with the same values), and reads back.
#[test]
fn written_files_match_the_init_script_template() {
    let script = std::fs::read_to_string("/etc/init.d/o2cb")
        .expect("ocfs2-tools' /etc/init.d/o2cb (scripts/install-deps.sh installs ocfs2-tools)");
    let start = script
        .find("\nwrite_sysconfig()")
        .expect("write_sysconfig in the init script")
        + 1;
    let end = script[start..]
        .find("\n}\n")
        .map(|e| start + e + 3)
        .expect("end of write_sysconfig");
    let function = &script[start..end];
    let mut sys = O2cbSysconfig {
        enabled: true,
        boot_cluster: Some("web1".into()),
        ..Default::default()
    };
    sys.timeouts.dead_threshold = 61;
    sys.timeouts.idle_timeout_ms = 60000;
    for sys in [O2cbSysconfig::default(), sys] {
        let dir = tempfile::tempdir().expect("temp dir");
        let theirs = dir.path().join("theirs");
        let t = &sys.timeouts;
        let status = Command::new("bash")
            .args([
                "-c",
                &format!("{function}\nwrite_sysconfig >/dev/null"),
                "bash",
            ])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("CONFIGURATION", &theirs)
            .env("O2CB_ENABLED", sys.enabled.to_string())
            .env("O2CB_STACK", sys.stack.as_str())
            .env(
                "O2CB_BOOTCLUSTER",
                sys.boot_cluster.clone().unwrap_or_default(),
            )
            .env("O2CB_HEARTBEAT_THRESHOLD", t.dead_threshold.to_string())
            .env("O2CB_IDLE_TIMEOUT_MS", t.idle_timeout_ms.to_string())
            .env("O2CB_KEEPALIVE_DELAY_MS", t.keepalive_delay_ms.to_string())
            .env("O2CB_RECONNECT_DELAY_MS", t.reconnect_delay_ms.to_string())
            .status()
            .expect("bash");
        assert!(status.success());
        let ours = dir.path().join("ours");
        sys.store(&ours).expect("store");
        assert_eq!(
            std::fs::read_to_string(&ours).expect("ours"),
            std::fs::read_to_string(&theirs).expect("theirs")
        );
        assert_eq!(O2cbSysconfig::load(&ours).expect("read back"), sys);
    }
}

mod properties {
    use std::path::Path;

    use o2nm::{O2cbSysconfig, Stack, Timeouts};
    use proptest::prelude::*;

    fn model() -> impl Strategy<Value = O2cbSysconfig> {
        (
            any::<bool>(),
            prop_oneof![Just(Stack::O2cb), Just(Stack::Pcmk), Just(Stack::Cman)],
            proptest::option::of("[A-Za-z0-9]{1,16}"),
            7u32..1000,
            5000u32..200_000,
            1000u32..5000,
            2000u32..100_000,
        )
            .prop_map(
                |(enabled, stack, boot_cluster, t, idle, keepalive, reconnect)| O2cbSysconfig {
                    enabled,
                    stack,
                    boot_cluster,
                    timeouts: Timeouts {
                        dead_threshold: t,
                        idle_timeout_ms: idle,
                        keepalive_delay_ms: keepalive,
                        reconnect_delay_ms: reconnect,
                        ..Timeouts::default()
                    },
                },
            )
    }

    proptest! {
        /// What we write is what we read back, as the init script would.
        #[test]
        fn written_files_read_back(s in model()) {
            let again = O2cbSysconfig::parse(&s.to_text(), Path::new("o2cb"));
            prop_assert_eq!(again.ok(), Some(s));
        }

        /// Any text is read or refused with an error naming the file, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "(O2CB_[A-Z_]{0,24}|export |[=\"' #\t\n0-9a-z$`\\\\])*") {
            if let Err(e) = O2cbSysconfig::parse(&text, Path::new("/etc/default/o2cb")) {
                prop_assert!(e.to_string().contains("/etc/default/o2cb"), "{}", e);
            }
        }
    }
}
