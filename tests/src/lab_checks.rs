//! One service of a lab exercised with real traffic: a TCP service on port 80 and a UDP service on
//! port 53 over the lab's two real servers (rr), curl and a UDP client in the client namespace,
//! and the checks every forwarding method shares: rr order, byte-exact bodies, UDP stickiness,
//! the director's in-counters equal to what the client sent (nftables), and the reply path
//! (straight to the client for DR/TUN, through the director for NAT, with out-counters equal to
//! what the client received).
use anyhow::{Context as _, bail, ensure};
use lb_user::model::{Counters, Proto, SvcKey};

use crate::lab::{Capture, Lab, NftCounter};

/// `addr:port` as ipvsadm and URLs write it: an IPv6 address in brackets.
pub fn sock(addr: &str, port: u16) -> String {
    if addr.contains(':') { format!("[{addr}]:{port}") } else { format!("{addr}:{port}") }
}

/// nftables' match on an address of the family of `addr` (`ip saddr` / `ip6 saddr`).
pub fn nft_addr(addr: &str, dir: &str) -> String {
    if addr.contains(':') { format!("ip6 {dir} {addr}") } else { format!("ip {dir} {addr}") }
}

/// The service to build and exercise.
pub struct Service<'a> {
    /// The address clients use (the VIP, or the director's own address for NAT).
    pub vip: &'a str,
    /// The real servers' addresses, web1's first (either family: mixed families for TUN).
    pub reals: [&'a str; 2],
    /// Forwarding flags of each real server (`-g`, `-m`, `-i --tun-type gue --tun-port 6080 ...`).
    pub flags: &'a str,
    /// The real servers' TCP port (NAT maps port 80 to it; DR/TUN keep 80).
    pub real_port: u16,
    /// Client source ports of the UDP queries (distinct per service of one lab).
    pub udp_sports: (u16, u16),
    /// TUN: a pcap filter every tunnelled packet matches on the wire toward the real servers
    /// (the outer header: its protocol, tunnel header, checksum flag); as many must pass the
    /// server-side switch as the director counted in (TCP and UDP).
    pub wire: Option<&'a str>,
}

/// What the run measured, for further checks by the caller.
pub struct Outcome {
    /// `ipvsadm -Ln --stats` after the traffic.
    pub listing: String,
    /// The TCP service's counters and its real servers' (in the table's order).
    pub tcp: Counters,
    pub dests: Vec<(String, Counters)>,
}

