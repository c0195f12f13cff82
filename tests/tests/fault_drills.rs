//! Fault drills and security checks on the real binaries and pinned maps.
//!
//! - `pin_dir_and_pins_are_root_only`: the pin directory is 0700 (also when it existed with
//!   looser permissions), every pinned map is readable/writable by its owner only.
//! - `lbd_refuses_interface_names_that_escape`: `lbd attach ../x` and friends fail cleanly and
//!   create nothing.
//! - `restore_killed_midway_leaves_old_or_new_table`: `lbadm -R` with a large input SIGKILLed
//!   at many points: the table is exactly the old one or exactly the new one.
//! - `restore_died_during_commit_is_finished_by_the_next_command`: the same with the kill at a
//!   known point of the commit (a failpoint): the journal finishes it.
use std::{
    io::Write as _,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lb_user::journal::Journal;
use xlb_tests::{golden::Lbadm, pins::TempPins, workspace_bin};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn pin_dir_and_pins_are_root_only() {
    let lb = Lbadm::new("perm").expect("lbadm");
    lb.ok("-A -t 10.0.0.1:80 -s rr").expect("add");
    let dir = lb.pin_dir();
    assert_eq!(mode(dir), 0o700, "pin dir {}", dir.display());
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read pin dir") {
        let p = e.expect("entry").path();
        let m = mode(&p);
        assert_eq!(m & 0o077, 0, "{} is mode {m:o}: group/other may access it", p.display());
        n += 1;
    }
    assert!(n >= lb_common::names::ALL.len() - 1, "only {n} pins");
    // A pin directory that exists with looser permissions is tightened on first use.
    let loose = TempPins::new("loose").expect("pins");
    std::fs::set_permissions(loose.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new(workspace_bin("lbadm"))
        .arg0("ipvsadm")
        .arg("-Ln")
        .env("XLB_PIN_DIR", loose.path())
        .output()
        .expect("run lbadm");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(loose.path()), 0o700, "pre-existing 0755 pin dir not tightened");
}

#[test]
fn lbd_refuses_interface_names_that_escape() {
    let pins = TempPins::new("iface").expect("pins");
    let parent = pins.path().parent().expect("parent").to_path_buf();
    let listing = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect()).unwrap_or_default();
        v.sort();
        v
    };
    let before_parent = listing(&parent);
    let before = listing(pins.path());
    let long = "x".repeat(16);
    for name in ["../x", "..", ".", "a/b", "/etc/passwd", "", &long, "eth0\n", "lo;id", "lo x", "../../../../tmp/evil", "*"] {
        for cmd in ["attach", "detach"] {
            let out = Command::new(workspace_bin("lbd"))
                .arg("--pin-dir")
                .arg(pins.path())
                .args([cmd, name])
                .output()
                .expect("run lbd");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "lbd {cmd} {name:?}: {err}");
            assert!(err.starts_with("lbd: invalid interface name"), "lbd {cmd} {name:?}: {err}");
        }
    }
    assert_eq!(listing(pins.path()), before, "pins created by refused commands");
    let after_parent = listing(&parent);
    let new: Vec<_> = after_parent.iter().filter(|n| !before_parent.contains(n)).filter(|n| n.to_string_lossy().contains("evil") || *n == "x").collect();
    assert!(new.is_empty(), "created outside the pin dir: {new:?}");
}

fn run_ok(lb: &Lbadm, cmds: &[String]) {
    for c in cmds {
        lb.ok(c).unwrap_or_else(|e| panic!("{c}: {e}"));
    }
}

