//! The director topology the packet-level suites share (fixtures, hostile packets, the
//! per-packet bench): its addresses and MACs, and a namespace made to look like a director so
//! that next hops come from the kernel's FIB and neighbour table as in production.
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context as _;

use lb_user::model::{Fwd, Proto, Service, Table};

use crate::{
    frames::CLIENT_MAC,
    netns::{Netns, unique_prefix},
    table::{service, table},
};

pub const CLIENT: [u8; 4] = [192, 168, 88, 10];
pub const CLIENT2: [u8; 4] = [192, 168, 88, 11];
/// On the client subnet but with no neighbour entry: the slow path.
pub const CLIENT3: [u8; 4] = [192, 168, 88, 12];
pub const ROUTER: [u8; 4] = [192, 168, 88, 1];
pub const DIP: [u8; 4] = [192, 168, 88, 5];
pub const VIP_DR: [u8; 4] = [192, 168, 88, 15];
pub const VIP_TUN: [u8; 4] = [192, 168, 88, 16];
pub const VIP_NAT: [u8; 4] = [192, 168, 88, 17];
pub const VIP_ALL: [u8; 4] = [192, 168, 88, 18];
pub const VIP_LOCAL: [u8; 4] = [192, 168, 88, 19];
pub const WEB1: [u8; 4] = [192, 168, 88, 100];
pub const WEB2: [u8; 4] = [192, 168, 88, 200];
pub const TUN1: [u8; 4] = [10, 99, 0, 100];
pub const TUN2: [u8; 4] = [10, 99, 0, 200];
pub const NAT1: [u8; 4] = [192, 168, 99, 100];
pub const NAT2: [u8; 4] = [192, 168, 99, 200];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const WEB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];
pub const WEB2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc8];
pub const NAT1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x64];
pub const NAT2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0xc8];
/// MTU of the route to the TUN real servers' subnet.
pub const TUN_MTU: usize = 1400;

/// The IPv6 side of the director (the same links): clients, VIPs (on lo), DR real servers in
/// 2001:db8:88::/64 on eth0, TUN real servers behind the router in 2001:db8:98::/64 (route MTU
/// `TUN_MTU`), NAT real servers in 2001:db8:99::/64 on eth1.
pub const CLIENT6: &str = "2001:db8:88::10";
pub const CLIENT6_2: &str = "2001:db8:88::11";
pub const ROUTER6: &str = "2001:db8:88::1";
pub const DIP6: &str = "2001:db8:88::5";
pub const VIP6_DR: &str = "2001:db8:88::15";
pub const VIP6_TUN: &str = "2001:db8:88::16";
pub const VIP6_NAT: &str = "2001:db8:88::17";
pub const WEB1_6: &str = "2001:db8:88::100";
pub const WEB2_6: &str = "2001:db8:88::200";
pub const TUN1_6: &str = "2001:db8:98::100";
pub const TUN2_6: &str = "2001:db8:98::200";
pub const NAT1_6: &str = "2001:db8:99::100";
pub const NAT2_6: &str = "2001:db8:99::200";
/// An IPv4 VIP whose real servers are the IPv6 TUN ones (IPv4-in-IPv6).
pub const VIP_TUN46: [u8; 4] = [192, 168, 88, 21];

pub fn ip6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<std::net::Ipv6Addr>().expect("an IPv6 address"))
}

pub fn ip4(o: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(o))
}

pub fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// DR, TUN, NAT (TCP and UDP each) and a persistent all-ports service, as successive `ipvsadm`
/// commands would make them (dest ids: svc * 1024 + order).
pub fn director_services() -> Vec<Service> {
    let mut all_ports = svc(6, Proto::Tcp, VIP_ALL, 0, &[(WEB1, 0, Fwd::Route, 1), (WEB2, 0, Fwd::Route, 1)]);
    all_ports.flags = lb_common::SVC_F_PERSISTENT;
    all_ports.timeout = 360;
    vec![
        svc(0, Proto::Tcp, VIP_DR, 80, &[(WEB1, 80, Fwd::Route, 1), (WEB2, 80, Fwd::Route, 2)]),
        svc(1, Proto::Udp, VIP_DR, 53, &[(WEB1, 53, Fwd::Route, 1), (WEB2, 53, Fwd::Route, 1)]),
        svc(2, Proto::Tcp, VIP_TUN, 80, &[(TUN1, 80, Fwd::Tunnel, 1), (TUN2, 80, Fwd::Tunnel, 1)]),
        svc(3, Proto::Udp, VIP_TUN, 53, &[(TUN1, 53, Fwd::Tunnel, 1), (TUN2, 53, Fwd::Tunnel, 1)]),
        svc(4, Proto::Tcp, VIP_NAT, 80, &[(NAT1, 8080, Fwd::Masq, 1), (NAT2, 8080, Fwd::Masq, 1)]),
        svc(5, Proto::Udp, VIP_NAT, 53, &[(NAT1, 5353, Fwd::Masq, 1), (NAT2, 53, Fwd::Masq, 1)]),
        all_ports,
    ]
}

