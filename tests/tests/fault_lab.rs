//! Fault drills with real traffic (the DR lab of seed 000: client, director, web1, web2 on one
//! switch; curl downloads through the VIP). Each fault has a defined outcome:
//!
//! - `real_server_deleted_mid_transfer`: `ipvsadm -d` of the server of a running download stops
//!   it (its packets are dropped: expire_nodest_conn = 0); re-adding the server within the
//!   transfer revives the connection (IPVS's trash) and the download completes intact; new
//!   connections meanwhile go to the other server.
//! - `real_server_crashed_mid_transfer`: the real server's host goes off the network: the
//!   download stalls until the client gives up; without a health check rr keeps giving it its
//!   turn (as IPVS does; `lbd_health` shows the checks removing it), the other server answers.
//! - `all_real_servers_deleted`: new connections are refused at once with ICMP port
//!   unreachable from the VIP (as IPVS's ip_vs_leave), for TCP and UDP; re-adding one brings the
//!   service back.
//! - `director_interface_flaps_mid_transfer`: the director's eth0 goes down for a second and up:
//!   the XDP program stays attached, the download resumes (TCP retransmits) and completes intact.
//! - `pins_removed_by_hand`: `rm -r` of the pin directory is a teardown: the pinned links were
//!   the attachment, so the data plane detaches and the VIP answers from the director's own
//!   stack (connection refused); `lbd attach` and `ipvsadm -R` of a saved table restore service.
//! - `forwarding_never_touches_conntrack`: a conntrack rule on the director counts no packet of
//!   the forwarded flows (XDP and the tc slow path run before netfilter), so a full conntrack
//!   table cannot affect them.
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use xlb_tests::{
    lab::{Lab, Mode},
    netns::run,
};

const BIG: usize = 3 << 20;

