//! The seeds' configurations load unchanged; what lbd cannot honour is refused by line.
use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::model::{Fwd, Proto, SvcKey};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Seed 001 (heiqu.com, "LVS健康监测"): the ldirectord.cf as the page shows it.
#[test]
fn seed001_ldirectord_loads() {
    let text = include_str!("testdata/seed001-ldirectord.cf");
    assert_eq!(detect(text), Format::Ldirectord);
    let cfg = parse(text, Format::Auto).expect("seed 001 loads");
    assert!(cfg.autoreload);
    assert_eq!(cfg.logfile.as_deref(), Some(std::path::Path::new("/var/log/ldirectord.log")));
    assert_eq!(cfg.services.len(), 1);
    let s = &cfg.services[0];
    assert_eq!(s.spec.key, SvcKey::Inet { proto: Proto::Tcp, addr: ip("192.168.239.250"), port: 80 });
    assert_eq!(s.spec.sched, "wrr");
    assert_eq!(s.spec.flags, 0, "#persistent=600 is a comment");
    assert_eq!(s.reals.len(), 2);
    assert_eq!((s.reals[0].dest.addr, s.reals[0].dest.weight, s.reals[0].dest.fwd), (ip("192.168.239.129"), 1, Fwd::Route));
    assert_eq!((s.reals[1].dest.addr, s.reals[1].dest.weight), (ip("192.168.239.133"), 2));
    let r = &s.reals[0];
    assert!(!r.quiescent, "quiescent=no removes failed servers");
    assert_eq!(r.checks.len(), 1);
    let c = &r.checks[0];
    assert_eq!(c.target, "192.168.239.129:80".parse().expect("addr"));
    assert_eq!((c.interval, c.timeout, c.fail_after), (Duration::from_secs(1), Duration::from_secs(5), 1));
    match &c.kind {
        CheckKind::Http(h) => {
            assert_eq!((h.method.as_str(), h.path.as_str(), h.regex.as_deref()), ("GET", "/check.html", Some("This web is OK")));
        }
        k => panic!("negotiate/http expected, got {k:?}"),
    }
    assert!(s.fallback.is_none());
    // Its indentation is no-break spaces: still indentation.
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

/// Seed 000 (CSDN, "LVS之三"): the ldirectord.cf of the page with its wrapped comments put back
/// on their lines; its service directives are not indented (kept so: accepted with warnings).
#[test]
fn seed000_ldirectord_loads() {
    let cfg = parse(include_str!("testdata/seed000-ldirectord.cf"), Format::Ldirectord).expect("seed 000 loads");
    let s = &cfg.services[0];
    assert_eq!(s.spec.key, SvcKey::Inet { proto: Proto::Tcp, addr: ip("192.168.60.200"), port: 80 });
    assert_eq!(s.spec.sched, "rr");
    assert_eq!(s.reals.iter().map(|r| r.dest.addr).collect::<Vec<_>>(), [ip("192.168.60.132"), ip("192.168.60.144")]);
    let fb = s.fallback.as_ref().expect("fallback");
    assert_eq!((fb.addr, fb.port, fb.fwd, fb.weight), (ip("127.0.0.1"), 80, Fwd::Route, 1));
    let c = &s.reals[0].checks[0];
    assert_eq!((c.interval, c.timeout), (Duration::from_secs(10), Duration::from_secs(20)));
    match &c.kind {
        CheckKind::Http(h) => {
            assert_eq!((h.path.as_str(), h.host.as_str(), h.regex.as_deref()), ("/index.html", "www.gaojf.com", Some("ok")))
        }
        k => panic!("http expected, got {k:?}"),
    }
    assert!(cfg.warnings.iter().any(|w| w.line == 10 && w.msg.contains("not indented")), "{:?}", cfg.warnings);
}

/// Seed 002 ("LVS+keepalived"): the whole keepalived.conf, VRRP part and a wrapped comment
/// line inside virtual_server included (keepalived ignores the unknown word; so does lbd).
#[test]
fn seed002_keepalived_loads() {
    let text = include_str!("testdata/seed002-keepalived.conf");
    assert_eq!(detect(text), Format::Keepalived);
    let cfg = parse(text, Format::Auto).expect("seed 002 loads");
    assert_eq!(cfg.services.len(), 1);
    let s = &cfg.services[0];
    assert_eq!(s.spec.key, SvcKey::Inet { proto: Proto::Tcp, addr: ip("10.0.2.99"), port: 80 });
    assert_eq!((s.spec.sched.as_str(), s.spec.flags), ("wrr", 0));
    assert_eq!(s.reals.len(), 2);
    for (r, a) in s.reals.iter().zip(["10.0.2.62", "10.0.2.63"]) {
        assert_eq!((r.dest.addr, r.dest.port, r.dest.fwd, r.dest.weight), (ip(a), 80, Fwd::Route, 1));
        assert!(!r.quiescent);
        let c = &r.checks[0];
        assert_eq!(c.kind, CheckKind::Connect);
        assert_eq!((c.interval, c.timeout, c.fail_after, c.retry_delay), (
            Duration::from_secs(6),
            Duration::from_secs(3),
            4,
            Duration::from_secs(3)
        ));
    }
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].msg.contains("适用于长连接的情况"));
}

