//! The o2cb sysconfig file (`/etc/sysconfig/o2cb`, or `/etc/default/o2cb` on
//! Debian): a shell file of `KEY=value` lines that the o2cb init script
//! sources. Defaults, minimums and the choice of file follow ocfs2-tools'
//! `vendor/common/o2cb.init.sh`; the relations between timers follow the
//! kernel (keepalive below idle timeout).
//!
//! Only plain assignments are understood (optionally `export`ed, values bare
//! or in single or double quotes, `#` comments); any other shell code is an
//! error naming the line, since this is not a shell.

use std::path::{Path, PathBuf};

use crate::cluster::Timeouts;
use crate::conf::check_cluster_name;
use crate::error::{Error, Result};

/// The cluster stack named by `O2CB_STACK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stack {
    #[default]
    O2cb,
    Pcmk,
    Cman,
}

impl Stack {
    pub fn as_str(self) -> &'static str {
        match self {
            Stack::O2cb => "o2cb",
            Stack::Pcmk => "pcmk",
            Stack::Cman => "cman",
        }
    }
}

/// The settings of the o2cb sysconfig file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct O2cbSysconfig {
    /// `O2CB_ENABLED`: start the cluster at boot.
    pub enabled: bool,
    /// `O2CB_STACK`.
    pub stack: Stack,
    /// `O2CB_BOOTCLUSTER`: the cluster to bring online; `None` when empty.
    pub boot_cluster: Option<String>,
    /// `O2CB_HEARTBEAT_THRESHOLD`, `O2CB_IDLE_TIMEOUT_MS`,
    /// `O2CB_KEEPALIVE_DELAY_MS`, `O2CB_RECONNECT_DELAY_MS` (kernel defaults
    /// when empty or absent).
    pub timeouts: Timeouts,
}

/// Smallest values the init script accepts.
pub const MIN_HEARTBEAT_THRESHOLD: u32 = 7;
pub const MIN_IDLE_TIMEOUT_MS: u32 = 5000;
pub const MIN_KEEPALIVE_DELAY_MS: u32 = 1000;
pub const MIN_RECONNECT_DELAY_MS: u32 = 2000;

/// One timer variable: its name, the line the init script's template writes above it, the
/// smallest value the script accepts, the value an empty or absent one means, and the
/// setting it holds.
struct Timer {
    key: &'static str,
    what: &'static str,
    min: u32,
    default: u32,
    field: fn(&mut Timeouts) -> &mut u32,
}

/// The timer variables, in the order the template writes them.
const TIMERS: [Timer; 4] = [
    Timer {
        key: "O2CB_HEARTBEAT_THRESHOLD",
        what: "Iterations before a node is considered dead.",
        min: MIN_HEARTBEAT_THRESHOLD,
        default: Timeouts::DEFAULT_DEAD_THRESHOLD,
        field: |t| &mut t.dead_threshold,
    },
    Timer {
        key: "O2CB_IDLE_TIMEOUT_MS",
        what: "Time in ms before a network connection is considered dead.",
        min: MIN_IDLE_TIMEOUT_MS,
        default: Timeouts::DEFAULT_IDLE_TIMEOUT_MS,
        field: |t| &mut t.idle_timeout_ms,
    },
    Timer {
        key: "O2CB_KEEPALIVE_DELAY_MS",
        what: "Max time in ms before a keepalive packet is sent",
        min: MIN_KEEPALIVE_DELAY_MS,
        default: Timeouts::DEFAULT_KEEPALIVE_DELAY_MS,
        field: |t| &mut t.keepalive_delay_ms,
    },
    Timer {
        key: "O2CB_RECONNECT_DELAY_MS",
        what: "Min time in ms between connection attempts",
        min: MIN_RECONNECT_DELAY_MS,
        default: Timeouts::DEFAULT_RECONNECT_DELAY_MS,
        field: |t| &mut t.reconnect_delay_ms,
    },
];
/// Indices in [`TIMERS`] of the two timers whose relation is checked.
const IDLE: usize = 1;
const KEEPALIVE: usize = 2;

/// Splits one line into `(key, value)`, or `None` for blank and comment lines.
fn assignment(line: &str) -> std::result::Result<Option<(&str, String)>, String> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line.strip_prefix("export ").map_or(line, str::trim_start);
    let Some((key, rest)) = line.split_once('=') else {
        return Err("expected KEY=value".into());
    };
    let valid_key = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_key {
        return Err(format!(
            "'{key}' is not a variable name (expected KEY=value)"
        ));
    }
    let (value, after) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => match rest[1..].find(q) {
            Some(end) => (rest[1..1 + end].to_string(), &rest[end + 2..]),
            None => return Err(format!("unterminated {q} quote in the value of {key}")),
        },
        _ => {
            let end = rest.find([' ', '\t']).unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        }
    };
    if value.contains(['$', '`', '\\']) {
        return Err(format!(
            "the value of {key} uses shell expansion, which is not supported"
        ));
    }
    let after = after.trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return Err(format!(
            "unexpected text after the value of {key}: '{after}'"
        ));
    }
    Ok(Some((key, value)))
}

