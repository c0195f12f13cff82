//! What `lbd attach` promises on every kernel: the kernel's features probed and reported, the
//! attachment recorded with its modes, nothing half-attached after a failure, and the operator
//! told (status, run log, metrics) whenever no interface carries the table.
use std::process::{Command, Output, Stdio};

use xlb_tests::{
    netns::{Netns, unique_prefix},
    pins::TempPins,
    workspace_bin,
};

fn lbd(ns: &Netns, pins: &TempPins, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = ns.cmd_net_only(workspace_bin("lbd"));
    c.arg("--pin-dir").arg(pins.path()).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run lbd")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A namespace with one veth pair (eth0 up, its peer in the same namespace).
fn one_link(tag: &str) -> Netns {
    let ns = Netns::new(&unique_prefix(tag)).expect("netns");
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]).expect("veth");
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]).expect("addr");
    ns.ip(&["link", "set", "eth0", "up"]).expect("up");
    ns.ip(&["link", "set", "peer0", "up"]).expect("up");
    ns
}

/// `/metrics` as lbd serves it in `ns` (attachments are looked up by interface name there).
fn scrape_in(ns: &Netns, pins: &TempPins) -> String {
    let (name, dir) = (ns.name.clone(), pins.path().to_path_buf());
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
        use std::os::fd::AsRawFd as _;
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
        lb_user::metrics::scrape(&dir, None).expect("scrape")
    })
    .join()
    .expect("thread")
}

fn ipvsadm(pins: &TempPins, args: &[&str]) {
    let st = Command::new(workspace_bin("lbadm"))
        .args(args)
        .env("XLB_PIN_DIR", pins.path())
        .stdout(Stdio::null())
        .status()
        .expect("lbadm");
    assert!(st.success(), "lbadm {args:?}");
}

#[test]
fn nothing_attached_is_said_by_status_run_and_metrics() {
    let pins = TempPins::new("natt").expect("pins");
    ipvsadm(&pins, &["-A", "-t", "192.0.2.80:80", "-s", "rr"]);
    let ns = one_link("natt");
    let status = text(&lbd(&ns, &pins, &["status"], &[]));
    assert!(status.contains("attached: none: no interface carries the data plane"), "{status}");
    assert!(status.contains(&format!("kernel: {}", lb_user::features::kernel_release())), "{status}");
    let metrics = scrape_in(&ns, &pins);
    assert!(metrics.contains("\nxlb_dataplane_attached_interfaces 0\n"), "{metrics}");

    // lbd run says it in its log, and says when it changes.
    let mut run = ns
        .cmd_net_only(workspace_bin("lbd"))
        .arg("--pin-dir")
        .arg(pins.path())
        .args(["run", "--interval", "0.2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lbd run");
    // Its log, read as it comes: lbd notices an attach at its next tick, which a loaded guest
    // under TCG can take seconds to reach.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (log, mut err) = (log.clone(), run.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut err, &mut buf) {
                if n == 0 {
                    break;
                }
                log.lock().expect("log").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let logged = |what: &str| {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(120) {
            if log.lock().expect("log").contains(what) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("lbd run did not log {what:?} in 120 s:\n{}", log.lock().expect("log"));
    };
    logged("no interface carries the data plane");
    let attach = lbd(&ns, &pins, &["attach", "eth0", "--mode", "skb"], &[]);
    assert!(attach.status.success(), "{}", text(&attach));
    logged("data plane attached to eth0");
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    run.wait().expect("lbd run exit");
    reader.join().expect("log reader");
    let log = log.lock().expect("log").clone();
    let warn = log.find("no interface carries the data plane").unwrap_or_else(|| panic!("{log}"));
    let attached = log.find("data plane attached to eth0").unwrap_or_else(|| panic!("{log}"));
    assert!(warn < attached, "{log}");

    let status = text(&lbd(&ns, &pins, &["status"], &[]));
    assert!(status.contains("attached: eth0 (xdp skb, tc "), "{status}");
    let metrics = scrape_in(&ns, &pins);
    assert!(metrics.contains("\nxlb_dataplane_attached_interfaces 1\n"), "{metrics}");
    assert!(metrics.contains("xlb_dataplane_attachment_info{interface=\"eth0\",xdp_mode=\"skb\""), "{metrics}");
}

#[test]
fn a_failed_attach_leaves_nothing_attached() {
    let pins = TempPins::new("fatt").expect("pins");
    let ns = one_link("fatt");
    let out = lbd(&ns, &pins, &["attach", "eth0", "--mode", "native"], &[("XLB_FAILPOINT_ATTACH_TC", "1")]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cannot attach the tc classifier to eth0"), "{}", text(&out));
    let link = ns.ip(&["link", "show", "eth0"]).expect("link");
    assert!(!link.contains("xdp"), "XDP left on eth0 after a failed attach:\n{link}");
    assert!(!pins.path().join("links/xdp_eth0").exists() && !pins.path().join("links/tc_eth0").exists());
    let status = text(&lbd(&ns, &pins, &["status"], &[]));
    assert!(status.contains("attached: none"), "{status}");

    // The same attach without the fault works, and detach removes everything it made.
    let out = lbd(&ns, &pins, &["attach", "eth0", "--mode", "native"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(ns.ip(&["link", "show", "eth0"]).expect("link").contains("xdp"));
    let out = lbd(&ns, &pins, &["detach", "eth0"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!ns.ip(&["link", "show", "eth0"]).expect("link").contains("xdp"));
    let filters = ns.exec("tc", &["filter", "show", "dev", "eth0", "ingress"]).unwrap_or_default();
    assert!(!filters.contains("xlb_tc_neigh"), "tc filter left after detach:\n{filters}");
}

/// Each optional feature forced off (as if the kernel lacked it) is reported and used: clsact
/// instead of tcx, skb instead of native XDP, no FIB source.
#[test]
fn forced_off_features_take_their_fallbacks() {
    let pins = TempPins::new("foff").expect("pins");
    let ns = one_link("foff");
    let out = lbd(&ns, &pins, &["attach", "eth0"], &[("XLB_FEATURES_OFF", "all")]);
    assert!(out.status.success(), "{}", text(&out));
    let status = text(&lbd(&ns, &pins, &["status"], &[("XLB_FEATURES_OFF", "all")]));
    assert!(status.contains("attached: eth0 (xdp skb, tc clsact)"), "{status}");
    assert!(status.contains("features: fib_src no"), "{status}");
    assert!(status.contains("forced off by XLB_FEATURES_OFF: fib_src,tcx,native"), "{status}");
    let filters = ns.exec("tc", &["filter", "show", "dev", "eth0", "ingress"]).expect("tc");
    assert!(filters.contains("xlb_tc_neigh"), "no clsact filter:\n{filters}");
    // Attaching again replaces the filter instead of adding a second one.
    let out = lbd(&ns, &pins, &["attach", "eth0"], &[("XLB_FEATURES_OFF", "all")]);
    assert!(out.status.success(), "{}", text(&out));
    let filters = ns.exec("tc", &["filter", "show", "dev", "eth0", "ingress"]).expect("tc");
    assert_eq!(filters.lines().filter(|l| l.contains("xlb_tc_neigh")).count(), 1, "{filters}");
    let out = lbd(&ns, &pins, &["teardown"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let filters = ns.exec("tc", &["filter", "show", "dev", "eth0", "ingress"]).unwrap_or_default();
    assert!(!filters.contains("xlb_tc_neigh"), "teardown left the filter:\n{filters}");
}
