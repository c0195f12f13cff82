//! Building tables directly (without lbadm) for packet tests and benchmarks.
use std::net::IpAddr;

use lb_user::model::{Counters, Dest, Fwd, Proto, Rates, Service, SvcKey, Table, Tunnel};

/// A service with `dests` (address, port, method, weight) added one by one in that order, as
/// successive `ipvsadm -a` would: IPVS's list order is the reverse (newest first).
pub fn service(id: u32, proto: Proto, vip: IpAddr, port: u16, sched: &str, dests: &[(IpAddr, u16, Fwd, i32)]) -> Service {
    let mut list: Vec<Dest> = dests
        .iter()
        .enumerate()
        .map(|(i, &(addr, dport, fwd, weight))| Dest {
            id: id * 1024 + i as u32,
            addr,
            port: dport,
            fwd,
            weight,
            last_weight: weight,
            u_threshold: 0,
            l_threshold: 0,
            tunnel: Tunnel::default(),
            seq: 1 + i as u64,
            overloaded: false,
            active_conns: 0,
            inact_conns: 0,
            persist_conns: 0,
            stats: Counters::default(),
            rates: Rates::default(),
        })
        .collect();
    list.reverse();
    Service {
        id,
        key: SvcKey::Inet { proto, addr: vip, port },
        sched: sched.to_string(),
        flags: 0,
        timeout: 0,
        netmask: 0xffff_ffff,
        pe_name: String::new(),
        dests: list,
        stats: Counters::default(),
        rates: Rates::default(),
    }
}

/// A table of `services`, with the insertion counter past every dest's sequence number.
pub fn table(services: Vec<Service>) -> Table {
    let next_seq = services.iter().flat_map(|s| s.dests.iter().map(|d| d.seq)).max().unwrap_or(0) + 1;
    Table { services, next_seq, ..Default::default() }
}