impl O2cbSysconfig {
    /// Where the init script looks, under `root` (`/` on a real system):
    /// `etc/sysconfig/o2cb` if it exists, else `etc/default/o2cb` if it
    /// exists, else `etc/sysconfig/o2cb` if `etc/sysconfig` is a directory,
    /// else `etc/default/o2cb`.
    pub fn path_under(root: &Path) -> PathBuf {
        let sysconfig = root.join("etc/sysconfig/o2cb");
        let default = root.join("etc/default/o2cb");
        if sysconfig.is_file() {
            sysconfig
        } else if default.is_file() {
            default
        } else if root.join("etc/sysconfig").is_dir() {
            sysconfig
        } else {
            default
        }
    }

    /// Reads the file the init script would read on this machine.
    pub fn load_system() -> Result<O2cbSysconfig> {
        Self::load(&Self::path_under(Path::new("/")))
    }

    /// Reads a sysconfig file; a missing file means every default.
    pub fn load(path: &Path) -> Result<O2cbSysconfig> {
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Self::parse(&text, path),
                Err(_) => Err(Error::Sysconfig {
                    file: path.into(),
                    line: 0,
                    what: "not valid UTF-8".into(),
                }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(O2cbSysconfig::default()),
            Err(source) => Err(Error::Io {
                file: path.to_path_buf(),
                err: source,
            }),
        }
    }

    /// The file as the init script's `configure` writes it (its
    /// `write_sysconfig` template), with every value spelled out.
    pub fn to_text(&self) -> String {
        let mut entries = vec![
            (
                "O2CB_ENABLED",
                "'true' means to load the driver on boot.",
                self.enabled.to_string(),
            ),
            (
                "O2CB_STACK",
                "The name of the cluster stack backing O2CB.",
                self.stack.as_str().to_string(),
            ),
            (
                "O2CB_BOOTCLUSTER",
                "If not empty, the name of a cluster to start.",
                self.boot_cluster.clone().unwrap_or_default(),
            ),
        ];
        let mut t = self.timeouts;
        for timer in &TIMERS {
            entries.push((timer.key, timer.what, (timer.field)(&mut t).to_string()));
        }
        let mut out = String::from(
            "#\n# This is a configuration file for automatic startup of the O2CB\n\
             # driver.  It is generated by running /etc/init.d/o2cb configure.\n\
             # On Debian based systems the preferred method is running\n\
             # 'dpkg-reconfigure ocfs2-tools'.\n#\n\n",
        );
        for (key, what, value) in entries {
            out.push_str(&format!("# {key}: {what}\n{key}={value}\n\n"));
        }
        out
    }

    /// Writes [`O2cbSysconfig::to_text`] atomically (mode kept, 0644 for a
    /// new file).
    pub fn store(&self, path: &Path) -> Result<()> {
        crate::atomic_write(path, self.to_text().as_bytes(), 0o644)
    }