#[test]
fn keepalived_http_get_sorry_server_and_inhibit() {
    let text = "virtual_server 192.168.88.15 80\n{\n  delay_loop 1\n  lb_algo rr\n  lb_kind DR\n  sorry_server 192.168.88.50 80\n\
                real_server 192.168.88.100 80 {\n    weight 2\n    inhibit_on_failure\n    HTTP_GET {\n      url { path /health\n \
                status_code 200\n }\n      connect_timeout 1\n      retry 1\n      delay_before_retry 1\n    }\n  }\n}\n";
    let cfg = parse(text, Format::Auto).expect("loads");
    let s = &cfg.services[0];
    assert_eq!(s.fallback.as_ref().map(|f| f.addr), Some(ip("192.168.88.50")));
    let r = &s.reals[0];
    assert!(r.quiescent);
    assert_eq!(r.dest.weight, 2);
    assert_eq!(r.checks[0].fail_after, 2);
    assert!(matches!(&r.checks[0].kind, CheckKind::Http(h) if h.path == "/health" && h.status == [(200, 200)]));
}

#[test]
fn errors_carry_line_numbers_and_refuse_the_file() {
    let text = "checkinterval=1\nemailalert=root@example.com\nvirtual=192.168.88.15:80\n    real=192.168.88.100:80 gate\n    \
                checktype=external-perl\n    bogus=1\n";
    let errs = parse(text, Format::Ldirectord).expect_err("refused");
    let lines: Vec<usize> = errs.iter().map(|d| d.line).collect();
    assert_eq!(lines, [2, 5, 6], "{errs:?}");
    let text = "virtual_server 10.0.0.1 80 {\n  lb_kind DR\n  real_server 10.0.0.2 80 {\n    PING_CHECK {\n    }\n  }\n}\n";
    let errs = parse(text, Format::Keepalived).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [4], "{errs:?}");
    assert!(errs[0].msg.contains("PING_CHECK"));
    let errs = parse("virtual_server 10.0.0.1 80 {\n lb_algo lblcx\n", Format::Keepalived).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [1, 2], "{errs:?}");
}

#[test]
fn ldirectord_globals_apply_and_virtual_overrides() {
    let text = "quiescent=yes\nfailurecount=3\ncheckinterval=2\nvirtual=10.0.0.1:8080\n\treal=10.0.0.2->10.0.0.4 masq 5\n\t\
                checktype=connect\n\tquiescent=no\n\tfallback=10.0.0.9:80 masq\nvirtual=7\n    real=10.0.0.2:80 gate\n    \
                checktype=connect\n";
    let cfg = parse(text, Format::Auto).expect("loads");
    let a = &cfg.services[0];
    assert_eq!(a.reals.len(), 3);
    assert!(a.reals.iter().all(|r| !r.quiescent && r.dest.port == 8080 && r.dest.fwd == Fwd::Masq && r.dest.weight == 5));
    assert_eq!(a.reals[0].checks[0].fail_after, 3);
    assert_eq!(a.reals[0].checks[0].interval, Duration::from_secs(2));
    assert_eq!(a.fallback.as_ref().map(|f| f.port), Some(80));
    let b = &cfg.services[1];
    assert_eq!(b.spec.key, SvcKey::Fwmark { mark: 7, af: crate::model::Af::Inet });
    assert!(b.reals[0].quiescent);
    assert_eq!(b.reals[0].checks[0].target.port(), 80);
}