/// IPv6 services of every method: DR (TCP, UDP), TUN (TCP; and on port 8080 to the IPv4 TUN
/// real servers: mixed families), NAT66 (TCP 80 -> 8080, UDP 53 -> 5353 / 53), and an IPv4
/// service with the IPv6 TUN real servers (mixed the other way); ids from `first`.
pub fn director_services6(first: u32) -> Vec<Service> {
    let s = |i: u32, proto: Proto, vip: &str, port: u16, dests: &[(IpAddr, u16, Fwd, i32)]| {
        service(first + i, proto, ip6(vip), port, "rr", dests)
    };
    vec![
        s(0, Proto::Tcp, VIP6_DR, 80, &[(ip6(WEB1_6), 80, Fwd::Route, 1), (ip6(WEB2_6), 80, Fwd::Route, 2)]),
        s(1, Proto::Udp, VIP6_DR, 53, &[(ip6(WEB1_6), 53, Fwd::Route, 1), (ip6(WEB2_6), 53, Fwd::Route, 1)]),
        s(2, Proto::Tcp, VIP6_TUN, 80, &[(ip6(TUN1_6), 80, Fwd::Tunnel, 1), (ip6(TUN2_6), 80, Fwd::Tunnel, 1)]),
        s(3, Proto::Tcp, VIP6_TUN, 8080, &[(ip4(TUN1), 8080, Fwd::Tunnel, 1), (ip4(TUN2), 8080, Fwd::Tunnel, 1)]),
        s(4, Proto::Tcp, VIP6_NAT, 80, &[(ip6(NAT1_6), 8080, Fwd::Masq, 1), (ip6(NAT2_6), 8080, Fwd::Masq, 1)]),
        s(5, Proto::Udp, VIP6_NAT, 53, &[(ip6(NAT1_6), 5353, Fwd::Masq, 1), (ip6(NAT2_6), 53, Fwd::Masq, 1)]),
        service(first + 6, Proto::Tcp, ip4(VIP_TUN46), 80, "rr", &[(ip6(TUN1_6), 80, Fwd::Tunnel, 1), (ip6(TUN2_6), 80, Fwd::Tunnel, 1)]),
    ]
}

/// [`director_services`], a local service (`-g` to the director's own address) and the IPv6
/// services ([`director_services6`]).
pub fn director_table() -> Table {
    let mut v = director_services();
    v.push(svc(7, Proto::Tcp, VIP_LOCAL, 80, &[(DIP, 80, Fwd::Local, 1)]));
    v.extend(director_services6(8));
    table(v)
}

fn svc(id: u32, proto: Proto, vip: [u8; 4], port: u16, dests: &[([u8; 4], u16, Fwd, i32)]) -> Service {
    let d: Vec<_> = dests.iter().map(|&(a, p, f, w)| (ip4(a), p, f, w)).collect();
    service(id, proto, ip4(vip), port, "rr", &d)
}

