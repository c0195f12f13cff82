//! TUN labs for every tunnel type IPVS builds, with real TCP and UDP: GUE and GRE over IPv4 and
//! IPv6 (each with a checksum option), and mixed families (an IPv6 service over IPv4 real servers,
//! and the reverse), IPIP/IPv6-in-IPv4 and IPv4-in-IPv6. The real servers sit behind a router and
//! decapsulate with xlb's decap program (this kernel has no fou/gre/ipip devices); they answer the
//! client straight through the router.
use xlb_tests::{
    lab::{Lab, Mode, RS1, RS1_6, RS2, RS2_6, VIP, VIP6},
    lab_checks::{Service, exercise},
};

/// The GUE port of the services below (IPVS has no default: `--tun-port` is required).
const GUE_PORT: &str = "6080";

/// A TUN lab (dual-stack when `v6`), one service of `vip` over `reals` with `flags`; every packet
/// the director took in crosses the server side as `wire` says (a pcap filter on the outer
/// headers: an IPIP packet would not match a GRE filter); every real server's row of
/// `ipvsadm -Ln --tun-info` ends in `info` (ipvsadm's tunnel column).
fn tunnel(tag: &str, v6: bool, vip: &str, reals: [&str; 2], flags: &str, wire: &str, info: &str) {
    let lab = if v6 { Lab::new6(tag, Mode::Tun) } else { Lab::new(tag, Mode::Tun) }.expect("lab");
    // GUE has no well-known port: the real servers' decap takes the one the director uses.
    let decap: &[&str] = if flags.contains("gue") { &["--gue-port", GUE_PORT] } else { &[] };
    lab.attach_with_decap(decap).expect("attach");
    let s = Service { vip, reals, flags, real_port: 80, udp_sports: (5001, 5002), wire: Some(wire) };
    let out = exercise(&lab, &s).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.diagnose()));
    println!("{}", out.listing);
    let listing = lab.ipvsadm_ok(&["-Ln", "--tun-info"]).expect("listing");
    // "  -> ADDR:PORT  Tunnel  INFO  Weight ActiveConn InActConn"
    let rows: Vec<Vec<&str>> =
        listing.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).filter(|c| c.get(2) == Some(&"Tunnel")).collect();
    assert_eq!(rows.len(), 4, "two real servers in each of the TCP and UDP services:\n{listing}");
    assert!(rows.iter().all(|c| c.get(3) == Some(&info)), "tunnel info {info}:\n{listing}");
}

fn gue(csum: &str) -> String {
    format!("-i --tun-type gue --tun-port {GUE_PORT} {csum}")
}

#[test]
fn gue4_with_checksum() {
    // UDP to 6080 with a checksum, GUE version 0 with no options (first byte 0), IPv4 inside.
    let wire = "ip and udp dst port 6080 and udp[6:2] != 0 and udp[8] == 0 and udp[9] == 4";
    tunnel("gue4", false, VIP, [RS1, RS2], &gue("--tun-csum"), wire, "gue:6080:+c");
}

#[test]
fn gue6_without_checksum() {
    // After the 40-byte IPv6 header: UDP to 6080 with a zero checksum, GUE 0, IPv6 inside.
    let wire = "ip6 and ip6[6] == 17 and ip6[42:2] == 6080 and ip6[46:2] == 0 and ip6[48] == 0 and ip6[49] == 41";
    tunnel("gue6", true, VIP6, [RS1_6, RS2_6], &gue("--tun-nocsum"), wire, "gue:6080:-c");
}

#[test]
fn gre4_without_checksum() {
    // GRE after a 20-byte IPv4 header: no flags (no checksum), protocol IPv4.
    let wire = "ip proto 47 and ip[20] == 0 and ip[22:2] == 0x0800";
    tunnel("gre4", false, VIP, [RS1, RS2], "-i --tun-type gre --tun-nocsum", wire, "gre:-c");
}

#[test]
fn gre6_with_checksum() {
    // GRE after the IPv6 header: the checksum bit, protocol IPv6.
    let wire = "ip6 proto 47 and ip6[40] == 0x80 and ip6[42:2] == 0x86dd";
    tunnel("gre6", true, VIP6, [RS1_6, RS2_6], "-i --tun-type gre --tun-csum", wire, "gre:+c");
}

/// An IPv6 service over IPv4 real servers: IPv6 in IPv4 (IPIP's outer header, protocol 41).
#[test]
fn ipv6_service_over_ipv4_real_servers() {
    tunnel("mix64", true, VIP6, [RS1, RS2], "-i", "ip proto 41", "ipip");
}

/// An IPv4 service over IPv6 real servers: IPv4 in IPv6 (next header 4).
#[test]
fn ipv4_service_over_ipv6_real_servers() {
    tunnel("mix46", true, VIP, [RS1_6, RS2_6], "-i", "ip6 proto 4", "ipip");
}
