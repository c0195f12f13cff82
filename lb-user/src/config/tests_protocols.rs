//! The non-HTTP checks as ldirectord.cf and keepalived.conf ask for them (external command,
//! DNS, SMTP, UDP, ping), `cleanstop`, and the checkers lbd refuses, by line.
use std::time::Duration;

use super::*;
use crate::health::udp::UdpReply;
use crate::model::SvcKey;

fn only_check(cfg: &DesiredConfig) -> &Check {
    &cfg.services[0].reals[0].checks[0]
}

#[test]
fn ldirectord_external_passes_virtual_and_real() {
    let text = "checktimeout=3\nvirtual=10.0.0.1:80\n    real=10.0.0.2:8080 masq\n    checktype=external\n    \
                checkcommand=\"/etc/ha.d/check web.sh\"\n";
    let cfg = parse(text, Format::Ldirectord).expect("loads");
    let c = only_check(&cfg);
    let argv = ["/etc/ha.d/check web.sh", "10.0.0.1", "80", "10.0.0.2", "8080"].map(String::from).to_vec();
    assert_eq!(c.kind, CheckKind::External { argv, dynamic: false });
    assert_eq!(c.timeout, Duration::from_secs(3));
    // fwmark: the mark stands for the virtual server; no checkcommand: /bin/true.
    let cfg = parse("virtual=7\n    real=10.0.0.2:80\n    checktype=external\n", Format::Ldirectord).expect("fwmark");
    let argv = ["/bin/true", "7", "0", "10.0.0.2", "80"].map(String::from).to_vec();
    assert_eq!(only_check(&cfg).kind, CheckKind::External { argv, dynamic: false });
    assert_eq!(only_check(&cfg).timeout, Duration::from_secs(5));
    let cfg = parse("virtual6=[2001:db8::1]:80\n    real6=[2001:db8::2]\n    checktype=external\n", Format::Ldirectord).expect("v6");
    let argv = ["/bin/true", "[2001:db8::1]", "80", "[2001:db8::2]", "80"].map(String::from).to_vec();
    assert_eq!(only_check(&cfg).kind, CheckKind::External { argv, dynamic: false });
    let errs = parse("virtual=10.0.0.1:80\n    real=10.0.0.2\n    checktype=external-perl\n", Format::Ldirectord).expect_err("perl");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [3], "{errs:?}");
}

#[test]
fn ldirectord_dns_smtp_and_udp_connect() {
    let text = "virtual=10.0.0.1:53\n    real=10.0.0.2:53\n    service=dns\n    request=\"www.example.org\"\n    \
                receive=\"192.0.2.7\"\n    negotiatetimeout=2\n";
    let cfg = parse(text, Format::Ldirectord).expect("dns");
    // Port 53 without a protocol: UDP, and the DNS query goes over UDP.
    assert!(matches!(cfg.services[0].spec.key, SvcKey::Inet { proto: crate::model::Proto::Udp, .. }));
    let kind = CheckKind::Dns { name: "www.example.org".into(), qtype: "A".into(), tcp: false, expect: Some("192.0.2.7".into()) };
    assert_eq!(only_check(&cfg).kind, kind);
    assert_eq!(only_check(&cfg).timeout, Duration::from_secs(2));
    let tcp = parse(&format!("{text}    protocol=tcp\n"), Format::Ldirectord).expect("dns over tcp");
    assert!(matches!(&only_check(&tcp).kind, CheckKind::Dns { tcp: true, .. }));
    let ptr = parse(&text.replace("www.example.org", "192.0.2.7").replace("receive=\"192.0.2.7", "receive=\"^www\\."), Format::Ldirectord)
        .expect("ptr");
    assert!(matches!(&only_check(&ptr).kind, CheckKind::Dns { qtype, .. } if qtype == "PTR"));
    let errs = parse("virtual=10.0.0.1:53\n    real=10.0.0.2:53\n    service=dns\n", Format::Ldirectord).expect_err("no receive");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [2], "{errs:?}");

    // Port 25: service smtp by default.
    let cfg = parse("virtual=10.0.0.1:25\n    real=10.0.0.2:25\n", Format::Ldirectord).expect("smtp");
    assert_eq!(only_check(&cfg).kind, CheckKind::Smtp { helo: "localhost.localdomain".into() });

    // connect on a UDP service: ldirectord pings.
    let cfg = parse("virtual=10.0.0.1:5000\n    protocol=udp\n    real=10.0.0.2:5000\n    checktype=connect\n", Format::Ldirectord)
        .expect("udp connect");
    assert_eq!(only_check(&cfg).kind, CheckKind::Ping);
    let cfg = parse("virtual=10.0.0.1:80\n    real=10.0.0.2\n    checktype=ping\n", Format::Ldirectord).expect("ping");
    assert_eq!(only_check(&cfg).kind, CheckKind::Ping);
    // An ldirectord service lbd does not check: an error at its line.
    let errs = parse("virtual=10.0.0.1:21\n    real=10.0.0.2:21\n    service=ftp\n", Format::Ldirectord).expect_err("ftp");
    assert_eq!(errs.iter().map(|d| (d.line, d.msg.contains("ftp"))).collect::<Vec<_>>(), [(3, true)], "{errs:?}");
}

