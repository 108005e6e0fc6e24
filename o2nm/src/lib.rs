//! o2nm: the O2CB node manager.
//!
//! Reads and writes `/etc/ocfs2/cluster.conf` exactly as ocfs2-tools does, reads
//! the o2cb sysconfig file (`/etc/sysconfig/o2cb`, `/etc/default/o2cb`), and
//! holds the cluster model (cluster, nodes, local node, timeouts, heartbeat
//! regions) that the other layers use.