    /// Reads sysconfig text; `file` names the file in errors. Later
    /// assignments win, as in a shell; unknown variables are ignored.
    pub fn parse(text: &str, file: &Path) -> Result<O2cbSysconfig> {
        let err = |line: usize, what: String| Error::Sysconfig {
            file: file.to_path_buf(),
            line,
            what,
        };
        let mut out = O2cbSysconfig::default();
        // The line that last set each of TIMERS, for errors about their relation.
        let mut timer_lines = [0usize; TIMERS.len()];
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let Some((key, value)) = assignment(raw).map_err(|w| err(lineno, w))? else {
                continue;
            };
            let number = |min: u32, default: u32| -> Result<u32> {
                if value.is_empty() {
                    return Ok(default);
                }
                let v: u32 = value
                    .parse()
                    .ok()
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        err(
                            lineno,
                            format!("{key} must be a decimal number, not '{value}'"),
                        )
                    })?;
                if v < min {
                    return Err(err(
                        lineno,
                        format!("{key} = {v} is below the minimum of {min}"),
                    ));
                }
                Ok(v)
            };
            match key {
                "O2CB_ENABLED" => {
                    out.enabled = match value.as_str() {
                        "true" => true,
                        "false" | "" => false,
                        other => {
                            return Err(err(
                                lineno,
                                format!("O2CB_ENABLED must be true or false, not '{other}'"),
                            ))
                        }
                    }
                }
                "O2CB_STACK" => {
                    out.stack = match value.as_str() {
                        "o2cb" | "" => Stack::O2cb,
                        "pcmk" => Stack::Pcmk,
                        "cman" => Stack::Cman,
                        other => {
                            return Err(err(
                                lineno,
                                format!("O2CB_STACK must be o2cb, pcmk or cman, not '{other}'"),
                            ))
                        }
                    }
                }
                "O2CB_BOOTCLUSTER" => {
                    if !value.is_empty() && check_cluster_name(&value).is_err() {
                        return Err(err(
                            lineno,
                            format!("O2CB_BOOTCLUSTER '{value}' is not a cluster name (1-16 letters and digits)"),
                        ));
                    }
                    out.boot_cluster = Some(value).filter(|v| !v.is_empty());
                }
                _ => {
                    if let Some(i) = TIMERS.iter().position(|t| t.key == key) {
                        let timer = &TIMERS[i];
                        *(timer.field)(&mut out.timeouts) = number(timer.min, timer.default)?;
                        timer_lines[i] = lineno;
                    }
                }
            }
        }
        let t = out.timeouts;
        if t.keepalive_delay_ms >= t.idle_timeout_ms {
            return Err(err(
                timer_lines[KEEPALIVE].max(timer_lines[IDLE]),
                format!(
                    "O2CB_KEEPALIVE_DELAY_MS ({}) must be below O2CB_IDLE_TIMEOUT_MS ({})",
                    t.keepalive_delay_ms, t.idle_timeout_ms
                ),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<O2cbSysconfig> {
        O2cbSysconfig::parse(text, Path::new("o2cb"))
    }

    #[test]
    fn debian_default_file() {
        let text = "#\n# comment\n#\n\nO2CB_ENABLED=false\nO2CB_BOOTCLUSTER=ocfs2\n\
O2CB_HEARTBEAT_THRESHOLD=31\nO2CB_IDLE_TIMEOUT_MS=30000\nO2CB_KEEPALIVE_DELAY_MS=2000\n\
O2CB_RECONNECT_DELAY_MS=2000\n";
        let s = parse(text).unwrap();
        assert_eq!(s.boot_cluster.as_deref(), Some("ocfs2"));
        assert_eq!(s.timeouts, Timeouts::default());
        assert_eq!(s.stack, Stack::O2cb);
        assert!(!s.enabled);
    }

    #[test]
    fn empty_values_mean_defaults_and_quotes_are_read() {
        let s = parse("O2CB_ENABLED=\"true\"\nexport O2CB_STACK='o2cb'\nO2CB_IDLE_TIMEOUT_MS=\nO2CB_HEARTBEAT_THRESHOLD=61 # 120 s\n").unwrap();
        assert!(s.enabled);
        assert_eq!(s.timeouts.idle_timeout_ms, 30000);
        assert_eq!(s.timeouts.dead_threshold, 61);
        assert_eq!(s.boot_cluster, None);
    }

    #[test]
    fn minimums_relations_and_syntax_are_checked_with_lines() {
        let line = |text: &str| match parse(text) {
            Err(Error::Sysconfig { line, .. }) => line,
            other => panic!("{text:?}: {other:?}"),
        };
        assert_eq!(line("\nO2CB_HEARTBEAT_THRESHOLD=6\n"), 2);
        assert_eq!(line("O2CB_IDLE_TIMEOUT_MS=4999\n"), 1);
        assert_eq!(line("O2CB_KEEPALIVE_DELAY_MS=999\n"), 1);
        assert_eq!(line("O2CB_RECONNECT_DELAY_MS=1999\n"), 1);
        assert_eq!(
            line("O2CB_IDLE_TIMEOUT_MS=5000\nO2CB_KEEPALIVE_DELAY_MS=5000\n"),
            2
        );
        assert_eq!(line("O2CB_STACK=heartbeat2\n"), 1);
        assert_eq!(line("O2CB_ENABLED=yes\n"), 1);
        assert_eq!(line("a\nif true; then\n"), 1);
        assert_eq!(line("O2CB_BOOTCLUSTER=bad-name\n"), 1);
        assert_eq!(line("O2CB_IDLE_TIMEOUT_MS=3e4\n"), 1);
        assert_eq!(line("O2CB_BOOTCLUSTER=$X\n"), 1);
    }

    #[test]
    fn path_choice_follows_the_init_script() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            O2cbSysconfig::path_under(root.path()),
            root.path().join("etc/default/o2cb")
        );
        std::fs::create_dir_all(root.path().join("etc/sysconfig")).unwrap();
        assert_eq!(
            O2cbSysconfig::path_under(root.path()),
            root.path().join("etc/sysconfig/o2cb")
        );
        std::fs::create_dir_all(root.path().join("etc/default")).unwrap();
        std::fs::write(root.path().join("etc/default/o2cb"), "").unwrap();
        assert_eq!(
            O2cbSysconfig::path_under(root.path()),
            root.path().join("etc/default/o2cb")
        );
        std::fs::write(root.path().join("etc/sysconfig/o2cb"), "").unwrap();
        assert_eq!(
            O2cbSysconfig::path_under(root.path()),
            root.path().join("etc/sysconfig/o2cb")
        );
    }
}