/// ldirectord.cf's IPv6 forms as ldirectord 4.12 reads them: `virtual6 = [addr]:port` (or a
/// fwmark) with `real6` / `fallback6` (section or global) in brackets; `-M`-style netmask as a
/// prefix length; the IPv4 forms in a `virtual6` section and the IPv6 ones in a `virtual`
/// section are errors by line, with ldirectord's words.
#[test]
fn ldirectord_ipv6_forms_load() {
    let text = "checktimeout=3\n\
                fallback6=[2001:db8::99]:80\n\
                virtual6=[2001:db8::1]:80\n\
                \treal6=[2001:db8::10]:80 gate 3\n\
                \treal6=[2001:db8::11]:8080 masq\n\
                \treal6=[2001:db8::12] ipip\n\
                \tchecktype=connect\n\
                \tpersistent=60\n\
                \tnetmask=64\n\
                virtual6=7\n\
                \treal6=[2001:db8::20]:0 gate\n\
                \tfallback6=[::1]:80 gate\n\
                \tchecktype=on\n\
                virtual=192.168.88.15:80\n\
                \treal=192.168.88.100:80 gate\n\
                \tchecktype=connect\n";
    let cfg = parse(text, Format::Ldirectord).expect("IPv6 forms load");
    assert_eq!(cfg.services.len(), 3);
    let v = &cfg.services[0];
    assert_eq!(v.spec.key, SvcKey::Inet { proto: Proto::Tcp, addr: ip("2001:db8::1"), port: 80 });
    assert_eq!((v.spec.flags, v.spec.timeout, v.spec.netmask), (lb_common::SVC_F_PERSISTENT, 60, 64));
    let reals: Vec<_> = v.reals.iter().map(|r| (r.dest.addr, r.dest.port, r.dest.fwd, r.dest.weight)).collect();
    assert_eq!(
        reals,
        [
            (ip("2001:db8::10"), 80, Fwd::Route, 3),
            (ip("2001:db8::11"), 8080, Fwd::Masq, 1),
            (ip("2001:db8::12"), 80, Fwd::Tunnel, 1),
        ]
    );
    assert_eq!(v.reals[0].checks[0].target, "[2001:db8::10]:80".parse().expect("addr"));
    // The global fallback6 serves IPv6 sections (gate, the virtual's port).
    assert_eq!(v.fallback.as_ref().map(|f| (f.addr, f.port, f.fwd)), Some((ip("2001:db8::99"), 80, Fwd::Route)));
    let f = &cfg.services[1];
    assert_eq!(f.spec.key, SvcKey::Fwmark { mark: 7, af: crate::model::Af::Inet6 });
    assert_eq!(f.spec.netmask, 128);
    assert_eq!(f.fallback.as_ref().map(|f| (f.addr, f.port)), Some((ip("::1"), 80)));
    // An IPv4 section does not take the IPv6 fallback.
    assert!(cfg.services[2].fallback.is_none());

    let bad = "virtual=[2001:db8::1]:80\n\
               \treal=192.168.1.1:80 gate\n\
               virtual6=[2001:db8::2]:80\n\
               \treal=192.168.1.1:80 gate\n\
               \tfallback=127.0.0.1:80\n\
               \treal6=[2001:db8::5]->[2001:db8::9]:80 gate\n\
               \tnetmask=255.255.255.0\n\
               virtual=10.0.0.1:80\n\
               \treal6=[2001:db8::5]:80 gate\n\
               \treal=[2001:db8::6]:80 gate\n\
               virtual6=10.0.0.2:80\n\
               \treal6=[2001:db8::7]:80 gate\n";
    let errs = parse(bad, Format::Ldirectord).expect_err("refused");
    let got: Vec<(usize, &str)> = errs.iter().map(|d| (d.line, d.msg.as_str())).collect();
    let want: Vec<(usize, &str)> = vec![
        (1, "cannot specify an IPv6 address here. please use \"virtual6\" instead."),
        (4, "cannot specify \"real\" here.  please use \"real6\" instead"),
        (5, "cannot specify \"fallback\" here.  please use \"fallback6\" instead"),
        (6, "Address range for IPv6 is not supported yet"),
        (7, "bad netmask `255.255.255.0`"),
        (9, "cannot specify \"real6\" here.  please use \"real\" instead"),
        (10, "`2001:db8::6` is not an IPv4 address (use real6/virtual6)"),
        (11, "virtual6: `10.0.0.2` is not an IPv6 address"),
    ];
    assert_eq!(got, want, "{errs:?}");
}

