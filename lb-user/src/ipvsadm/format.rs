//! Everything ipvsadm prints on stdout: usage, version, the listings (`-L` and its formats),
//! `-S` rules, `--timeout`, `-c`.
//!
//! Hand-written: these are ipvsadm's printf layouts, which ldirectord and scripts parse byte for byte.

use std::io::Write;
use std::net::IpAddr;

use super::names::{addrport, truncate_bytes};
use crate::model::{Af, ConnEntry, Dest, Fwd, Proto, Service, SvcKey, Table};
use lb_common::{SVC_F_ONEPACKET, SVC_F_PERSISTENT, SVC_F_SCHED1, SVC_F_SCHED2, SVC_F_SCHED3};

// Listing format flags (ipvsadm's FMT_*): what `-n`, `--stats`, `-S`, ... ask of a listing.
pub const FMT_NUMERIC: u32 = 0x0001;
pub const FMT_RULE: u32 = 0x0002;
pub const FMT_STATS: u32 = 0x0004;
pub const FMT_RATE: u32 = 0x0008;
pub const FMT_THRESHOLDS: u32 = 0x0010;
pub const FMT_PERSISTENTCONN: u32 = 0x0020;
pub const FMT_NOSORT: u32 = 0x0040;
pub const FMT_EXACT: u32 = 0x0080;
pub const FMT_TUN_INFO: u32 = 0x0100;

const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)";
const SCHEDULERS: &str = "rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh";
const PE_LIST: &str = "sip";

pub fn version(w: &mut dyn Write) {
    let _ = writeln!(w, "{VERSION_LINE}");
}

