//! Restarts that drop nothing: a continuous request loop (a new connection every ~10 ms) runs
//! while `lbd run` is killed with SIGKILL and started again, and while the XDP program is
//! replaced (`lbd attach` again on the same interface). No request fails, the counters go on
//! (the service counts exactly the connections made), and the restarted lbd leaves the table
//! as it found it.
use std::time::Duration;

use lb_user::model::{Proto, SvcKey};
use xlb_tests::lab::{Lab, Mode, VIP, WEB1, WEB2};
use xlb_tests::lab_health::{Lbd, RequestLoop, ldirectord_cf, table, wait_weights};

fn conns(lab: &Lab) -> u64 {
    let key = SvcKey::Inet { proto: Proto::Tcp, addr: VIP.parse().expect("vip"), port: 80 };
    table(lab).expect("table").find_service(&key).map_or(0, |s| s.stats.conns)
}

#[test]
fn kill9_restart_and_program_replacement_drop_nothing() {
    let lab = Lab::new("lcy", Mode::Dr).expect("lab");
    lab.attach().expect("attach");
    let cfg = lab.dir.join("ldirectord.cf");
    std::fs::write(&cfg, ldirectord_cf(true, 2, None)).expect("config");
    let both = |v: &[(String, i32)]| v == [(WEB1.to_string(), 1), (WEB2.to_string(), 1)];
    let mut first = Lbd::start(&lab, &cfg, &[], &lab.dir.join("lbd1.log")).expect("lbd");
    wait_weights(&lab, Duration::from_secs(5), both).unwrap_or_else(|e| panic!("{e}\n{}", first.log_text()));
    // Let the first checks report.
    std::thread::sleep(Duration::from_millis(1500));
    let warmup = xlb_tests::lab_health::requests(&lab, 29000, 4).expect("requests");
    assert!(warmup.iter().all(|a| a.starts_with("Welcome")), "{warmup:?}");
    let c0 = conns(&lab);
    assert_eq!(c0, 4);

    let requests = RequestLoop::start(&lab, 30000, 10).expect("loop");
    std::thread::sleep(Duration::from_secs(1));
    first.proc.kill(); // SIGKILL
    assert!(!first.proc.is_running());
    std::thread::sleep(Duration::from_secs(1));
    let during_outage = requests.lines().len();
    let second = Lbd::start(&lab, &cfg, &[], &lab.dir.join("lbd2.log")).expect("lbd again");
    std::thread::sleep(Duration::from_millis(1500));
    // A new build of the program (here: the same object) replaces the attached one atomically.
    lab.lbd_in(&lab.lvs1.ns, &["attach", "eth0", "--mode", "native"]).expect("replace the XDP program");
    std::thread::sleep(Duration::from_secs(1));
    let lines = requests.finish().expect("loop");
    let c1 = conns(&lab);

    let failed: Vec<&String> = lines.iter().filter(|l| !l.starts_with("OK ")).collect();
    assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}", failed.len(), lines.len());
    assert!(lines.len() > 100, "the loop ran: {} requests", lines.len());
    let web1 = lines.iter().filter(|l| l.ends_with("Welcome from web1")).count();
    let web2 = lines.iter().filter(|l| l.ends_with("Welcome from web2")).count();
    assert!(web1.abs_diff(web2) <= 1, "rr went on: web1 {web1}, web2 {web2}");
    assert_eq!(c1 - c0, lines.len() as u64, "the service's counter counts every connection, across both restarts");
    assert!(weights_both(&lab), "table unchanged");
    let log2 = second.log_text();
    assert!(!log2.contains("added") && !log2.contains("removed") && !log2.contains("weight 0"), "restart changed the table:\n{log2}");
    println!(
        "{} requests ({} while lbd was dead), 0 failed; service conns {c0} -> {c1}",
        lines.len(),
        during_outage
    );
}

fn weights_both(lab: &Lab) -> bool {
    xlb_tests::lab_health::weights(lab).is_ok_and(|v| v == [(WEB1.to_string(), 1), (WEB2.to_string(), 1)])
}