/// keepalived.conf's IPv6 forms (keepalived 2.2): IPv6 virtual_server / real_server /
/// sorry_server / group members, `ip_family inet6` for a fwmark service (or the family taken
/// from its real servers), IPv6 persistence_granularity as a prefix length, IPv4 real servers
/// of an IPv6 service only when tunnelled, and `lvs_method TUN type gue port N csum` /
/// `type gre` tunnel options with IPVS's values.
#[test]
fn keepalived_ipv6_and_tunnel_forms_load() {
    use crate::model::{Af, Tunnel};
    let text = "virtual_server 2001:db8::1 80 {\n\
                \x20 lb_kind DR\n\
                \x20 persistence_timeout 60\n\
                \x20 persistence_granularity 64\n\
                \x20 sorry_server ::1 80\n\
                \x20 real_server 2001:db8::10 80 {\n  }\n\
                \x20 real_server 10.1.1.2 80 {\n    lvs_method TUN type gue port 6080 csum\n  }\n\
                \x20 real_server 10.1.1.3 80 {\n    lvs_method TUN type gre nocsum\n  }\n\
                }\n\
                virtual_server fwmark 3 {\n\
                \x20 ip_family inet6\n\
                \x20 lvs_method TUN type gue port 7000 remcsum\n\
                \x20 persistence_timeout 30\n\
                \x20 real_server 10.1.1.4 0 {\n  }\n\
                }\n\
                virtual_server fwmark 4 {\n\
                \x20 lb_kind NAT\n\
                \x20 persistence_timeout 30\n\
                \x20 real_server fd00::4 8080 {\n  }\n\
                }\n\
                virtual_server_group g6 {\n\
                \x20 2001:db8::5-6 443\n\
                }\n\
                virtual_server group g6 {\n\
                \x20 lb_kind DR\n\
                \x20 real_server 2001:db8::30 443 {\n  }\n\
                }\n";
    let cfg = parse(text, Format::Keepalived).expect("IPv6 forms load");
    assert_eq!(cfg.services.len(), 5);
    let v = &cfg.services[0];
    assert_eq!(v.spec.key, SvcKey::Inet { proto: Proto::Tcp, addr: ip("2001:db8::1"), port: 80 });
    assert_eq!(v.spec.netmask, 64);
    let reals: Vec<_> = v.reals.iter().map(|r| (r.dest.addr, r.dest.fwd, r.dest.tunnel)).collect();
    assert_eq!(
        reals,
        [
            (ip("2001:db8::10"), Fwd::Route, Tunnel::default()),
            (ip("10.1.1.2"), Fwd::Tunnel, Tunnel { kind: 1, port: 6080, flags: 1 }),
            (ip("10.1.1.3"), Fwd::Tunnel, Tunnel { kind: 2, port: 0, flags: 0 }),
        ]
    );
    assert_eq!(v.fallback.as_ref().map(|f| (f.addr, f.fwd)), Some((ip("::1"), Fwd::Route)));
    let f3 = &cfg.services[1];
    assert_eq!(f3.spec.key, SvcKey::Fwmark { mark: 3, af: Af::Inet6 });
    assert_eq!(f3.spec.netmask, 128);
    assert_eq!(f3.reals[0].dest.tunnel, Tunnel { kind: 1, port: 7000, flags: 2 });
    // No ip_family: the family of its (non-tunnelled) real servers.
    assert_eq!(cfg.services[2].spec.key, SvcKey::Fwmark { mark: 4, af: Af::Inet6 });
    let g: Vec<_> = cfg.services[3..].iter().map(|s| s.spec.key).collect();
    assert_eq!(
        g,
        [
            SvcKey::Inet { proto: Proto::Tcp, addr: ip("2001:db8::5"), port: 443 },
            SvcKey::Inet { proto: Proto::Tcp, addr: ip("2001:db8::6"), port: 443 },
        ]
    );

    let bad = "virtual_server 2001:db8::1 80 {\n\
               \x20 lb_kind DR\n\
               \x20 ip_family inet\n\
               \x20 real_server 10.0.0.2 80 {\n  }\n\
               \x20 real_server 2001:db8::2 80 {\n    lvs_method TUN type gue\n  }\n\
               \x20 real_server 2001:db8::3 80 {\n    lvs_method TUN type gre remcsum\n  }\n\
               \x20 real_server 2001:db8::4 80 {\n    lvs_method DR type gre\n  }\n\
               \x20 persistence_granularity 255.255.255.0\n\
               }\n";
    let errs = parse(bad, Format::Keepalived).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [3, 4, 7, 10, 13, 15], "{errs:?}");
    assert!(errs[1].msg.contains("only TUN real servers may differ"), "{errs:?}");
    assert!(errs[2].msg.contains("needs `port NUM`"), "{errs:?}");

    // A fwmark service's family from its non-tunnelled sorry server (its real server is
    // tunnelled from the other family); a group's from its members.
    let text = "virtual_server fwmark 8 {\n  lb_kind TUN\n  persistence_timeout 30\n  sorry_server fd00::99 0\n  sorry_server_lvs_method DR\n\
                \x20 real_server 10.1.1.9 0 {\n  }\n}\n\
                virtual_server_group g6 {\n  2001:db8::7 80\n}\n\
                virtual_server group g6 {\n  lb_kind DR\n  real_server 10.1.1.10 80 {\n  }\n}\n";
    let errs = parse(text, Format::Keepalived).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [14], "{errs:?}");
    let ok = text.lines().take(8).map(|l| format!("{l}\n")).collect::<String>();
    let cfg = parse(&ok, Format::Keepalived).expect("loads");
    assert_eq!(cfg.services[0].spec.key, SvcKey::Fwmark { mark: 8, af: Af::Inet6 });
    assert_eq!(cfg.services[0].reals[0].dest.fwd, Fwd::Tunnel);
}