fn dr_lab(tag: &str) -> Lab {
    let lab = Lab::new(tag, Mode::Dr).expect("lab");
    // The real servers send at 8 Mbit/s (a token bucket on their link): a download of BIG takes
    // about 3 s and depends on the network until its end.
    for w in &lab.web {
        w.ns.exec("tc", &["qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "8mbit", "burst", "32kbit", "latency", "400ms"])
            .expect("tbf");
    }
    lab.attach().expect("attach");
    for l in Mode::Dr.lines() {
        lab.ipvsadm_ok(l).expect("seed line");
    }
    lab
}

/// A download of `file` through the VIP, to `out` in the lab's directory.
fn start_download(lab: &Lab, file: &str, out: &str, max_time: u32) -> Child {
    lab.client
        .ns
        .cmd("curl")
        .args(["-sS", "--max-time", &max_time.to_string(), "-o"])
        .arg(lab.dir.join(out))
        .args(["-w", "%{http_code} %{size_download}", &format!("http://{}/{file}", Mode::Dr.vip())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn curl")
}

/// (curl's exit code, "code size" it printed, its stderr).
fn finish(c: Child) -> (Option<i32>, String, String) {
    let o = c.wait_with_output().expect("wait curl");
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// curl's exit code for one plain request to the VIP (7: refused, 28: timed out).
fn curl_code(lab: &Lab) -> Option<i32> {
    lab.client
        .ns
        .cmd("curl")
        .args(["-sS", "--max-time", "5", &format!("http://{}/", Mode::Dr.vip())])
        .output()
        .expect("curl")
        .status
        .code()
}

/// The real server of the (one) established connection, once there is one.
fn web_of_connection(lab: &Lab) -> String {
    for _ in 0..30 {
        let l = lab.ipvsadm_ok(&["-Lnc"]).expect("-Lnc");
        if let Some(w) = l.lines().find(|l| l.contains("ESTABLISHED")).and_then(|l| l.split_whitespace().nth(5)) {
            return w.to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    format!("(none established)\n{}\n{}", lab.ipvsadm_ok(&["-Lnc"]).unwrap_or_default(), lab.diagnose())
}

#[test]
fn real_server_deleted_mid_transfer() {
    let lab = dr_lab("fdel");
    let body = lab.serve_file("big.bin", BIG).expect("file");
    // rr: the first connection goes to web2 (added last), the next to web1.
    let dl = start_download(&lab, "big.bin", "a.bin", 20);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(web_of_connection(&lab), "192.168.88.200:80", "the download's server");
    lab.ipvsadm_ok(&["-d", "-t", "192.168.88.15:80", "-r", "192.168.88.200"]).expect("delete");
    // Meanwhile a new connection goes to the remaining server.
    assert_eq!(lab.curl_vip().expect("curl"), "Welcome from web1");
    std::thread::sleep(Duration::from_millis(1500));
    let stalled = std::fs::metadata(lab.dir.join("a.bin")).map(|m| m.len()).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(700));
    let still = std::fs::metadata(lab.dir.join("a.bin")).map(|m| m.len()).unwrap_or(0);
    assert!(still < BIG as u64, "the download finished while its server was deleted");
    assert!(still <= stalled + 64 * 1024, "the download went on after its server was deleted: {stalled} -> {still}");
    // Re-added: the same dest comes back from the trash with its connection.
    lab.ipvsadm_ok(&["-a", "-t", "192.168.88.15:80", "-r", "192.168.88.200", "-w", "2", "-g"]).expect("re-add");
    let (code, out, err) = finish(dl);
    assert_eq!(code, Some(0), "download after the re-add: {out} {err}");
    assert_eq!(out, format!("200 {BIG}"));
    assert!(std::fs::read(lab.dir.join("a.bin")).expect("read") == body, "downloaded bytes differ");
    eprintln!("deleted at ~0.7 s: stalled at {stalled} bytes; re-added 2.2 s later: completed, {BIG} bytes intact");
}

#[test]
fn real_server_crashed_mid_transfer() {
    let lab = dr_lab("fcrash");
    lab.serve_file("big.bin", BIG).expect("file");
    let dl = start_download(&lab, "big.bin", "a.bin", 5);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(web_of_connection(&lab), "192.168.88.200:80");
    // The host dies: its interface is gone from the network (no RST, no FIN).
    lab.web[1].ns.ip(&["link", "set", "eth0", "down"]).expect("web2 down");
    let (code, out, err) = finish(dl);
    assert_eq!(code, Some(28), "download from a crashed server: {out} {err}");
    let got: u64 = out.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(got < BIG as u64, "{out}");
    // No health check here: rr keeps giving web2 its turn, and those connections time out, as
    // with IPVS (lbd's checks remove it: lbd_health); web1 still answers.
    let codes: Vec<Option<i32>> = (0..4)
        .map(|_| {
            lab.client
                .ns
                .cmd("curl")
                .args(["-sS", "--max-time", "2", &format!("http://{}/", Mode::Dr.vip())])
                .output()
                .expect("curl")
                .status
                .code()
        })
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == Some(0)).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == Some(28)).count(), 2, "{codes:?}");
    eprintln!("real server down mid-transfer: curl exit 28 after {got} of {BIG} bytes; then rr over web1/web2 -> {codes:?}");
}

#[test]
fn all_real_servers_deleted() {
    let lab = dr_lab("fall");
    lab.ipvsadm_ok(&["-A", "-u", "192.168.88.15:53", "-s", "rr"]).expect("udp service");
    lab.ipvsadm_ok(&["-a", "-u", "192.168.88.15:53", "-r", "192.168.88.100", "-g"]).expect("udp dest");
    assert_eq!(curl_code(&lab), Some(0));
    for rs in ["192.168.88.100", "192.168.88.200"] {
        lab.ipvsadm_ok(&["-d", "-t", "192.168.88.15:80", "-r", rs]).expect("delete");
    }
    lab.ipvsadm_ok(&["-d", "-u", "192.168.88.15:53", "-r", "192.168.88.100"]).expect("delete");
    let t0 = std::time::Instant::now();
    let code = curl_code(&lab);
    let took = t0.elapsed();
    assert_eq!(code, Some(7), "TCP to a service without real servers: refused (ICMP port unreachable)");
    // UDP: the socket sees ECONNREFUSED from the ICMP error.
    let udp = lab.client.ns.exec(
        "python3",
        &["-c", "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\ns.connect(('192.168.88.15',53))\ns.send(b'q')\ntry:\n s.recv(100); print('answer')\nexcept ConnectionRefusedError: print('refused')\nexcept socket.timeout: print('timeout')\n"],
    );
    let stats = lab.lbd_in(&lab.lvs1.ns, &["status"]).expect("status");
    let status = String::from_utf8_lossy(&stats.stdout).into_owned();
    assert_eq!(udp.expect("python").trim(), "refused", "{status}");
    lab.ipvsadm_ok(&["-a", "-t", "192.168.88.15:80", "-r", "192.168.88.100", "-g"]).expect("re-add");
    assert_eq!(lab.curl_vip().expect("curl"), "Welcome from web1");
    eprintln!("no real servers: curl exit 7 after {took:?}, UDP refused; {status}");
}

#[test]
fn director_interface_flaps_mid_transfer() {
    let lab = dr_lab("fflap");
    let body = lab.serve_file("big.bin", BIG).expect("file");
    let dl = start_download(&lab, "big.bin", "a.bin", 30);
    std::thread::sleep(Duration::from_millis(700));
    lab.lvs1.ns.ip(&["link", "set", "eth0", "down"]).expect("down");
    std::thread::sleep(Duration::from_secs(1));
    lab.lvs1.ns.ip(&["link", "set", "eth0", "up"]).expect("up");
    let link = lab.lvs1.ns.ip(&["-d", "link", "show", "eth0"]).expect("link");
    assert!(link.contains("xdp"), "XDP program gone after the flap: {link}");
    let (code, out, err) = finish(dl);
    assert_eq!((code, out.as_str()), (Some(0), format!("200 {BIG}").as_str()), "{err}");
    assert!(std::fs::read(lab.dir.join("a.bin")).expect("read") == body, "downloaded bytes differ");
    assert!(lab.curl_vip().expect("curl after the flap").starts_with("Welcome from web"));
    eprintln!("eth0 down 1 s mid-transfer: XDP still attached, download completed, {BIG} bytes intact");
}

#[test]
fn pins_removed_by_hand() {
    let lab = dr_lab("fpins");
    assert_eq!(curl_code(&lab), Some(0));
    let saved = lab.ipvsadm_ok(&["-Sn"]).expect("-Sn");
    run(Command::new("rm").arg("-rf").arg(lab.pin_dir())).expect("rm");
    let link = lab.lvs1.ns.ip(&["-d", "link", "show", "eth0"]).expect("link");
    assert!(!link.contains("prog/xdp"), "still attached after the pins were removed: {link}");
    // The VIP is the director's own address here: its stack refuses port 80.
    assert_eq!(curl_code(&lab), Some(7), "VIP without the data plane");
    assert_eq!(lab.ipvsadm_ok(&["-Sn"]).expect("-Sn"), "", "table after the pins were removed");
    lab.attach().expect("re-attach");
    let out = Command::new(lab.dir.join("bin/ipvsadm"))
        .arg("-R")
        .env("XLB_PIN_DIR", lab.pin_dir())
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(saved.as_bytes())?;
            c.wait()
        })
        .expect("restore");
    assert!(out.success());
    assert!(lab.curl_vip().expect("curl after the restore").starts_with("Welcome from web"));
    eprintln!("pins removed: detached (curl exit 7 from the director's stack), empty table; attach + -R: serving again");
}

#[test]
fn forwarding_never_touches_conntrack() {
    let lab = dr_lab("fct");
    let rules = "table ip xlbct {\n chain pre { type filter hook prerouting priority -300; ip daddr 192.168.88.15 ct state new,established counter; }\n \
                 chain forwarded { type filter hook forward priority 0; ip saddr 192.168.88.10 counter; }\n}\n";
    let file = lab.dir.join("ct.nft");
    std::fs::write(&file, rules).expect("write rules");
    lab.lvs1.ns.exec("nft", &["-f", &file.to_string_lossy()]).expect("nft");
    let answers: Vec<String> = (0..4).map(|_| lab.curl_vip().expect("curl")).collect();
    assert_eq!(answers.iter().filter(|a| a.starts_with("Welcome from web")).count(), 4);
    let listing = lab.lvs1.ns.exec("nft", &["list", "table", "ip", "xlbct"]).expect("nft list");
    let counts: Vec<&str> = listing.lines().filter(|l| l.contains("counter")).collect();
    assert_eq!(counts.len(), 2, "{listing}");
    for l in &counts {
        assert!(l.contains("counter packets 0 bytes 0"), "netfilter saw forwarded packets: {l}");
    }
    eprintln!("4 connections forwarded; conntrack/netfilter counters on the director: {counts:?}");
}