/// `usage_exit(program, 0)`.
pub fn usage(w: &mut dyn Write, p: &str) {
    version(w);
    let mut s = String::new();
    s.push_str("Usage:\n");
    for l in [
        "-A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]",
        "-D virtual-service",
        "-C",
        "-R",
        "-S [-n]",
        "-a|e virtual-service -r server-address [options]",
        "-d virtual-service -r server-address",
        "-L|l [virtual-service] [options]",
        "-Z [virtual-service]",
        "--set tcp tcpfin udp",
        "--start-daemon {master|backup} [daemon-options]",
        "--stop-daemon {master|backup}",
        "-h",
    ] {
        s.push_str(&format!("  {p} {l}\n"));
    }
    s.push('\n');
    s.push_str(concat!(
        "Commands:\n",
        "Either long or short options are allowed.\n",
        "  --add-service     -A        add virtual service with options\n",
        "  --edit-service    -E        edit virtual service with options\n",
        "  --delete-service  -D        delete virtual service\n",
        "  --clear           -C        clear the whole table\n",
        "  --restore         -R        restore rules from stdin\n",
        "  --save            -S        save rules to stdout\n",
        "  --add-server      -a        add real server with options\n",
        "  --edit-server     -e        edit real server with options\n",
        "  --delete-server   -d        delete real server\n",
        "  --list            -L|-l     list the table\n",
        "  --zero            -Z        zero counters in a service or all services\n",
        "  --set tcp tcpfin udp        set connection timeout values\n",
        "  --start-daemon              start connection sync daemon\n",
        "  --stop-daemon               stop connection sync daemon\n",
        "  --help            -h        display this help message\n\n",
        "virtual-service:\n",
        "  --tcp-service|-t  service-address   service-address is host[:port]\n",
        "  --udp-service|-u  service-address   service-address is host[:port]\n",
        "  --sctp-service    service-address   service-address is host[:port]\n",
        "  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n",
        "\n",
        "Options:\n",
        "  --ipv6         -6                   fwmark entry uses IPv6\n",
    ));
    s.push_str(&format!("  --scheduler    -s scheduler         one of {SCHEDULERS},\n"));
    s.push_str("                                      the default scheduler is wlc.\n");
    s.push_str(&format!("  --pe            engine              alternate persistence engine may be {PE_LIST},\n"));
    s.push_str(concat!(
        "                                      not set by default.\n",
        "  --persistent   -p [timeout]         persistent service\n",
        "  --netmask      -M netmask           persistent granularity mask\n",
        "  --real-server  -r server-address    server-address is host (and port)\n",
        "  --gatewaying   -g                   gatewaying (direct routing) (default)\n",
        "  --ipip         -i                   ipip encapsulation (tunneling)\n",
        "  --masquerading -m                   masquerading (NAT)\n",
        "  --tun-type      type                one of ipip|gue|gre,\n",
        "                                      the default tunnel type is ipip.\n",
        "  --tun-port      port                tunnel destination port\n",
        "  --tun-nocsum                        tunnel encapsulation without checksum\n",
        "  --tun-csum                          tunnel encapsulation with checksum\n",
        "  --tun-remcsum                       tunnel encapsulation with remote checksum\n",
        "  --weight       -w weight            capacity of real server\n",
        "  --u-threshold  -x uthreshold        upper threshold of connections\n",
        "  --l-threshold  -y lthreshold        lower threshold of connections\n",
        "  --connection   -c                   output of current IPVS connections\n",
        "  --timeout                           output of timeout (tcp tcpfin udp)\n",
        "  --daemon                            output of daemon information\n",
        "  --stats                             output of statistics information\n",
        "  --rate                              output of rate information\n",
        "  --exact                             expand numbers (display exact values)\n",
        "  --thresholds                        output of thresholds information\n",
        "  --persistent-conn                   output of persistent connection info\n",
        "  --tun-info                          output of tunnel information\n",
        "  --nosort                            disable sorting output of service/server entries\n",
        "  --sort                              does nothing, for backwards compatibility\n",
        "  --ops          -o                   one-packet scheduling\n",
        "  --numeric      -n                   numeric output of addresses and ports\n",
        "  --sched-flags  -b flags             scheduler flags (comma-separated)\n",
        "Daemon Options:\n",
        "  --syncid sid                        syncid for connection sync (default=255)\n",
        "  --sync-maxlen length                Max sync message length (default=1472)\n",
        "  --mcast-interface interface         multicast interface for connection sync\n",
        "  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n",
        "  --mcast-port port                   UDP port (default=8848)\n",
        "  --mcast-ttl ttl                     Multicast TTL (default=1)\n",
    ));
    let _ = w.write_all(s.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Sorting: ipvsadm's comparators (with their unsigned-wrap quirk) run through glibc's merge sort.

/// glibc `qsort` (its top-down merge sort `msort_with_tmp`), so that a non-transitive
/// comparator gives the same order as ipvsadm.
pub fn glibc_msort<T: Clone>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    {
        let (a, b) = v.split_at_mut(n1);
        glibc_msort(a, cmp);
        glibc_msort(b, cmp);
    }
    let mut tmp: Vec<T> = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            tmp.push(v[i].clone());
            i += 1;
        } else {
            tmp.push(v[j].clone());
            j += 1;
        }
    }
    tmp.extend_from_slice(&v[i..n1]);
    let done = tmp.len();
    v[..done].clone_from_slice(&tmp);
}

/// Host-order words of an address as the kernel reports it (IPv4 in the first word).
fn words(a: &IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from(*v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            std::array::from_fn(|i| u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
        }
    }
}

/// `int r = ntohl(a) - ntohl(b)`.
fn wrap_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn af_num(af: Af) -> i32 {
    match af {
        Af::Inet => 2,
        Af::Inet6 => 10,
    }
}

/// Fields of a service as ipvsadm receives them: (fwmark, af, protocol, addr, port).
fn svc_fields(s: &Service) -> (u32, Af, u8, [u32; 4], u16) {
    match s.key {
        SvcKey::Inet { proto, addr, port } => (0, Af::of(&addr), proto.number(), words(&addr), port),
        SvcKey::Fwmark { mark, af } => (mark, af, 0, [0; 4], 0),
    }
}

