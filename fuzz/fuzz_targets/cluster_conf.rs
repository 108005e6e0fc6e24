//! Fuzz target for the cluster.conf and o2cb sysconfig readers: no input
//! panics, and an accepted cluster.conf rewrites to text that reads back as
//! the same configuration (unless a value ends in a backslash, which joins
//! the next line on reading, for ocfs2-tools as for us).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use o2nm::{ClusterConf, O2cbSysconfig};

fuzz_target!(|data: &[u8]| {
    if let Ok((conf, _warnings)) = ClusterConf::parse_checked(data, Path::new("fuzz.conf")) {
        let text = conf.to_bytes();
        let trailing_backslash = conf.clusters.iter().any(|c| {
            c.name.ends_with('\\')
                || c.nodes.iter().any(|n| n.name.ends_with('\\'))
                || c.heartbeats.iter().any(|h| h.region.ends_with('\\'))
        });
        if !trailing_backslash {
            let again = ClusterConf::parse(&text, Path::new("fuzz.conf"))
                .expect("text we wrote must read back");
            assert_eq!(again, conf, "rewritten text reads back differently");
            assert_eq!(again.to_bytes(), text, "second rewrite differs");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = O2cbSysconfig::parse(text, Path::new("o2cb"));
    }
});