/// Builds the TCP and UDP services, sends 4 HTTP requests and 3 UDP queries, and checks them.
pub fn exercise(lab: &Lab, s: &Service) -> anyhow::Result<Outcome> {
    let (vip, flags) = (s.vip, s.flags);
    let tcp = sock(vip, 80);
    let udp = sock(vip, 53);
    let mut lines = vec![format!("-A -t {tcp} -s rr")];
    for (w, r) in s.reals.iter().enumerate() {
        lines.push(format!("-a -t {tcp} -r {} {flags} -w {}", sock(r, s.real_port), w + 1));
    }
    lines.push(format!("-A -u {udp} -s rr"));
    for r in s.reals {
        lines.push(format!("-a -u {udp} -r {} {flags}", sock(r, 53)));
    }
    for l in &lines {
        let args: Vec<&str> = l.split_whitespace().collect();
        lab.ipvsadm_ok(&args).with_context(|| format!("ipvsadm {l}"))?;
    }

    let sent = NftCounter::output(&lab.client.ns, &format!("{} tcp dport 80", nft_addr(vip, "daddr")))?;
    let got = NftCounter::input(&lab.client.ns, &format!("{} tcp sport 80", nft_addr(vip, "saddr")))?;
    let pcap = lab.dir.join(format!("director-{}.pcap", s.udp_sports.0));
    let at_director = Capture::start(&lab.sw, &lab.lvs1.port, &format!("src host {vip} and tcp src port 80"), pcap)?;
    let tunnelled = match (s.wire, &lab.sw2) {
        (Some(filter), Some(sw2)) => {
            let pcap = lab.dir.join(format!("wire-{}.pcap", s.udp_sports.0));
            Some(Capture::start(sw2, "sw2-router", filter, pcap)?)
        }
        (Some(_), None) => bail!("a wire filter needs the TUN lab's server-side switch"),
        (None, _) => None,
    };

    // rr over [web2, web1] (the newest real server first, as IPVS lists and schedules them).
    let want = ["web2", "web1", "web2", "web1"];
    for (i, w) in want.iter().enumerate() {
        let body = lab.curl_bytes(vip, 80, "/")?;
        ensure!(body == format!("Welcome from {w}\n").as_bytes(), "request {i} to {tcp} ({flags}): got {:?}, want {w}", String::from_utf8_lossy(&body));
    }
    let (a, b) = s.udp_sports;
    let answers = [lab.udp_query(vip, 53, a, "q1")?, lab.udp_query(vip, 53, b, "q2")?, lab.udp_query(vip, 53, a, "q3")?];
    ensure!(answers == ["web2: q1", "web1: q2", "web2: q3"], "UDP {udp} ({flags}): rr and stickiness: {answers:?}");

    let through_director = at_director.lines()?;
    let nat = flags.split_whitespace().any(|f| f == "-m");
    if nat {
        ensure!(!through_director.is_empty(), "NAT replies must pass the director");
    } else {
        ensure!(through_director.is_empty(), "replies reached the director ({flags}): {through_director:?}");
    }

    let (pkts, bytes) = sent.read()?;
    let (rpkts, rbytes) = got.read()?;
    let listing = lab.ipvsadm_ok(&["-Ln", "--stats"])?;
    let table = lb_user::store::Store::open_at(lab.pin_dir(), Default::default())?.load()?;
    let want_addr: std::net::IpAddr = vip.parse()?;
    let svc = table
        .services
        .iter()
        .find(|x| matches!(x.key, SvcKey::Inet { proto: Proto::Tcp, port: 80, addr } if addr == want_addr))
        .context("no TCP service in the table")?;
    let st = svc.stats;
    ensure!(
        (st.conns, st.inpkts, st.inbytes) == (4, pkts, bytes),
        "in-counters (conns, pkts, bytes) {:?} vs the client's output (4, {pkts}, {bytes}):\n{listing}",
        (st.conns, st.inpkts, st.inbytes)
    );
    if nat {
        ensure!((st.outpkts, st.outbytes) == (rpkts, rbytes), "NAT out-counters vs the client's input ({rpkts}, {rbytes}):\n{listing}");
    } else {
        ensure!((st.outpkts, st.outbytes) == (0, 0), "the director never sees DR/TUN replies:\n{listing}");
        ensure!(rpkts > 0, "the client got no replies");
    }
    if let Some(c) = tunnelled {
        let udp_in: u64 = table
            .services
            .iter()
            .filter(|x| matches!(x.key, SvcKey::Inet { proto: Proto::Udp, port: 53, addr } if addr == want_addr))
            .map(|x| x.stats.inpkts)
            .sum();
        let lines = c.lines()?;
        ensure!(
            lines.len() as u64 == st.inpkts + udp_in,
            "{} packets matching {:?} toward the real servers, the director took in {} TCP + {udp_in} UDP:\n{}",
            lines.len(),
            s.wire.unwrap_or_default(),
            st.inpkts,
            lines.join("\n")
        );
    }
    let dests: Vec<(String, Counters)> = svc.dests.iter().map(|d| (d.addr.to_string(), d.stats)).collect();
    for (d, c) in &dests {
        if c.conns != 2 {
            bail!("2 connections per real server, {d} has {}:\n{listing}", c.conns);
        }
    }
    Ok(Outcome { listing, tcp: st, dests })
}