/// `ipvs_cmp_services`.
fn cmp_services(a: &Service, b: &Service) -> i32 {
    let (fa, afa, pa, aa, pta) = svc_fields(a);
    let (fb, afb, pb, ab, ptb) = svc_fields(b);
    let r = wrap_diff(fa, fb);
    if r != 0 {
        return r;
    }
    let r = af_num(afa) - af_num(afb);
    if r != 0 {
        return r;
    }
    let r = i32::from(pa) - i32::from(pb);
    if r != 0 {
        return r;
    }
    let r = if afa == Af::Inet6 {
        (0..4).map(|i| wrap_diff(aa[i], ab[i])).find(|&r| r != 0).unwrap_or(0)
    } else {
        wrap_diff(aa[0], ab[0])
    };
    if r != 0 {
        return r;
    }
    i32::from(pta) - i32::from(ptb)
}

/// `ipvs_cmp_dests`.
fn cmp_dests(a: &Dest, b: &Dest) -> i32 {
    let (wa, wb) = (words(&a.addr), words(&b.addr));
    let r = if a.addr.is_ipv6() {
        (0..4).map(|i| wrap_diff(wa[i], wb[i])).find(|&r| r != 0).unwrap_or(0)
    } else {
        wrap_diff(wa[0], wb[0])
    };
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// Services in listing order: sorted like ipvsadm, or creation order with `--nosort`.
pub fn sorted_services(t: &Table, format: u32) -> Vec<Service> {
    let mut v = t.services.clone();
    if format & FMT_NOSORT == 0 {
        glibc_msort(&mut v, &cmp_services);
    }
    v
}

fn sorted_dests(s: &Service, format: u32) -> Vec<Dest> {
    let mut v = s.dests.clone();
    if format & FMT_NOSORT == 0 {
        glibc_msort(&mut v, &cmp_dests);
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Listing

fn proto_num(s: &Service) -> u8 {
    match s.key {
        SvcKey::Inet { proto, .. } => proto.number(),
        SvcKey::Fwmark { .. } => 0,
    }
}

/// `print_largenum`.
fn largenum(n: u64, format: u32) -> String {
    if format & FMT_EXACT != 0 {
        let len = n.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        return format!("{n:>w$}");
    }
    if n < 100_000_000 {
        format!("{n:>9}")
    } else if n < 1_000_000_000 {
        format!("{:>8}K", n / 1000)
    } else if n < 100_000_000_000 {
        format!("{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        format!("{:>8}G", n / 1_000_000_000)
    } else {
        format!("{:>8}T", n / 1_000_000_000_000)
    }
}

/// `print_sched_flags`.
fn sched_flags(s: &Service) -> String {
    let mut v: Vec<&str> = Vec::new();
    match s.sched.as_str() {
        "sh" | "mh" => {
            let sh = s.sched == "sh";
            if s.flags & SVC_F_SCHED1 != 0 {
                v.push(if sh { "sh-fallback" } else { "mh-fallback" });
            }
            if s.flags & SVC_F_SCHED2 != 0 {
                v.push(if sh { "sh-port" } else { "mh-port" });
            }
        }
        _ => {
            for (f, n) in [(SVC_F_SCHED1, "flag-1"), (SVC_F_SCHED2, "flag-2"), (SVC_F_SCHED3, "flag-3")] {
                if s.flags & f != 0 {
                    v.push(n);
                }
            }
        }
    }
    v.join(",")
}

fn fwd_name(f: Fwd) -> &'static str {
    match f {
        Fwd::Masq => "Masq",
        Fwd::Local => "Local",
        Fwd::Tunnel => "Tunnel",
        Fwd::Route => "Route",
    }
}

fn fwd_switch(f: Fwd) -> &'static str {
    match f {
        Fwd::Masq => "-m",
        Fwd::Tunnel => "-i",
        Fwd::Local | Fwd::Route => "-g",
    }
}

const TUN_FLAGS: [&str; 3] = ["-c", "+c", "r+c"];
const TUN_FLAG_OPTS: [&str; 3] = ["--tun-nocsum", "--tun-csum", "--tun-remcsum"];

fn tun_flag(d: &Dest) -> &'static str {
    TUN_FLAGS.get(usize::from(d.tunnel.flags)).copied().unwrap_or("?")
}

/// `fwd_tun_info`.
fn tun_info(d: &Dest) -> String {
    if d.fwd != Fwd::Tunnel {
        return "n/a".into();
    }
    match d.tunnel.kind {
        0 => "ipip".into(),
        1 => format!("gue:{}:{}", d.tunnel.port, tun_flag(d)),
        2 => format!("gre:{}", tun_flag(d)),
        _ => "n/a".into(),
    }
}

fn print_title(out: &mut Vec<u8>, format: u32) {
    let s = if format & FMT_STATS != 0 {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if format & FMT_RATE != 0 {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        )
    } else if format & FMT_THRESHOLDS != 0 {
        format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if format & FMT_PERSISTENTCONN != 0 {
        format!(
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if format & FMT_TUN_INFO != 0 {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string()
    } else if format & FMT_RULE == 0 {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    } else {
        String::new()
    };
    out.extend_from_slice(s.as_bytes());
}

/// A persistent service's netmask when it is not the family's full mask: dotted IPv4, or the
/// IPv6 prefix length (printed with %d).
fn netmask(s: &Service) -> Option<String> {
    match s.key.af() {
        Af::Inet if s.netmask != 0xffff_ffff => Some(std::net::Ipv4Addr::from(s.netmask).to_string()),
        Af::Inet6 if s.netmask != 128 => Some((s.netmask as i32).to_string()),
        _ => None,
    }
}

/// `print_service_entry`.
fn print_service(out: &mut Vec<u8>, s: &Service, format: u32) {
    let numeric = format & FMT_NUMERIC != 0;
    let rule = format & FMT_RULE != 0;
    let af = s.key.af();
    let svc_name = match s.key {
        SvcKey::Fwmark { mark, af } => {
            // ipvsadm prints the mark with %d.
            let m = mark as i32;
            match (rule, af) {
                (true, Af::Inet6) => format!("-f {m} -6"),
                (true, Af::Inet) => format!("-f {m}"),
                (false, Af::Inet6) => format!("FWM  {m} IPv6"),
                (false, Af::Inet) => format!("FWM  {m}"),
            }
        }
        SvcKey::Inet { proto, addr, port } => {
            let vname = addrport(&addr, port, proto.number(), numeric);
            if rule {
                let stype = match proto {
                    Proto::Tcp => "-t",
                    Proto::Udp => "-u",
                    Proto::Sctp => "--sctp-service",
                };
                format!("{stype} {vname}")
            } else {
                let mut n = format!("{:<4} {vname}", proto.name());
                if af != Af::Inet6 {
                    truncate_bytes(&mut n, 33);
                }
                n
            }
        }
    };
    let persistent = s.flags & SVC_F_PERSISTENT != 0;
    let has_sched_flags = s.flags & (SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3) != 0;
    let mut line = String::new();
    if rule {
        line.push_str(&format!("-A {svc_name} -s {}", s.sched));
        if persistent {
            line.push_str(&format!(" -p {}", s.timeout));
            if let Some(m) = netmask(s) {
                line.push_str(&format!(" -M {m}"));
            }
        }
        if !s.pe_name.is_empty() {
            line.push_str(&format!(" --pe {}", s.pe_name));
        }
        if s.flags & SVC_F_ONEPACKET != 0 {
            line.push_str(" -o");
        }
        if has_sched_flags {
            line.push_str(&format!(" -b {}", sched_flags(s)));
        }
    } else if format & FMT_STATS != 0 {
        line.push_str(&format!("{svc_name:<33}"));
        for n in [s.stats.conns, s.stats.inpkts, s.stats.outpkts, s.stats.inbytes, s.stats.outbytes] {
            line.push_str(&largenum(n, format));
        }
    } else if format & FMT_RATE != 0 {
        line.push_str(&format!("{svc_name:<33}"));
        for n in [s.rates.cps, s.rates.inpps, s.rates.outpps, s.rates.inbps, s.rates.outbps] {
            line.push_str(&largenum(n, format));
        }
    } else {
        line.push_str(&format!("{svc_name} {}", s.sched));
        if has_sched_flags {
            line.push_str(&format!(" ({})", sched_flags(s)));
        }
        if persistent {
            line.push_str(&format!(" persistent {}", s.timeout));
            if let Some(m) = netmask(s) {
                line.push_str(&format!(" mask {m}"));
            }
            if !s.pe_name.is_empty() {
                line.push_str(&format!(" pe {}", s.pe_name));
            }
        }
        if s.flags & SVC_F_ONEPACKET != 0 {
            line.push_str(" ops");
        }
    }
    line.push('\n');
    out.extend_from_slice(line.as_bytes());

    let proto = proto_num(s);
    for d in sorted_dests(s, format) {
        let mut dname = addrport(&d.addr, d.port, proto, numeric);
        if !rule && !d.addr.is_ipv6() {
            truncate_bytes(&mut dname, 28);
        }
        let l = if rule {
            let base = format!("-a {svc_name} -r {dname} {} -w {}", fwd_switch(d.fwd), d.weight);
            if d.fwd == Fwd::Tunnel {
                let opt = TUN_FLAG_OPTS.get(usize::from(d.tunnel.flags)).copied().unwrap_or("");
                match d.tunnel.kind {
                    2 => format!("{base} --tun-type gre {opt}\n"),
                    1 => format!("{base} --tun-type gue --tun-port {} {opt}\n", d.tunnel.port),
                    0 => format!("{base} --tun-type ipip\n"),
                    _ => format!("{base}\n"),
                }
            } else {
                format!("{base}\n")
            }
        } else if format & FMT_STATS != 0 {
            let mut l = format!("  -> {dname:<28}");
            for n in [d.stats.conns, d.stats.inpkts, d.stats.outpkts, d.stats.inbytes, d.stats.outbytes] {
                l.push_str(&largenum(n, format));
            }
            l.push('\n');
            l
        } else if format & FMT_RATE != 0 {
            let mut l = format!("  -> {dname:<28} {:>8} {:>8} {:>8}", d.rates.cps, d.rates.inpps, d.rates.outpps);
            l.push_str(&largenum(d.rates.inbps, format));
            l.push_str(&largenum(d.rates.outbps, format));
            l.push('\n');
            l
        } else if format & FMT_THRESHOLDS != 0 {
            format!(
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}\n",
                d.u_threshold, d.l_threshold, d.active_conns, d.inact_conns
            )
        } else if format & FMT_PERSISTENTCONN != 0 {
            format!(
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}\n",
                d.weight as u32, d.persist_conns, d.active_conns, d.inact_conns
            )
        } else if format & FMT_TUN_INFO != 0 {
            format!(
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}\n",
                fwd_name(d.fwd),
                tun_info(&d),
                d.weight,
                d.active_conns,
                d.inact_conns
            )
        } else {
            format!(
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}\n",
                fwd_name(d.fwd),
                d.weight,
                d.active_conns,
                d.inact_conns
            )
        };
        out.extend_from_slice(l.as_bytes());
    }
}

