//! Loop devices over image files, for the tests that need a block device (config_diff's
//! heartbeat regions, daemon_cluster's region found by UUID). Included with `#[path]`.

use std::path::Path;
use std::process::Command;

/// A loop device over an image file, detached when dropped (lazily, if still open).
pub struct LoopDevice {
    dev: String,
}

impl LoopDevice {
    /// Attaches `image` to the first free loop device; `Err` says why not (no loop devices,
    /// not root).
    pub fn attach(image: &Path) -> Result<LoopDevice, String> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && dev.starts_with("/dev/") {
            Ok(LoopDevice { dev })
        } else {
            Err(format!(
                "losetup {}: {}",
                image.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The device's path, `/dev/loopN`.
    pub fn dev(&self) -> &str {
        &self.dev
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}
