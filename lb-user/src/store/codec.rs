//! Conversions between the maps' values (`lb_common`) and the table model.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::anyhow;
use aya::maps::PerCpuValues;
use lb_common::{self as c, Addr, DestConns, GlobalStats, ServiceKey, Stats, sched};

use crate::model::{Af, Counters, Dest, Fwd, Proto, Rates, Service, SvcKey, Tunnel};

pub(super) fn sum(v: &PerCpuValues<Stats>) -> Counters {
    let mut t = Stats::default();
    for s in v.iter() {
        t.accumulate(s);
    }
    counters(&t)
}

pub(super) fn sum_global(v: &PerCpuValues<GlobalStats>) -> Counters {
    let mut t = GlobalStats::default();
    for g in v.iter() {
        t.accumulate(g);
    }
    counters(&t.total)
}

pub(super) fn counters(s: &Stats) -> Counters {
    Counters { conns: s.conns, inpkts: s.inpkts, outpkts: s.outpkts, inbytes: s.inbytes, outbytes: s.outbytes }
}

pub fn to_addr(ip: &IpAddr) -> Addr {
    match ip {
        IpAddr::V4(a) => Addr::v4(u32::from_ne_bytes(a.octets())),
        IpAddr::V6(a) => {
            let o = a.octets();
            Addr::v6(std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])))
        }
    }
}

