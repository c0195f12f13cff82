//! Building tables directly (without lbadm) for packet tests and benchmarks.
use std::net::IpAddr;

use lb_user::ctl::{DestSpec, ServiceSpec};
use lb_user::model::{Dest, Fwd, Proto, Service, SvcKey, Table, Tunnel};

/// A service with `dests` (address, port, method, weight) added one by one in that order, as
/// successive `ipvsadm -a` would: IPVS's list order is the reverse (newest first).
pub fn service(id: u32, proto: Proto, vip: IpAddr, port: u16, sched: &str, dests: &[(IpAddr, u16, Fwd, i32)]) -> Service {
    let spec = ServiceSpec {
        key: SvcKey::Inet { proto, addr: vip, port },
        sched: sched.to_string(),
        flags: 0,
        timeout: 0,
        netmask: 0xffff_ffff,
        pe_name: String::new(),
    };
    let mut svc = Service::new(id, &spec);
    svc.dests = dests
        .iter()
        .enumerate()
        .map(|(i, &(addr, port, fwd, weight))| {
            let spec = DestSpec { addr, port, fwd, weight, u_threshold: 0, l_threshold: 0, tunnel: Tunnel::default() };
            Dest::new(id * 1024 + i as u32, 1 + i as u64, &spec)
        })
        .rev()
        .collect();
    svc
}

/// A table of `services`, with the insertion counter past every dest's sequence number.
pub fn table(services: Vec<Service>) -> Table {
    let next_seq = services.iter().flat_map(|s| s.dests.iter().map(|d| d.seq)).max().unwrap_or(0) + 1;
    Table { services, next_seq, ..Default::default() }
}

/// The real server (dest id) the connection table in `pin_dir` holds for TCP connection
/// `client`:`cport` -> `vip`:`vport`, if any.
pub fn tcp_conn_dest(pin_dir: &std::path::Path, client: [u8; 4], cport: u16, vip: [u8; 4], vport: u16) -> Option<u32> {
    use aya::maps::{HashMap, Map, MapData};
    let data = MapData::from_pin(pin_dir.join(lb_common::names::CONNS)).ok()?;
    let conns: HashMap<MapData, lb_common::ConnKey, lb_common::Conn> = HashMap::try_from(Map::HashMap(data)).ok()?;
    let key = lb_common::ConnKey {
        caddr: u32::from_ne_bytes(client),
        vaddr: u32::from_ne_bytes(vip),
        cport: cport.to_be(),
        vport: vport.to_be(),
        proto: lb_common::IPPROTO_TCP,
        kind: lb_common::CONN_KIND_IN,
        _pad: 0,
    };
    conns.get(&key, 0).ok().map(|c| c.dest_id)
}

/// [`tcp_conn_dest`] for an IPv6 connection (`XLB_CONNS6`).
pub fn tcp_conn6_dest(pin_dir: &std::path::Path, client: std::net::Ipv6Addr, cport: u16, vip: std::net::Ipv6Addr, vport: u16) -> Option<u32> {
    use aya::maps::{HashMap, Map, MapData};
    let data = MapData::from_pin(pin_dir.join(lb_common::names::CONNS6)).ok()?;
    let conns: HashMap<MapData, lb_common::ConnKey6, lb_common::Conn6> = HashMap::try_from(Map::HashMap(data)).ok()?;
    let addr = |a: std::net::Ipv6Addr| lb_user::store::to_addr(&std::net::IpAddr::V6(a));
    let key = lb_common::ConnKey6 {
        caddr: addr(client),
        vaddr: addr(vip),
        cport: cport.to_be(),
        vport: vport.to_be(),
        proto: lb_common::IPPROTO_TCP,
        kind: lb_common::CONN_KIND_IN,
        _pad: 0,
    };
    conns.get(&key, 0).ok().map(|c| c.c.dest_id)
}
