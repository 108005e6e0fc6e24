//! The `o2cb` command.
fn main() {}
