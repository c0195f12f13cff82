//! Section 1b: the IPv6 twins of section 1's per-packet figures (DR, TUN as IPv6-in-IPv6, NAT66
//! request and reply, hot and spread; the non-VIP pass; a new connection), measured the same way
//! ([`Measure::round`], each proven by its counters) on the dual-stack director, and printed
//! beside the IPv4 figure of the same run.
use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};

use anyhow::{Context as _, bail};
use lb_common::{Addr, CONN_KIND_IN, ConnKey6, IPPROTO_TCP};
use lb_user::store::{CreateOptions, Store};

use super::{
    Figure, Results, Size, bench_cpu, in_netns,
    packet::{GlobalReader, Measure, Measured, PathSpec, Runner, commit, established_specs, finish_proof, new_measured},
};
use crate::{
    director::*,
    frames::{ACK, Frame6, SYN},
    pins::TempPins,
    xdp::{XDP_PASS, XDP_REDIRECT, XDP_TX},
};

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}

fn sa6(a: Ipv6Addr, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(a, port, 0, 0)
}

/// A data packet of an established flow (the IPv4 figures' payload).
fn data6(client: Ipv6Addr, port: u16, vip: &str) -> Vec<u8> {
    Frame6::tcp(sa6(client, port), sa6(v6(vip), 80), ACK).payload(b"xlbxlb").bytes()
}

fn syn6(client: Ipv6Addr, port: u16, vip: &str) -> Vec<u8> {
    Frame6::tcp(sa6(client, port), sa6(v6(vip), 80), SYN).payload(b"xlbxlb").bytes()
}

/// A unique client (address, port) for new connection number `i`.
fn new_client6(i: usize) -> (Ipv6Addr, u16) {
    (Ipv6Addr::new(0x2001, 0xdb8, 0xc1, 0, 0, 0, (i / 50_000) as u16, 1), 10_000 + (i % 50_000) as u16)
}

fn addr(a: Ipv6Addr) -> Addr {
    let o = a.octets();
    Addr::v6(std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])))
}

/// The client-side key of TCP `c`:`p` -> `vip`:80 in `XLB_CONNS6`.
fn conn_key6(c: Ipv6Addr, p: u16, vip: &str) -> ConnKey6 {
    ConnKey6 { caddr: addr(c), vaddr: addr(v6(vip)), cport: p.to_be(), vport: 80u16.to_be(), proto: IPPROTO_TCP, kind: CONN_KIND_IN, _pad: 0 }
}

type ConnMap6 = aya::maps::HashMap<aya::maps::MapData, ConnKey6, lb_common::Conn6>;

fn conn_map6(pins: &std::path::Path) -> anyhow::Result<ConnMap6> {
    let data = aya::maps::MapData::from_pin(pins.join(lb_common::names::CONNS6))?;
    Ok(aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))?)
}

/// The non-VIP figure's name (this director has no fwmark service).
const NON_VIP6: &str = "non-VIP packet → kernel (NAT services configured)";

/// The IPv4 figure of this run that figure `name` is the twin of, if section 1 (or 2) ran.
fn ipv4_twin(res: &Results, name: &str) -> Option<f64> {
    let name = if name == NON_VIP6 { "non-VIP packet → kernel (NAT and fwmark services configured)" } else { name };
    res.figures.iter().find(|f| f.name == name).map(|f| f.median)
}