pub fn to_ip(af: u8, a: &Addr) -> IpAddr {
    if af == c::AF_INET6 {
        let mut o = [0u8; 16];
        for (i, w) in a.w.iter().enumerate() {
            o[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::from(a.w[0].to_ne_bytes()))
    }
}

pub(super) fn af_code(af: Af) -> u8 {
    match af {
        Af::Inet => c::AF_INET,
        Af::Inet6 => c::AF_INET6,
    }
}

pub fn map_key(k: &SvcKey) -> ServiceKey {
    match *k {
        SvcKey::Inet { proto, addr, port } => {
            ServiceKey { addr: to_addr(&addr), port: port.to_be(), proto: proto.number(), af: af_code(k.af()) }
        }
        SvcKey::Fwmark { mark, af } => {
            ServiceKey { addr: Addr::v4(mark), port: 0, proto: c::IPPROTO_IP, af: af_code(af) }
        }
    }
}

pub(super) fn key_from_map(k: &ServiceKey) -> anyhow::Result<SvcKey> {
    let af = if k.af == c::AF_INET6 { Af::Inet6 } else { Af::Inet };
    if k.proto == c::IPPROTO_IP {
        return Ok(SvcKey::Fwmark { mark: k.addr.w[0], af });
    }
    let proto = Proto::from_number(k.proto).ok_or_else(|| anyhow!("service with protocol {}", k.proto))?;
    Ok(SvcKey::Inet { proto, addr: to_ip(k.af, &k.addr), port: u16::from_be(k.port) })
}

pub(super) fn netmask_addr(s: &Service) -> Addr {
    match s.key.af() {
        Af::Inet => Addr::v4(s.netmask.to_be()),
        Af::Inet6 => {
            let bits = s.netmask.min(128);
            let mut w = [0u32; 4];
            for (i, word) in w.iter_mut().enumerate() {
                let b = bits.saturating_sub(32 * i as u32).min(32);
                *word = if b == 0 { 0 } else { (u32::MAX << (32 - b)).to_be() };
            }
            Addr::v6(w)
        }
    }
}

pub(super) fn netmask_from_map(af: Af, a: &Addr) -> u32 {
    match af {
        Af::Inet => u32::from_be(a.w[0]),
        Af::Inet6 => a.w.iter().map(|w| u32::from_be(*w).count_ones()).sum(),
    }
}

pub(super) fn service_from_map(k: &ServiceKey, v: &c::Service, stats: Option<Counters>) -> anyhow::Result<Service> {
    let key = key_from_map(k)?;
    Ok(Service {
        id: v.id,
        key,
        sched: sched::sched_name(v.sched).to_string(),
        flags: v.flags,
        timeout: v.timeout,
        netmask: netmask_from_map(key.af(), &v.netmask),
        pe_name: if v.pe == c::PE_SIP { "sip".to_string() } else { String::new() },
        dests: Vec::new(),
        stats: stats.unwrap_or_default(),
        rates: Rates::default(),
    })
}

pub(super) fn dest_from_map(id: u32, d: &c::Dest, n: &DestConns, stats: Counters) -> Dest {
    Dest {
        id,
        addr: to_ip(d.af, &d.addr),
        port: u16::from_be(d.port),
        // A local dest's given method is kept beside FWD_LOCAL (tables written before
        // `listed_fwd` have no FWD_LOCAL dests).
        fwd: Fwd::from_code(if d.fwd == c::FWD_LOCAL { d.listed_fwd } else { d.fwd }).unwrap_or(Fwd::Route),
        local: d.fwd == c::FWD_LOCAL,
        weight: d.weight,
        last_weight: d.last_weight,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tunnel: Tunnel { kind: d.tun_type, port: d.tun_port, flags: d.tun_flags },
        seq: d.seq,
        overloaded: d.flags & c::DEST_F_OVERLOAD != 0,
        active_conns: n.active.min(u32::MAX as u64) as u32,
        inact_conns: n.inactive.min(u32::MAX as u64) as u32,
        persist_conns: n.persist.min(u32::MAX as u64) as u32,
        stats,
        rates: Rates::default(),
    }
}

pub(super) fn dest_to_map(svc_id: u32, d: &Dest) -> c::Dest {
    c::Dest {
        addr: to_addr(&d.addr),
        port: d.port.to_be(),
        // A real server local to the director is served by its own stack (XDP_PASS).
        fwd: if d.local { c::FWD_LOCAL } else { d.fwd.code() },
        // Never written from the model: the store sets and clears flag bits one by one
        // (`Store::write_dest`), and OVERLOAD as read at load time would be stale by now.
        flags: 0,
        weight: d.weight,
        svc_id,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun_type: d.tunnel.kind,
        af: af_code(Af::of(&d.addr)),
        listed_fwd: d.fwd.code(),
        tun_port: d.tunnel.port,
        tun_flags: d.tunnel.flags,
        _pad1: 0,
        last_weight: d.last_weight,
        // Never written from the model either: the store's scheduling-tree code places dests in
        // their trees (`Store::update_tree`), and `write_fields` leaves this word alone.
        tree_leaf: c::sched::tree::NO_LEAF,
        seq: d.seq,
    }
}

/// Whether lbadm configured `a` and `b` alike (OVERLOAD is the connections' business).
pub(super) fn same_config(a: &Dest, b: &Dest) -> bool {
    a.addr == b.addr
        && a.port == b.port
        && a.fwd == b.fwd
        && a.local == b.local
        && a.weight == b.weight
        && a.last_weight == b.last_weight
        && a.u_threshold == b.u_threshold
        && a.l_threshold == b.l_threshold
        && a.tunnel == b.tunnel
        && a.seq == b.seq
}

pub(super) fn dest_views(dests: &[Dest]) -> Vec<sched::DestView> {
    // OVERLOAD comes and goes with connections in the data plane, which checks it at pick time:
    // the tables hold every dest with weight.
    dests.iter().map(|d| sched::DestView { id: d.id, weight: d.weight, overloaded: false }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::DestSpec;

    fn dest(addr: &str, fwd: Fwd) -> Dest {
        let spec = DestSpec {
            addr: addr.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: 80,
            fwd,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tunnel: Tunnel::default(),
        };
        Dest::new(3, 7, &spec)
    }

    /// A real server local to the director reaches the data plane as FWD_LOCAL (its own
    /// stack serves it) and comes back with the method it was given, as IPVS lists it.
    #[test]
    fn local_dests_are_fwd_local_in_the_map_and_listed_as_given() {
        for (addr, fwd) in [("127.0.0.1", Fwd::Route), ("::1", Fwd::Masq), ("127.0.0.2", Fwd::Tunnel)] {
            let d = dest(addr, fwd);
            assert!(d.local, "{addr}");
            let m = dest_to_map(1, &d);
            assert_eq!((m.fwd, m.listed_fwd), (c::FWD_LOCAL, fwd.code()), "{addr}");
            let back = dest_from_map(3, &m, &DestConns::default(), Counters::default());
            assert_eq!((back.fwd, back.local), (fwd, true), "{addr}");
            assert!(same_config(&back, &d));
        }
        let d = dest("192.0.2.10", Fwd::Masq);
        assert!(!d.local);
        let m = dest_to_map(1, &d);
        assert_eq!(m.fwd, c::FWD_MASQ);
        let back = dest_from_map(3, &m, &DestConns::default(), Counters::default());
        assert_eq!((back.fwd, back.local), (Fwd::Masq, false));
        // The same real server turning local is a change the store writes.
        let mut l = d.clone();
        l.local = true;
        assert!(!same_config(&l, &d));
    }
}
