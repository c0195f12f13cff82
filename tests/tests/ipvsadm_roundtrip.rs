//! `-S` → `-C` → `-R` on the built binary with a real pinned table: a randomised table of 1000
//! services (TCP/UDP/SCTP/fwmark, persistence, masks, engines, one-packet, scheduler flags;
//! several real servers each with mixed methods, weights, thresholds and tunnels) saved with
//! `-Sn` and restored into an empty table gives the same `-Sn` and `-Ln`, byte for byte. The
//! same through lbadm invoked as Debian's `ipvsadm-save` / `ipvsadm-restore`. The table has
//! IPv6 services (addresses and fwmarks, `-M` prefix lengths), IPv6 real servers of every
//! method, IPv4 real servers tunnelled from IPv6 services, and ipip/GUE/GRE tunnels with their
//! checksum options.
use xlb_tests::golden::Lbadm;

/// splitmix64: deterministic, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const SCHEDULERS: [&str; 13] = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"];

/// IPv4 addresses stay within 10.0.0.0–109.255.255.255: ipvsadm's IPv4 comparators subtract
/// addresses in an int, so addresses 2^31 or more apart sort by insertion order (a recorded
/// quirk, see tests/golden/ipvsadm/README.md), which a round trip would legitimately change.
fn v4(rng: &mut Rng, first: u64) -> String {
    format!("{first}.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254))
}

/// The `ipvsadm` lines (for `-R`) of a random table with `n` services.
fn random_table(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut lines = Vec::new();
    for i in 0..n {
        // Unique by construction: the index is part of every service's identity.
        let kind = rng.below(10);
        let (svc, v6, udp) = match kind {
            0..=3 => (format!("-t {}.{}.{}.{}:{}", 10 + i / 65536, (i / 256) % 256, i % 256, 1 + rng.below(254), 1 + rng.below(65535)), false, false),
            4..=5 => (format!("-u {}.{}.{}.{}:{}", 10 + i / 65536, (i / 256) % 256, i % 256, 1 + rng.below(254), 1 + rng.below(65535)), false, true),
            6 => (format!("--sctp-service 100.{}.{}.1:{}", i / 256, i % 256, 1 + rng.below(65535)), false, false),
            7 => (format!("-t [2001:db8:{:x}::{:x}]:{}", i, 1 + rng.below(0xfffe), 1 + rng.below(65535)), true, false),
            8 => (format!("-f {}", 1 + i), false, false),
            _ => (format!("-f {} -6", 1 + i), true, false),
        };
        let sched = *rng.pick(&SCHEDULERS);
        let mut line = format!("-A {svc} -s {sched}");
        if rng.chance(40) {
            line.push_str(" -p");
            if rng.chance(70) {
                line.push_str(&format!(" {}", 1 + rng.below(86400)));
            }
            if rng.chance(50) {
                if v6 {
                    line.push_str(&format!(" -M {}", 1 + rng.below(128)));
                } else {
                    let masks = ["255.255.255.0", "255.255.0.0", "255.0.0.0", "255.255.255.128", "0.0.0.0", "255.0.255.0"];
                    line.push_str(&format!(" -M {}", rng.pick(&masks)));
                }
            }
        }
        if udp && rng.chance(20) {
            line.push_str(" --pe sip");
        }
        if udp && rng.chance(20) {
            line.push_str(" -o");
        }
        if rng.chance(25) {
            let flags = match sched {
                "sh" => *rng.pick(&["sh-fallback", "sh-port", "sh-fallback,sh-port"]),
                "mh" => *rng.pick(&["mh-fallback", "mh-port", "mh-fallback,mh-port"]),
                _ => *rng.pick(&["flag-1", "flag-2", "flag-3", "flag-1,flag-3"]),
            };
            line.push_str(&format!(" -b {flags}"));
        }
        lines.push(line);
        let ndests = rng.below(7);
        for j in 0..ndests {
            let (addr, port) = if v6 && !rng.chance(10) {
                (format!("[2001:db8:ffff:{:x}::{:x}]", i, j + 1), 1 + rng.below(65535))
            } else {
                (v4(&mut rng, 10 + (j % 90)), 1 + rng.below(65535))
            };
            // An IPv4 real server on an IPv6 service must be tunnelled.
            let mixed = v6 && !addr.starts_with('[');
            let method = if mixed { "-i" } else { *rng.pick(&["-g", "-m", "-i"]) };
            let mut d = format!("-a {svc} -r {addr}:{port} {method} -w {}", rng.below(101));
            if rng.chance(30) {
                let u = rng.below(5000);
                d.push_str(&format!(" -x {u} -y {}", rng.below(u + 1)));
            }
            if method == "-i" && rng.chance(60) {
                match rng.below(3) {
                    0 => d.push_str(" --tun-type ipip"),
                    1 => d.push_str(&format!(
                        " --tun-type gue --tun-port {} {}",
                        1 + rng.below(65535),
                        rng.pick(&["--tun-nocsum", "--tun-csum", "--tun-remcsum"])
                    )),
                    _ => d.push_str(&format!(" --tun-type gre {}", rng.pick(&["--tun-nocsum", "--tun-csum"]))),
                }
            }
            lines.push(d);
        }
    }
    lines
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// `ipvsadm -R` with `input`, which must succeed silently.
fn restore(lb: &Lbadm, input: &str) {
    let o = lb.run(&args("-R"), Some(input.as_bytes())).expect("run -R");
    assert_eq!((o.status, String::from_utf8_lossy(&o.stderr).as_ref()), (0, ""), "ipvsadm -R");
}

const EMPTY_LIST: &str = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

#[test]
fn save_clear_restore_1000_services() {
    let lines = random_table(0x5eed_1b5a_d300, 1000);
    let lb = Lbadm::new("roundtrip").expect("lbadm set-up");
    let t0 = std::time::Instant::now();
    restore(&lb, &(lines.join("\n") + "\n"));
    let saved = lb.ok("-Sn").expect("-Sn");
    let listed = lb.ok("-Ln").expect("-Ln");
    let services = saved.lines().filter(|l| l.starts_with("-A ")).count();
    let dests = saved.lines().filter(|l| l.starts_with("-a ")).count();
    assert_eq!(services, 1000);
    assert_eq!(dests, lines.len() - 1000);
    for feature in [
        "-A -t ", "-A -u ", "-A --sctp-service ", "-A -f ", " -p ", " -M 255.", " -M 0.0.0.0", " --pe sip", " -o",
        " -b sh-", " -b mh-", " -b flag-", " -m -w ", " -g -w ", " -i -w ", "--tun-type ipip", " -w 0\n", " -s mh",
        " -s wlc", " -6 -s ", "-A -t [", "]:", " -r [", "--tun-type gue --tun-port ", "--tun-type gre ", "--tun-csum",
        "--tun-remcsum", "--tun-nocsum",
    ] {
        assert!(saved.contains(feature), "the random table has no `{feature}`");
    }
    // -Sn without -n prints names; with names or not, everything must come back.
    lb.ok("-C").expect("-C");
    assert_eq!(lb.ok("-Ln").expect("-Ln"), EMPTY_LIST);
    assert_eq!(lb.ok("-Sn").expect("-Sn"), "");
    restore(&lb, &saved);
    let saved2 = lb.ok("-Sn").expect("-Sn");
    assert!(saved2 == saved, "-Sn differs after -S/-C/-R");
    assert!(lb.ok("-Ln").expect("-Ln") == listed, "-Ln differs after -S/-C/-R");

    // The same with the names -S prints (port names from /etc/services).
    let named = lb.ok("-S").expect("-S");
    lb.ok("-C").expect("-C");
    restore(&lb, &named);
    assert!(lb.ok("-Sn").expect("-Sn") == saved, "-Sn differs after -S (names)/-C/-R");

    // Debian's wrappers: ipvsadm-save -n, then ipvsadm-restore (comments dropped, -C first)
    // onto a table that holds something else.
    let o = lb.run_as("ipvsadm-save", &args("-n"), None).expect("ipvsadm-save");
    assert_eq!(o.status, 0);
    assert!(o.stdout == saved.as_bytes(), "ipvsadm-save -n differs from ipvsadm -Sn");
    lb.ok("-C").expect("-C");
    lb.ok("-A -t 10.255.255.1:80 -s rr").expect("-A");
    let input = format!("# saved by ipvsadm-save\n{saved}# end\n");
    let o = lb.run_as("ipvsadm-restore", &[], Some(input.as_bytes())).expect("ipvsadm-restore");
    assert_eq!((o.status, o.stdout.as_slice(), o.stderr.as_slice()), (0, &b""[..], &b""[..]));
    assert!(lb.ok("-Sn").expect("-Sn") == saved, "-Sn differs after ipvsadm-save/ipvsadm-restore");
    assert!(lb.ok("-Ln").expect("-Ln") == listed, "-Ln differs after ipvsadm-save/ipvsadm-restore");
    eprintln!(
        "round trip: {services} services, {dests} real servers, {} bytes of -Sn: identical -Sn and -Ln ({:.1?})",
        saved.len(),
        t0.elapsed()
    );
}

/// The wrappers on the binary, on the edge cases of their shell scripts.
#[test]
fn save_and_restore_wrappers_on_the_binary() {
    let lb = Lbadm::new("wrappers").expect("lbadm set-up");
    lb.ok("-A -t 10.0.0.1:80 -s rr").expect("-A");
    lb.ok("-a -t 10.0.0.1:80 -r 10.0.1.1 -m").expect("-a");
    let save = |a: &str| lb.run_as("ipvsadm-save", &args(a), None).expect("ipvsadm-save");
    assert_eq!(save("").stdout, lb.ok("-S").expect("-S").as_bytes());
    assert_eq!(save("-n").stdout, b"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1\n");
    let bad = save("-c");
    let direct = lb.run(&args("-S -c"), None).expect("-S -c");
    assert_eq!(bad, direct);
    assert_eq!(bad.status, 2);
    // A `#` line ends a plain -R at once ("Try ..."); the wrapper drops it.
    let input = b"#comment\n-A -t 10.0.0.2:80 -s rr\n";
    let plain = lb.run(&args("-R"), Some(input)).expect("-R");
    assert_eq!(plain.status, 255);
    let o = lb.run_as("ipvsadm-restore", &[], Some(input)).expect("ipvsadm-restore");
    assert_eq!((o.status, o.stderr.as_slice()), (0, &b""[..]));
    assert_eq!(lb.ok("-Sn").expect("-Sn"), "-A -t 10.0.0.2:80 -s rr\n");
    // A failing line: -R's status.
    let o = lb.run_as("ipvsadm-restore", &[], Some(b"-A -t 10.0.0.3:80 -s nosuch\n")).expect("ipvsadm-restore");
    assert_eq!((o.status, String::from_utf8_lossy(&o.stderr).as_ref()), (255, "Scheduler or persistence engine not found\n"));
    assert_eq!(lb.ok("-Sn").expect("-Sn"), "");
}

/// Speed: `-R` of 10,000 services × 10 real servers, then `-Ln` and `-Sn` of that table.
/// Targets on a 2-core machine with the release binary: under 2 s and under 1 s. Run with
/// `cargo build --release --bins && cargo test --release -p xlb-tests --test ipvsadm_roundtrip
/// -- --ignored --nocapture` (same CARGO_TARGET_DIR).
#[test]
#[ignore]
fn speed_10000_services_10_dests() {
    let mut input = String::new();
    for i in 0..10_000u32 {
        let vip = format!("10.{}.{}.1", i / 256, i % 256);
        input.push_str(&format!("-A -t {vip}:80 -s rr\n"));
        for j in 0..10u32 {
            input.push_str(&format!("-a -t {vip}:80 -r 192.168.{j}.{}:8080 -m -w {}\n", 1 + i % 250, 1 + j));
        }
    }
    let lb = Lbadm::new("speed").expect("lbadm set-up");
    lb.ok("-Ln").expect("create the maps");
    let t = std::time::Instant::now();
    restore(&lb, &input);
    let restore_time = t.elapsed();
    let t = std::time::Instant::now();
    let listed = lb.ok("-Ln").expect("-Ln");
    let list_time = t.elapsed();
    let t = std::time::Instant::now();
    let saved = lb.ok("-Sn").expect("-Sn");
    let save_time = t.elapsed();
    assert_eq!(listed.lines().count(), 3 + 10_000 * 11);
    assert_eq!(saved.lines().count(), 10_000 * 11);
    eprintln!(
        "speed ({}): -R of 10000 services x 10 real servers {restore_time:.2?}, -Ln {list_time:.2?}, -Sn {save_time:.2?}",
        xlb_tests::workspace_bin("lbadm").display()
    );
}