/// `list_all`: version line (unless rules), title, every service.
pub fn list_all(t: &Table, format: u32) -> Vec<u8> {
    let mut out = Vec::new();
    if format & FMT_RULE == 0 {
        let v = lb_common::IPVS_VERSION;
        let line = format!(
            "IP Virtual Server version {}.{}.{} (size={})\n",
            (v >> 16) & 0xff,
            (v >> 8) & 0xff,
            v & 0xff,
            lb_common::IPVS_CONN_TAB_SIZE
        );
        out.extend_from_slice(line.as_bytes());
    }
    print_title(&mut out, format);
    for s in sorted_services(t, format) {
        print_service(&mut out, &s, format);
    }
    out
}

/// `list_service`: title and one service.
pub fn list_service(s: &Service, format: u32) -> Vec<u8> {
    let mut out = Vec::new();
    print_title(&mut out, format);
    print_service(&mut out, s, format);
    out
}

/// `list_timeout`.
pub fn list_timeout(t: &Table) -> Vec<u8> {
    let to = &t.timeouts;
    format!("Timeout (tcp tcpfin udp): {} {} {}\n", to.tcp as i32, to.tcp_fin as i32, to.udp as i32).into_bytes()
}

/// `list_daemon`: a line per running sync daemon, master first.
pub fn list_daemons(d: &crate::model::SyncDaemons) -> Vec<u8> {
    let mut s = String::new();
    for (state, cfg) in [("master", &d.master), ("backup", &d.backup)] {
        if let Some(c) = cfg {
            s += &format!(
                "{state} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})\n",
                c.ifname, c.syncid, c.maxlen, c.group, c.port, c.ttl
            );
        }
    }
    s.into_bytes()
}

