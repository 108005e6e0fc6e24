//! Fuzzes the o2dlm domain core: three nodes joined in one domain, driven by arbitrary
//! sequences of API calls, message deliveries in any order, failed sends, timer ticks, node
//! deaths and raw bytes from a peer (decoded as the driver decodes them). Nothing may panic,
//! whatever a buggy or hostile peer sends and whatever order the network picks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o2dlm::domain::{DomainConfig, DomainCore, Input, Output};
use o2dlm::wire::{errno, DlmMessage, DomainName, LkmFlags, LockMode, LockName};

struct Msg {
    from: u8,
    to: u8,
    token: u64,
    msg_type: u16,
    bytes: Vec<u8>,
}

fn feed(cores: &mut [DomainCore], queue: &mut Vec<Msg>, n: u8, now: u64, input: Input) {
    let Some(core) = cores.get_mut(usize::from(n)) else {
        return;
    };
    core.handle(now, input);
    let outs: Vec<Output> = core.drain_outputs().collect();
    for o in outs {
        if let Output::Send { token, to, msg } = o {
            queue.push(Msg {
                from: n,
                to,
                token,
                msg_type: msg.msg_type().to_wire(),
                bytes: msg.to_vec(),
            });
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(domain) = DomainName::new(b"fuzz") else {
        return;
    };
    let names: Vec<LockName> = [&b"a"[..], b"b", b"$RECOVERY"]
        .iter()
        .filter_map(|n| LockName::new(n).ok())
        .collect();
    let mut cores: Vec<DomainCore> = (0..3u8)
        .map(|i| {
            let mut cfg = DomainConfig::new(i, domain);
            cfg.purge_interval_ms = 50;
            cfg.mastery_timeout_ms = 100;
            let mut c = DomainCore::new(cfg);
            for j in 0..3 {
                c.handle(0, Input::NodeUp(j));
            }
            c
        })
        .collect();
    let mut queue: Vec<Msg> = Vec::new();
    let mut now = 0u64;
    for n in 0..3u8 {
        feed(&mut cores, &mut queue, n, now, Input::Join);
    }
    let mut cookie = 0u64;
    let mut i = 0usize;
    while i + 4 <= data.len() {
        let (k, a, b, c) = (data[i], data[i + 1], data[i + 2], data[i + 3]);
        i += 4;
        let node = a % 3;
        let mode = LockMode::ALL[usize::from(b % 3)];
        let flags = LkmFlags(u32::from(c) << 7);
        match k % 10 {
            0 => {
                cookie += 1;
                let name = names[usize::from(b) % names.len()];
                let ck = (u64::from(node) << 56) | cookie;
                feed(&mut cores, &mut queue, node, now, Input::Lock { cookie: ck, name, mode, flags });
            }
            1 => {
                let ck = (u64::from(node) << 56) | u64::from(c % 16);
                feed(&mut cores, &mut queue, node, now, Input::Convert { cookie: ck, mode, flags, lvb: [c; 64] });
            }
            2 => {
                let ck = (u64::from(node) << 56) | u64::from(c % 16);
                let f = if b & 1 == 0 { LkmFlags::VALBLK } else { LkmFlags::CANCEL };
                feed(&mut cores, &mut queue, node, now, Input::Unlock { cookie: ck, flags: f, lvb: [b; 64] });
            }
            3 | 4 | 5 => {
                // Deliver a queued message (any of them: connections reorder freely here).
                if queue.is_empty() {
                    continue;
                }
                let m = queue.remove(usize::from(b) % queue.len());
                let result = if c % 16 == 0 {
                    Err(errno::EHOSTDOWN)
                } else {
                    match DlmMessage::decode(m.msg_type, &m.bytes) {
                        Ok(msg) => {
                            let core = &mut cores[usize::from(m.to % 3)];
                            let r = core.handle(now, Input::Message { from: m.from, msg });
                            let outs: Vec<Output> = core.drain_outputs().collect();
                            for o in outs {
                                if let Output::Send { token, to, msg } = o {
                                    queue.push(Msg { from: m.to, to, token, msg_type: msg.msg_type().to_wire(), bytes: msg.to_vec() });
                                }
                            }
                            Ok(r)
                        }
                        Err(_) => Ok(errno::EINVAL),
                    }
                };
                feed(&mut cores, &mut queue, m.from, now, Input::SendDone { token: m.token, result });
            }
            6 => {
                now += u64::from(b) * 4;
                for n in 0..3u8 {
                    feed(&mut cores, &mut queue, n, now, Input::Tick);
                }
            }
            7 => {
                // Raw bytes from a peer as a DLM message of type 500 + b % 23.
                let end = (i + usize::from(c)).min(data.len());
                let raw = &data[i..end];
                i = end;
                if let Ok(msg) = DlmMessage::decode(500 + u16::from(b % 23), raw) {
                    feed(&mut cores, &mut queue, node, now, Input::Message { from: (node + 1) % 3, msg });
                }
            }
            8 => feed(&mut cores, &mut queue, node, now, Input::NodeDown((node + 1 + b % 2) % 3)),
            _ => feed(&mut cores, &mut queue, node, now, Input::Leave),
        }
    }
});
