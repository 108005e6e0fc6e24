//! Multi-node tests and the deterministic cluster simulator.