#[test]
fn ldirectord_cleanstop() {
    let text = "virtual=10.0.0.1:80\n    real=10.0.0.2\n    checktype=on\nvirtual=10.0.0.1:81\n    real=10.0.0.2\n    \
                checktype=on\n    cleanstop=no\n";
    let cfg = parse(text, Format::Ldirectord).expect("loads");
    assert_eq!(cfg.cleanstop, vec![cfg.services[0].spec.key], "default yes, the second says no");
    let cfg = parse(&format!("cleanstop=no\n{text}"), Format::Ldirectord).expect("global no");
    assert!(cfg.cleanstop.is_empty());
    let errs = parse(&format!("cleanstop=maybe\n{text}"), Format::Ldirectord).expect_err("bad");
    assert_eq!(errs[0].line, 1);
    let ka = "virtual_server 10.0.0.1 80 {\n  real_server 10.0.0.2 80 {\n  }\n}\n";
    assert!(parse(ka, Format::Keepalived).expect("keepalived").cleanstop.is_empty(), "keepalived leaves the table");
}

#[test]
fn keepalived_misc_check() {
    let text = "virtual_server 10.0.0.1 80 {\n  delay_loop 4\n  real_server 10.0.0.2 80 {\n    weight 5\n    MISC_CHECK {\n      \
                misc_path \"/usr/local/bin/check 'two words' x\"\n      misc_dynamic\n    }\n    MISC_CHECK {\n      \
                misc_path /bin/true\n      misc_timeout 2\n      retry 2\n    }\n  }\n}\n";
    let cfg = parse(text, Format::Keepalived).expect("loads");
    let checks = &cfg.services[0].reals[0].checks;
    let argv = ["/usr/local/bin/check", "two words", "x"].map(String::from).to_vec();
    assert_eq!(checks[0].kind, CheckKind::External { argv, dynamic: true });
    // misc_timeout defaults to delay_loop; MISC_CHECK retries 0 times unless told.
    assert_eq!((checks[0].timeout, checks[0].fail_after), (Duration::from_secs(4), 1));
    assert_eq!((checks[1].timeout, checks[1].fail_after), (Duration::from_secs(2), 3));
    let bad = "virtual_server 10.0.0.1 80 {\n  real_server 10.0.0.2 80 {\n    MISC_CHECK {\n      misc_path \"/x 'open\"\n      \
               user nobody\n    }\n    MISC_CHECK {\n    }\n  }\n}\n";
    let errs = parse(bad, Format::Keepalived).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [4, 5], "{errs:?}");
    let errs = parse(&bad.replace("misc_path \"/x 'open\"", "").replace("user nobody", ""), Format::Keepalived).expect_err("no path");
    assert_eq!(errs.iter().map(|d| (d.line, d.msg.as_str())).collect::<Vec<_>>(), [(3, "MISC_CHECK needs `misc_path`")]);
}

#[test]
fn keepalived_dns_smtp_udp_checks() {
    let text = "virtual_server 10.0.0.1 53 {\n  protocol UDP\n  delay_loop 6\n  real_server 10.0.0.2 53 {\n    DNS_CHECK {\n    }\n    \
                DNS_CHECK {\n      type a\n      name www.example.org\n      connect_port 5353\n    }\n    UDP_CHECK {\n      \
                payload 01 02ab\n      require_reply 0x 1\n      min_reply_length 2\n      max_reply_length 9\n    }\n    \
                UDP_CHECK {\n    }\n  }\n}\n";
    let cfg = parse(text, Format::Keepalived).expect("loads");
    let c = &cfg.services[0].reals[0].checks;
    assert_eq!(c[0].kind, CheckKind::Dns { name: ".".into(), qtype: "SOA".into(), tcp: false, expect: None });
    // DNS_CHECK: 3 retries, delay_loop between them.
    assert_eq!((c[0].fail_after, c[0].retry_delay), (4, Duration::from_secs(6)));
    assert_eq!(c[1].kind, CheckKind::Dns { name: "www.example.org".into(), qtype: "A".into(), tcp: false, expect: None });
    assert_eq!(c[1].target.port(), 5353);
    let reply = UdpReply { data: vec![0x00, 0x01], mask: vec![0x0f, 0x00], min_len: 2, max_len: 9 };
    assert_eq!(c[2].kind, CheckKind::Udp { payload: vec![0x01, 0x02, 0xab], reply: Some(reply) });
    assert!(matches!(&c[3].kind, CheckKind::Udp { reply: None, payload } if !payload.is_empty()));

    let smtp = "virtual_server 10.0.0.1 25 {\n  real_server 10.0.0.2 25 {\n    SMTP_CHECK {\n      helo_name lb.example.org\n    }\n    \
                SMTP_CHECK {\n    }\n  }\n}\n";
    let cfg = parse(smtp, Format::Keepalived).expect("smtp");
    let c = &cfg.services[0].reals[0].checks;
    assert_eq!(c[0].kind, CheckKind::Smtp { helo: "lb.example.org".into() });
    assert_eq!(c[1].kind, CheckKind::Smtp { helo: "smtpchecker.keepalived.org".into() });

    // What lbd does not check is refused at its line: a checker, a UDP payload, SMTP on UDP.
    let bad = "virtual_server 10.0.0.1 53 {\n  protocol UDP\n  real_server 10.0.0.2 53 {\n    FILE_CHECK {\n    }\n    UDP_CHECK {\n      \
               payload zz\n      type A\n    }\n  }\n}\n";
    let errs = parse(bad, Format::Keepalived).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [4, 7], "{errs:?}");
    let smtp_on_udp = "virtual_server 10.0.0.1 53 {\n  protocol UDP\n  real_server 10.0.0.2 53 {\n    SMTP_CHECK {\n    }\n  }\n}\n";
    let errs = parse(smtp_on_udp, Format::Keepalived).expect_err("refused");
    assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [4], "{errs:?}");
}