/// `ipvsadm -R` on `lb`'s table with `env` set, reading a pipe; output discarded.
fn spawn_restore(lb: &Lbadm, env: (&str, &str)) -> std::process::Child {
    Command::new(lb.path("ipvsadm"))
        .arg0("ipvsadm")
        .arg("-R")
        .env("XLB_PIN_DIR", lb.pin_dir())
        .env(env.0, env.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// `ipvsadm -R` with `input`, killed (SIGKILL) `after` its start.
fn restore_killed(lb: &Lbadm, input: &[u8], after: Duration) -> Option<i32> {
    let mut child = spawn_restore(lb, ("XLB_ALLOW_ANY_SCHEDULER", "1"));
    let mut pipe = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    std::thread::sleep(after);
    let _ = child.kill();
    let st = child.wait().expect("wait");
    let _ = writer.join();
    st.code()
}

/// What a SIGKILLed `lbadm -R` left, over many kill points: (old, new, partial) counts.
/// Fails on a table with a line that is in neither the old nor the new table, or without an
/// old service; with `strict`, on any partial table too.
fn kill_drill(tag: &str, strict: bool) -> (u32, u32, u32) {
    let old: Vec<String> = vec![
        "-A -t 10.0.0.1:80 -s rr".into(),
        "-a -t 10.0.0.1:80 -r 192.168.1.1 -g -w 1".into(),
        "-A -u 10.0.0.2:53 -s rr".into(),
    ];
    // A large restore: an edit of an old service, then 1500 services with two real servers.
    let mut input = String::from("-E -t 10.0.0.1:80 -s wrr\n");
    for i in 0..1500u32 {
        let vip = format!("10.1.{}.{}:80", i / 250, i % 250 + 1);
        input.push_str(&format!("-A -t {vip} -s rr\n-a -t {vip} -r 192.168.2.1 -g\n-a -t {vip} -r 192.168.2.2 -g -w 2\n"));
    }
    let lb = Lbadm::new(tag).expect("lbadm");
    run_ok(&lb, &old);
    let old_sn = lb.ok("-Sn").expect("-Sn");
    let t0 = Instant::now();
    let o = lb.run(&["-R".into()], Some(input.as_bytes())).expect("restore");
    let full = t0.elapsed();
    assert_eq!(o.status, 0, "{}", String::from_utf8_lossy(&o.stderr));
    let new_sn = lb.ok("-Sn").expect("-Sn");
    assert_ne!(old_sn, new_sn);
    let known: std::collections::HashSet<&str> = old_sn.lines().chain(new_sn.lines()).collect();
    let (mut saw_old, mut saw_new, mut partial, mut redone) = (0, 0, 0, 0);
    let journal = Journal::for_pin_dir(lb.pin_dir());
    let steps = 24u32;
    for k in 0..steps {
        lb.ok("-C").expect("flush");
        run_ok(&lb, &old);
        let after = full.mul_f64(k as f64 / (steps - 2) as f64);
        let code = restore_killed(&lb, input.as_bytes(), after);
        if journal.path().exists() {
            redone += 1;
        }
        let now = lb.ok("-Sn").expect("-Sn after the kill");
        assert!(!journal.path().exists(), "the journal outlived the next command");
        if now == old_sn {
            saw_old += 1;
            continue;
        }
        if now == new_sn {
            saw_new += 1;
            continue;
        }
        partial += 1;
        let what = format!(
            "lbadm -R killed after {after:?} (exit {code:?}; a full run takes {full:?}) left a table that is neither the old \
             ({} lines) nor the new one ({} lines): {} lines:\n--- old\n{old_sn}--- now (first lines)\n{}",
            old_sn.lines().count(),
            new_sn.lines().count(),
            now.lines().count(),
            now.lines().take(8).collect::<Vec<_>>().join("\n")
        );
        eprintln!("{what}");
        assert!(!strict, "{what}");
        let stray: Vec<&str> = now.lines().filter(|l| !known.contains(l)).collect();
        assert!(stray.is_empty(), "lines in neither table: {stray:?}");
        for svc in ["-t 10.0.0.1:80", "-u 10.0.0.2:53"] {
            assert!(now.lines().any(|l| l.starts_with(&format!("-A {svc}"))), "old service {svc} lost");
        }
    }
    eprintln!(
        "full restore {full:?}; {steps} kills: old table {saw_old}, new table {saw_new} ({redone} of them finished from \
         the journal by the next command), partial {partial}"
    );
    assert!(saw_old > 0, "never killed before the commit");
    (saw_old, saw_new, partial)
}

/// A killed restore never corrupts: every line of the table is of the old or the new table,
/// and the old services stay.
#[test]
fn restore_killed_midway_leaves_a_consistent_table() {
    kill_drill("kill", false);
}

/// The requirement: the table is the old one or the new one, whenever the kill lands
/// (a kill during the commit leaves the journal, and the next command finishes the commit).
#[test]
fn restore_killed_midway_leaves_old_or_new_table() {
    kill_drill("killstrict", true);
}

/// The same, deterministically: `lbadm -R` dies (abort, like SIGKILL) after writing 700 of its
/// 1500 new services. The journal is left; the maps hold the partial table until the next
/// command, which finishes the commit and removes the journal.
#[test]
fn restore_died_during_commit_is_finished_by_the_next_command() {
    let lb = Lbadm::new("died").expect("lbadm");
    run_ok(&lb, &["-A -t 10.0.0.1:80 -s rr".into(), "-a -t 10.0.0.1:80 -r 192.168.1.1 -g -w 1".into()]);
    let mut input = String::from("-E -t 10.0.0.1:80 -s wrr\n");
    for i in 0..1500u32 {
        input.push_str(&format!("-A -t 10.1.{}.{}:80 -s rr\n-a -t 10.1.{}.{}:80 -r 192.168.2.1 -g\n", i / 250, i % 250 + 1, i / 250, i % 250 + 1));
    }
    let journal = Journal::for_pin_dir(lb.pin_dir());
    let mut child = spawn_restore(&lb, ("XLB_FAILPOINT_COMMIT_SERVICES", "700"));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let st = child.wait().expect("wait");
    assert!(!st.success(), "the failpoint did not fire");
    assert!(journal.path().exists(), "no journal after a commit died midway");
    // What the data plane holds meanwhile: the maps, read without the store (which would finish
    // the commit): the pinned services hash has some but not all of the new services.
    let services = aya::maps::MapData::from_pin(lb.pin_dir().join(lb_common::names::SERVICES)).expect("pin");
    let services: aya::maps::HashMap<_, lb_common::ServiceKey, lb_common::Service> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(services)).expect("hash");
    let in_maps = services.keys().count();
    assert!(in_maps > 1 && in_maps < 1501, "{in_maps} services in the maps: the failpoint did not stop the commit midway");
    let now = lb.ok("-Sn").expect("-Sn");
    assert!(!journal.path().exists(), "the journal outlived the next command");
    assert_eq!(now.lines().filter(|l| l.starts_with("-A ")).count(), 1501, "services after the roll-forward");
    assert!(now.lines().any(|l| l == "-A -t 10.0.0.1:80 -s wrr"), "the edit of the old service is lost");
    assert_eq!(now.lines().filter(|l| l.starts_with("-a ")).count(), 1501, "real servers after the roll-forward");
    eprintln!("died after 700 of 1500 services: {in_maps} services in the maps; the next command finished the commit: 1501");
}
