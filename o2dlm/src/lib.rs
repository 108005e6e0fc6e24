//! o2dlm: the O2CB distributed lock manager.