/// The IPv6 side of the director namespace (see [`CLIENT6`]): addresses without duplicate
/// address detection, the VIPs on lo (eth0's one global address sources the tunnels),
/// forwarding on, permanent neighbours.
fn add_ipv6(ns: &Netns) -> anyhow::Result<()> {
    // Some hosts disable IPv6 by default (inherited by a new namespace).
    for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
        ns.sysctl(key, "0")?;
    }
    for dev in ["eth0", "eth1", "lo"] {
        ns.sysctl(&format!("net.ipv6.conf.{dev}.disable_ipv6"), "0")?;
    }
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    ns.ip(&["link", "set", "lo", "up"])?;
    ns.ip(&["-6", "addr", "add", &format!("{DIP6}/64"), "dev", "eth0", "nodad"])?;
    ns.ip(&["-6", "addr", "add", "2001:db8:99::5/64", "dev", "eth1", "nodad"])?;
    for vip in [VIP6_DR, VIP6_TUN, VIP6_NAT] {
        ns.ip(&["-6", "addr", "add", &format!("{vip}/128"), "dev", "lo", "nodad"])?;
    }
    let mtu = TUN_MTU.to_string();
    ns.ip(&["-6", "route", "add", "2001:db8:98::/64", "via", ROUTER6, "dev", "eth0", "mtu", "lock", &mtu])?;
    for (addr, mac, dev) in [
        (CLIENT6, CLIENT_MAC, "eth0"),
        (CLIENT6_2, CLIENT_MAC, "eth0"),
        (ROUTER6, ROUTER_MAC, "eth0"),
        (WEB1_6, WEB1_MAC, "eth0"),
        (WEB2_6, WEB2_MAC, "eth0"),
        (NAT1_6, NAT1_MAC, "eth1"),
        (NAT2_6, NAT2_MAC, "eth1"),
    ] {
        ns.ip(&["-6", "neigh", "replace", addr, "lladdr", &mac_str(mac), "dev", dev, "nud", "permanent"])?;
    }
    Ok(())
}

/// The director namespace: eth0 (clients, `vips`, DR real servers, the router toward the TUN
/// real servers' 10.99.0.0/24), eth1 (NAT real servers), forwarding on, permanent neighbours.
pub struct DirectorNs {
    pub ns: Netns,
    pub eth0: u32,
    pub eth1: u32,
    pub eth0_mac: [u8; 6],
    pub eth1_mac: [u8; 6],
}

impl DirectorNs {
    pub fn new(tag: &str, vips: &[[u8; 4]]) -> anyhow::Result<DirectorNs> {
        let ns = Netns::new(&unique_prefix(tag))?;
        for (a, b) in [("eth0", "peer0"), ("eth1", "peer1")] {
            ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
            ns.ip(&["link", "set", a, "up"])?;
            ns.ip(&["link", "set", b, "up"])?;
        }
        ns.ip(&["addr", "add", "192.168.88.5/24", "dev", "eth0"])?;
        ns.ip(&["addr", "add", "192.168.99.5/24", "dev", "eth1"])?;
        // The FIB's forwarding view honours a route MTU only when locked (or with
        // ip_forward_use_pmtu).
        let mtu = TUN_MTU.to_string();
        ns.ip(&["route", "add", "10.99.0.0/24", "via", "192.168.88.1", "mtu", "lock", &mtu])?;
        for vip in vips {
            ns.ip(&["addr", "add", &format!("{}/32", Ipv4Addr::from(*vip)), "dev", "eth0"])?;
        }
        for (addr, mac, dev) in [
            (CLIENT, CLIENT_MAC, "eth0"),
            (CLIENT2, CLIENT_MAC, "eth0"),
            (ROUTER, ROUTER_MAC, "eth0"),
            (WEB1, WEB1_MAC, "eth0"),
            (WEB2, WEB2_MAC, "eth0"),
            (NAT1, NAT1_MAC, "eth1"),
            (NAT2, NAT2_MAC, "eth1"),
        ] {
            let a = Ipv4Addr::from(addr).to_string();
            ns.ip(&["neigh", "replace", &a, "lladdr", &mac_str(mac), "dev", dev, "nud", "permanent"])?;
        }
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        add_ipv6(&ns)?;
        let read_mac = |dev: &str| -> anyhow::Result<[u8; 6]> {
            let out = ns.ip(&["-br", "link", "show", dev])?;
            let txt = out.split_whitespace().nth(2).context("no MAC")?.to_string();
            let v: Vec<u8> = txt.split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
            anyhow::ensure!(v.len() == 6, "bad MAC {txt}");
            Ok([v[0], v[1], v[2], v[3], v[4], v[5]])
        };
        let ifindex = |dev: &str| -> anyhow::Result<u32> {
            Ok(ns.exec("cat", &[&format!("/sys/class/net/{dev}/ifindex")])?.trim().parse()?)
        };
        Ok(DirectorNs {
            eth0: ifindex("eth0")?,
            eth1: ifindex("eth1")?,
            eth0_mac: read_mac("eth0")?,
            eth1_mac: read_mac("eth1")?,
            ns,
        })
    }
}
