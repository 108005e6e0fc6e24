//! o2hb: the O2CB disk heartbeat, byte-compatible with the kernel's.