pub fn per_packet6(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let pins = TempPins::new("bench-pkt6")?;
    commit(pins.path(), director_services6(0))?;
    let d = DirectorNs::new("bpk6", &[])?;
    let (ns, if0, if1, eth1_mac) = (d.ns, d.eth0, d.eth1, d.eth1_mac);
    let cpu = bench_cpu();
    let size = *size;
    let path = pins.path().to_path_buf();
    let client = v6(CLIENT6);
    let measured = in_netns(&ns.name, Some(cpu), move || -> anyhow::Result<Vec<(String, Measured)>> {
        let store = GlobalReader::open(&path)?;
        let mut runner = Runner::load(&path)?;
        let mut conns = conn_map6(&path)?;
        let mut m = Measure { runner: &mut runner, store: &store, pairs: size.pairs };
        let hot_port = 50_000u16;
        let spread: Vec<u16> = (0..size.spread_flows as u16).map(|i| 20_000 + i).collect();
        for vip in [VIP6_DR, VIP6_TUN, VIP6_NAT] {
            let verdict = if vip == VIP6_NAT { XDP_REDIRECT } else { XDP_TX };
            let mut syns = vec![syn6(client, hot_port, vip)];
            syns.extend(spread.iter().map(|&p| syn6(client, p, vip)));
            m.create(&syns, if0, verdict).with_context(|| format!("connections to {vip}"))?;
        }
        let listed = Store::open_at(&path, CreateOptions::default())?.connections()?;
        let nat_rs = |port: u16| -> anyhow::Result<Vec<u8>> {
            let c = listed
                .iter()
                .find(|c| c.vaddr == IpAddr::V6(v6(VIP6_NAT)) && c.cport == port && c.caddr == IpAddr::V6(client))
                .with_context(|| format!("no NAT66 connection for client port {port}"))?;
            let IpAddr::V6(rs) = c.daddr else { bail!("IPv4 real server") };
            let mac = if rs == v6(NAT1_6) { NAT1_MAC } else { NAT2_MAC };
            Ok(Frame6::tcp(sa6(rs, c.dport), sa6(client, port), ACK).payload(b"xlbxlb").macs(mac, eth1_mac).bytes())
        };
        let mut specs: Vec<PathSpec> = Vec::new();
        for (label, vip, verdict) in [("DR", VIP6_DR, XDP_TX), ("TUN", VIP6_TUN, XDP_TX), ("NAT request", VIP6_NAT, XDP_REDIRECT)] {
            let spread: Vec<Vec<u8>> = spread.iter().map(|&p| data6(client, p, vip)).collect();
            m.establish(&spread, if0, verdict)?;
            m.establish(&[data6(client, hot_port, vip)], if0, verdict)?;
            specs.extend(established_specs(label, data6(client, hot_port, vip), spread, if0, verdict));
        }
        let replies = spread.iter().map(|&p| nat_rs(p)).collect::<anyhow::Result<_>>()?;
        specs.extend(established_specs("NAT reply", nat_rs(hot_port)?, replies, if1, XDP_REDIRECT));
        specs.push(PathSpec {
            name: NON_VIP6.to_string(),
            frames: vec![syn6(client, 1234, "2001:db8:88::99")],
            ingress: if0,
            verdict: XDP_PASS,
            equal: &["pass"],
            zero: &["conn_hit", "conn_new", "nat_reply", "parse_fail"],
        });
        // New connections: every SYN a new client, each round's connections deleted after it
        // (as section 2 does), so every round starts from the same table.
        let total = size.rounds * size.pairs;
        let new_spec = PathSpec {
            name: "new connection (TCP SYN, DR), rr at 2 servers".to_string(),
            frames: (0..total).map(|i| {
                let (c, p) = new_client6(i);
                syn6(c, p, VIP6_DR)
            }).collect(),
            ingress: if0,
            verdict: XDP_TX,
            equal: &["conn_new", "tx"],
            zero: &["conn_hit", "conn_insert_fail", "conn_evicted", "drop", "no_dest"],
        };
        let mut measured: Vec<Measured> = specs.iter().map(|_| new_measured()).collect();
        let mut new_m = new_measured();
        for r in 0..size.rounds {
            for (spec, mm) in specs.iter().zip(measured.iter_mut()) {
                m.round(spec, r * size.pairs, mm)?;
            }
            m.round(&new_spec, r * size.pairs, &mut new_m)?;
            let missing = (r * size.pairs..(r + 1) * size.pairs)
                .filter(|&i| {
                    let (c, p) = new_client6(i);
                    conns.remove(&conn_key6(c, p, VIP6_DR)).is_err()
                })
                .count();
            if missing > 0 && new_m.proof.is_ok() {
                new_m.proof = Err(format!("{missing} connections of round {r} not in the table"));
            }
        }
        let mut out = Vec::new();
        for (spec, mut mm) in specs.into_iter().zip(measured) {
            finish_proof(&mut mm, &spec);
            out.push((spec.name, mm));
        }
        finish_proof(&mut new_m, &new_spec);
        if let Ok(p) = &mut new_m.proof {
            p.push_str(", each round's connections found in the table and deleted");
        }
        out.push((new_spec.name, new_m));
        Ok(out)
    })?;
    let mut figs: Vec<Figure> = Vec::new();
    for (name, mm) in measured {
        let f = mm.figure("per-packet IPv6", format!("IPv6 {name}"));
        let f = match ipv4_twin(res, &name) {
            Some(v4) => {
                let text = format!("IPv4 twin in this run: {v4:.0} ns ({:.2}×)", f.median / v4);
                f.target_text(text)
            }
            None => f.target_text("IPv4 twin not measured in this run (sections packet, sched)"),
        };
        figs.push(f);
    }
    res.figures.extend(figs);
    drop(ns);
    Ok(())
}