/// `list_conn`: the connection entries.
pub fn list_conn(conns: &[ConnEntry], format: u32) -> Vec<u8> {
    let mut s = String::from("IPVS connection entries\n");
    if format & FMT_PERSISTENTCONN != 0 {
        s.push_str(&format!(
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} {}\n",
            "state", "source", "virtual", "destination", "pe name", "pe_data"
        ));
    } else {
        s.push_str(&format!("pro expire {:<11} {:<18} {:<18} {}\n", "state", "source", "virtual", "destination"));
    }
    let numeric = format & FMT_NUMERIC != 0;
    for c in conns {
        let proto = match c.proto {
            "TCP" => lb_common::IPPROTO_TCP,
            "UDP" => lb_common::IPPROTO_UDP,
            "SCTP" => lb_common::IPPROTO_SCTP,
            _ => 0,
        };
        let cname = addrport(&c.caddr, c.cport, proto, numeric);
        let vname = addrport(&c.vaddr, c.vport, proto, numeric);
        let dname = addrport(&c.daddr, c.dport, proto, numeric);
        let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
        s.push_str(&format!("{:<3} {:<6} {:<11} {:<18} {:<18} {}\n", c.proto, expire, c.state, cname, vname, dname));
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largenum_forms() {
        assert_eq!(largenum(0, 0), "        0");
        assert_eq!(largenum(99_999_999, 0), " 99999999");
        assert_eq!(largenum(100_000_000, 0), "  100000K");
        assert_eq!(largenum(1_000_000_000, 0), "    1000M");
        assert_eq!(largenum(100_000_000_000, 0), "     100G");
        assert_eq!(largenum(100_000_000_000_000, 0), "     100T");
        assert_eq!(largenum(123_456_789_012, FMT_EXACT), " 123456789012");
        assert_eq!(largenum(5, FMT_EXACT), "        5");
    }

    #[test]
    fn msort_matches_plain_sort_on_total_orders() {
        let mut v = vec![5, 3, 9, 1, 1, 7, 2];
        glibc_msort(&mut v, &|a: &i32, b: &i32| a - b);
        assert_eq!(v, vec![1, 1, 2, 3, 5, 7, 9]);
    }

    #[test]
    fn ipv4_wrap_quirk() {
        // 192.168.0.1 - 10.0.0.1 wraps negative: 192.168.0.1 sorts first.
        let a = u32::from(std::net::Ipv4Addr::new(192, 168, 0, 1));
        let b = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert!(wrap_diff(a, b) < 0);
        assert!(wrap_diff(b, a) > 0);
    }
}

