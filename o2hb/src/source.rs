//! Turning a path into a region: a plain region file (`o2cb heartbeat format`) or an OCFS2
//! volume made by `mkfs.ocfs2`, detected by their magic numbers.

use crate::core::Geometry;
use crate::ocfs2::{self, HeartbeatFile, ReadAt};
use crate::regionfile::{RegionFileHeader, HEADER_BYTES};
use crate::Error;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionKind {
    RegionFile,
    Ocfs2(Box<HeartbeatFile>),
}

/// A region found on disk: where, what it is called, and its geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSource {
    pub path: PathBuf,
    /// Region name: the region file's UUID or the volume's UUID (uppercase hex).
    pub name: String,
    pub geometry: Geometry,
    pub kind: RegionKind,
}

impl RegionSource {
    /// The device name used in messages, as the kernel prints the block device.
    pub fn device(&self) -> String {
        self.path.display().to_string()
    }
}

/// Inspects `path` and returns its region.
pub fn open(path: &Path) -> Result<RegionSource, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if let Ok(head) = file.read_at(0, HEADER_BYTES) {
        if RegionFileHeader::has_magic(&head) {
            let h = RegionFileHeader::parse(&head).map_err(|reason| Error::BadRegionFile {
                path: path.to_path_buf(),
                reason,
            })?;
            return Ok(RegionSource {
                path: path.to_path_buf(),
                name: h.uuid,
                geometry: h.geometry,
                kind: RegionKind::RegionFile,
            });
        }
    }
    if ocfs2::looks_like_ocfs2(&file) {
        let hb = ocfs2::heartbeat_file_at(path)?;
        return Ok(RegionSource {
            path: path.to_path_buf(),
            name: hb.region_name.clone(),
            geometry: hb.geometry,
            kind: RegionKind::Ocfs2(Box::new(hb)),
        });
    }
    Err(Error::UnknownRegionKind {
        path: path.to_path_buf(),
    })
}
