//! o2net: O2CB TCP messaging on port 7777, wire-compatible with the kernel's, and quorum.