/// Seed 000 (CSDN, "LVS之三"): piranha's lvs.cf exactly as the page shows it (trailing Chinese
/// comments after no-break spaces, three comment lines wrapped by the page, the virtual
/// server's name turned into a web link).
#[test]
fn seed000_lvs_cf_loads() {
    use piranha::Vip;
    let text = include_str!("testdata/seed000-lvs.cf");
    assert_eq!(detect(text), Format::Piranha);
    let cfg = parse(text, Format::Auto).expect("seed 000's lvs.cf loads");
    assert_eq!(cfg.services.len(), 1);
    let s = &cfg.services[0];
    assert_eq!(s.line, 13);
    assert_eq!(s.spec.key, SvcKey::Inet { proto: Proto::Tcp, addr: ip("192.168.60.200"), port: 80 });
    assert_eq!((s.spec.sched.as_str(), s.spec.flags, s.spec.timeout), ("rr", 0, 0));
    assert!(s.fallback.is_none());
    let reals: Vec<_> = s.reals.iter().map(|r| (r.line, r.dest.addr, r.dest.port, r.dest.fwd, r.dest.weight, r.quiescent)).collect();
    assert_eq!(
        reals,
        [(28, ip("192.168.60.132"), 80, Fwd::Route, 1, false), (33, ip("192.168.60.144"), 80, Fwd::Route, 1, false)]
    );
    for (r, a) in s.reals.iter().zip(["192.168.60.132:80", "192.168.60.144:80"]) {
        let c = &r.checks[0];
        assert_eq!(r.checks.len(), 1);
        assert_eq!(
            c.kind,
            CheckKind::SendExpect {
                send: Some("GET / HTTP/1.0\r\n\r\n".into()),
                expect: Some("HTTP".into()),
                regex: false,
                udp: false
            }
        );
        assert_eq!(c.target, a.parse().expect("addr"));
        // nanny -t timeout -a reentry: checked every 6 s, out at the first failure, back after
        // 15 / 6 = 2 good checks in a row.
        assert_eq!((c.interval, c.timeout, c.fail_after, c.retry_delay, c.rise_after), (
            Duration::from_secs(6),
            Duration::from_secs(6),
            1,
            Duration::from_secs(6),
            2
        ));
    }
    let pair = cfg.pair.as_ref().expect("pair settings");
    assert_eq!((pair.primary, pair.backup), (Some("192.168.60.56".parse().expect("ip")), Some(std::net::Ipv4Addr::UNSPECIFIED)));
    assert_eq!((pair.backup_active, pair.heartbeat, pair.heartbeat_port), (false, false, 539));
    assert_eq!((pair.keepalive, pair.deadtime), (Duration::from_secs(5), Duration::from_secs(10)));
    assert!(!pair.syncdaemon);
    assert_eq!(
        pair.vips,
        [Vip { line: 15, addr: "192.168.60.200".parse().expect("ip"), prefix: 32, dev: "eth0".into(), label: "eth0:0".into() }]
    );
    let warned: Vec<usize> = cfg.warnings.iter().map(|w| w.line).collect();
    assert_eq!(warned, [10, 13, 26, 27], "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].msg.contains("comment of line 9"));
    assert!(cfg.warnings[1].msg.contains("read as `www.gaojf.com`"));
    assert!(cfg.warnings[3].msg.contains("comment of line 25"));
}

/// lvs.cf's other forms: NAT with a server port, persistence with pmask, fwmark, UDP with
/// send/expect escapes, a sorry server, quiesce_server, use_regex, inactive blocks skipped.
#[test]
fn lvs_cf_forms_load() {
    let text = "serial_no = 3\nprimary = 10.0.0.1\nbackup = 10.0.0.2\nbackup_active = 1\nheartbeat = 1\n\
                heartbeat_port = 1539\nkeepalive = 1\ndeadtime = 3\nnetwork = nat\nnat_router = 10.1.0.254 eth1:1\n\
                syncdaemon = 1\nsyncd_iface = eth1\nsyncd_id = 7\n\
                virtual web {\n  active = 1\n  address = 192.168.1.10 eth0:1\n  vip_nmask = 255.255.255.0\n  port = http\n\
                \x20 persistent = 300\n  pmask = 255.255.255.0\n  scheduler = wlc\n  expect = \"^HTTP/1\\.[01] 200\"\n  use_regex = 1\n\
                \x20 quiesce_server = 1\n  sorry_server = 10.1.0.99\n  timeout = 2\n  reentry = 5\n\
                \x20 server a {\n    address = 10.1.0.1\n    active = 1\n    weight = 3\n    port = 8080\n  }\n\
                \x20 server b {\n    address = 10.1.0.2\n    active = 0\n  }\n}\n\
                virtual dns {\n  active = 1\n  address = 192.168.1.11 eth0\n  port = 53\n  protocol = udp\n\
                \x20 send = \"\\\\x\\tq\\r\\n\"\n  server d {\n    address = 10.1.0.3\n    active = 1\n  }\n}\n\
                virtual marks {\n  active = 1\n  address = 192.168.1.12 eth0:2\n  fwmark = 5\n  port = 25\n\
                \x20 server m {\n    address = 10.1.0.4\n    active = 1\n  }\n}\n\
                virtual off {\n  address = 192.168.1.13 eth0:3\n  server x {\n    address = 10.1.0.5\n    active = 1\n  }\n}\n";
    assert_eq!(detect(text), Format::Piranha);
    let cfg = parse(text, Format::Auto).expect("loads");
    assert_eq!(cfg.services.len(), 3, "the inactive virtual is skipped");
    let web = &cfg.services[0];
    assert_eq!(web.spec.key, SvcKey::Inet { proto: Proto::Tcp, addr: ip("192.168.1.10"), port: 80 });
    assert_eq!((web.spec.flags, web.spec.timeout, web.spec.netmask), (lb_common::SVC_F_PERSISTENT, 300, 0xffff_ff00));
    assert_eq!(web.reals.len(), 1, "server b is inactive");
    let a = &web.reals[0];
    assert_eq!((a.dest.addr, a.dest.port, a.dest.fwd, a.dest.weight, a.quiescent), (ip("10.1.0.1"), 8080, Fwd::Masq, 3, true));
    assert_eq!(a.checks[0].kind, CheckKind::SendExpect {
        send: None,
        expect: Some("^HTTP/1\\.[01] 200".into()),
        regex: true,
        udp: false
    });
    assert_eq!((a.checks[0].interval, a.checks[0].rise_after), (Duration::from_secs(2), 2));
    assert_eq!(web.fallback.as_ref().map(|f| (f.addr, f.port, f.fwd)), Some((ip("10.1.0.99"), 80, Fwd::Masq)));
    let dns = &cfg.services[1];
    assert_eq!(dns.spec.key, SvcKey::Inet { proto: Proto::Udp, addr: ip("192.168.1.11"), port: 53 });
    assert_eq!(dns.reals[0].checks[0].kind, CheckKind::SendExpect {
        send: Some("\\x\tq\r\n".into()),
        expect: None,
        regex: false,
        udp: true
    });
    let marks = &cfg.services[2];
    assert_eq!(marks.spec.key, SvcKey::Fwmark { mark: 5, af: crate::model::Af::Inet });
    // No send/expect on a port other than 80: a TCP connection is the check.
    assert_eq!(marks.reals[0].checks[0].kind, CheckKind::Connect);
    let pair = cfg.pair.expect("pair");
    assert_eq!((pair.backup_active, pair.heartbeat, pair.heartbeat_port), (true, true, 1539));
    assert_eq!((pair.keepalive, pair.deadtime), (Duration::from_secs(1), Duration::from_secs(3)));
    assert_eq!((pair.syncdaemon, pair.syncd_iface.as_str(), pair.syncd_id), (true, "eth1", 7));
    let vips: Vec<_> = pair.vips.iter().map(|v| (v.addr.to_string(), v.prefix, v.dev.as_str(), v.label.as_str())).collect();
    assert_eq!(
        vips,
        [
            ("192.168.1.10".to_string(), 24, "eth0", "eth0:1"),
            ("192.168.1.11".to_string(), 32, "eth0", ""),
            ("192.168.1.12".to_string(), 32, "eth0", "eth0:2"),
            ("10.1.0.254".to_string(), 32, "eth1", "eth1:1"),
        ]
    );
}

/// Mistakes in an lvs.cf are refused by line, the wrapped-comment leniency included: a line
/// without `=` that follows no comment, or starts with a keyword, is an error.
#[test]
fn lvs_cf_errors_carry_line_numbers() {
    let text = "serial_no = 1\n\
                network = bridge\n\
                primary = 10.0.0.300\n\
                scheduler = rr  # not here\n\
                server s {\n\
                }\n\
                virtual v {\n\
                \x20 active = 1\n\
                \x20 address = 10.0.0.10 eth0:0   # the VIP\n\
                \x20 port 80\n\
                \x20 scheduler = lblcx\n\
                \x20 bogus = 1\n\
                \x20 send_program = \"/bin/check %h\"\n\
                \x20 use_regex = 1\n\
                \x20 expect = \"(unclosed\"\n\
                \x20 timeout = soon\n\
                \x20 server a {\n\
                \x20   address = 10.0.0.20\n\
                \x20   weight = -2\n\
                \x20   port = 8080\n\
                \x20   active = yes\n\
                \x20 }\n\
                }\n\
                }\n\
                stray words here\n\
                virtual w {\n\
                \x20 active = 1\n";
    let errs = parse(text, Format::Piranha).expect_err("refused");
    let lines: Vec<usize> = errs.iter().map(|d| d.line).collect();
    // (Line 20's port change passes: after line 2's error the method is piranha's default, NAT.)
    assert_eq!(lines, [2, 3, 4, 5, 6, 10, 11, 12, 13, 15, 16, 19, 21, 24, 25, 26, 26], "{errs:#?}");
    let msg = |l: usize| errs.iter().find(|d| d.line == l).map(|d| d.msg.clone()).unwrap_or_default();
    assert!(msg(4).contains("put it before the first `virtual`") || msg(4).contains("unknown keyword `scheduler` in a global block"), "{}", msg(4));
    assert!(msg(10).contains("expected `keyword = value`"), "{}", msg(10));
    assert!(msg(26).contains("not closed"), "{}", msg(26));
    assert_eq!(detect(text), Format::Piranha);
    let dr = "network = direct\nvirtual v {\n active = 1\n address = 10.0.0.10 eth0:0\n server a {\n  address = 10.0.0.20\n  \
              active = 1\n  port = 8080\n }\n}\n";
    let errs = parse(dr, Format::Piranha).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [8], "{errs:?}");
    assert!(errs[0].msg.contains("only NAT"), "{errs:?}");
    // A wrapped comment may not swallow a directive that lost its `=`.
    let errs = parse("network = direct   # DR\nport 80\n", Format::Piranha).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [2], "{errs:?}");
}
