//! dlmfs over FUSE: lock domains as directories, lock resources as files.