/// `-Lnc` / `-Lc` of real IPv6 (and IPv4) connections, against the oracle: the kernel's raw
/// `/proc/net/ip_vs_conn` lines (read just before and just after) give each connection, and
/// ipvsadm's listing of the same moment is what [`list_conn`] must print, byte for byte.
/// Recorded by `tests/oracle/record-traffic.py` (`tests/golden/traffic/oracle.json`).
#[cfg(test)]
mod conn_oracle {
    use super::*;
    use crate::model::ConnEntry;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn block(doc: &serde_json::Value, name: &str) -> String {
        doc["blocks"][name]["text"].as_str().map(str::to_string).unwrap_or_default()
    }

    /// One `/proc/net/ip_vs_conn` address: 8 hex digits (IPv4) or the full IPv6 form.
    fn proc_addr(s: &str) -> Option<IpAddr> {
        if s.contains(':') {
            s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            u32::from_str_radix(s, 16).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v)))
        }
    }

    /// A proc line: the connection, and its expiry in seconds.
    fn proc_conn(line: &str) -> Option<ConnEntry> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let port = |s: &str| u16::from_str_radix(s, 16).ok();
        let proto: &'static str = match *w.first()? {
            "TCP" => "TCP",
            "UDP" => "UDP",
            _ => return None,
        };
        let state: &'static str = match *w.get(7)? {
            "TIME_WAIT" => "TIME_WAIT",
            "UDP" => "UDP",
            "ESTABLISHED" => "ESTABLISHED",
            "FIN_WAIT" => "FIN_WAIT",
            _ => return None,
        };
        Some(ConnEntry {
            proto,
            expires: w.get(8)?.parse().ok()?,
            state,
            caddr: proc_addr(w.get(1)?)?,
            cport: port(w.get(2)?)?,
            vaddr: proc_addr(w.get(3)?)?,
            vport: port(w.get(4)?)?,
            daddr: proc_addr(w.get(5)?)?,
            dport: port(w.get(6)?)?,
        })
    }

    fn check(doc: &serde_json::Value, listing: &str, format: u32) {
        let before: Vec<ConnEntry> = block(doc, "p1").lines().skip(1).filter_map(proc_conn).collect();
        let after: Vec<ConnEntry> = block(doc, "p4").lines().skip(1).filter_map(proc_conn).collect();
        let want = block(doc, listing);
        assert!(before.len() >= 8 && before.len() == after.len(), "{before:?}");
        assert!(before.iter().filter(|c| c.caddr.is_ipv6()).count() >= 5);
        let mut want_lines = want.lines();
        let empty = String::from_utf8(list_conn(&[], format)).unwrap_or_default();
        for h in empty.lines() {
            assert_eq!(want_lines.next(), Some(h), "{listing} header");
        }
        for (c, later) in before.iter().zip(&after) {
            let line = want_lines.next().unwrap_or_default();
            // The listing was read between the two proc reads: its expiry is one of theirs.
            let ok = (later.expires..=c.expires).any(|e| {
                let one = ConnEntry { expires: e, ..c.clone() };
                let text = String::from_utf8(list_conn(&[one], format)).unwrap_or_default();
                text.lines().nth(2) == Some(line)
            });
            assert!(ok, "{listing}: {c:?} is not printed as `{line}`");
        }
        assert_eq!(want_lines.next(), None);
    }

    #[test]
    fn ipv6_connections_listed_as_ipvsadm_does() {
        let path = super::super::recording::golden_dir().join("../traffic/oracle.json");
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default();
        assert!(doc["kernel"].is_string(), "{} unreadable", path.display());
        check(&doc, "p2", FMT_NUMERIC);
        check(&doc, "p3", 0);
    }
}
