//! End-to-end tests of `run` against an in-memory table.
use super::*;

/// A `Backend` that just holds a table.
#[derive(Default)]
pub(crate) struct MemBackend {
    pub table: Table,
    pub conns: Vec<ConnEntry>,
    pub commits: usize,
}

impl Backend for MemBackend {
    fn load(&mut self) -> anyhow::Result<Table> {
        Ok(self.table.clone())
    }

    fn commit(&mut self, _before: &Table, after: &Table) -> anyhow::Result<()> {
        self.table = after.clone();
        self.commits += 1;
        Ok(())
    }

    fn connections(&mut self) -> anyhow::Result<Vec<ConnEntry>> {
        Ok(self.conns.clone())
    }

    /// The recording guest's one interface: `lo` (MTU 65536, no IFF_MULTICAST).
    fn interface(&mut self, name: &str) -> Option<crate::netdev::NetDev> {
        (name == "lo").then_some(crate::netdev::NetDev { index: 1, mtu: 65536, multicast: false })
    }
}

pub(crate) struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

pub(crate) fn run_args(b: &mut MemBackend, args: &[&str], stdin: Option<&str>) -> Outcome {
    let mut argv: Vec<OsString> = vec!["ipvsadm".into()];
    argv.extend(args.iter().map(OsString::from));
    let mut input: &[u8] = stdin.unwrap_or("").as_bytes();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = run(&argv, b, &mut input, &mut out, &mut err);
    Outcome {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        status,
    }
}

fn sh(b: &mut MemBackend, cmd: &str) -> Outcome {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    run_args(b, &args, None)
}

fn ok(b: &mut MemBackend, cmd: &str) {
    let o = sh(b, cmd);
    assert_eq!((o.status, o.stderr.as_str()), (0, ""), "{cmd}");
}

fn all_scheds<T>(f: impl FnOnce() -> T) -> T {
    crate::ctl::ALL_SCHEDULERS.with(|c| c.set(true));
    let r = f();
    crate::ctl::ALL_SCHEDULERS.with(|c| c.set(false));
    r
}

const HEAD: &str = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

#[test]
fn example_a() {
    let mut b = MemBackend::default();
    ok(&mut b, "-A -t 207.175.44.110:80 -s rr");
    ok(&mut b, "-a -t 207.175.44.110:80 -r 192.168.10.1:80 -m");
    ok(&mut b, "-a -t 207.175.44.110:80 -r 192.168.10.2:8080 -m -w 2");
    let o = sh(&mut b, "-Ln");
    let want = format!(
        "{HEAD}TCP  207.175.44.110:80 rr\n  -> 192.168.10.1:80              Masq    1      0          0         \n  -> 192.168.10.2:8080            Masq    2      0          0         \n"
    );
    assert_eq!(o.stdout, want);
    let o = sh(&mut b, "-Sn");
    assert_eq!(
        o.stdout,
        "-A -t 207.175.44.110:80 -s rr\n-a -t 207.175.44.110:80 -r 192.168.10.1:80 -m -w 1\n-a -t 207.175.44.110:80 -r 192.168.10.2:8080 -m -w 2\n"
    );
    // Newest dest first in the table.
    assert_eq!(b.table.services[0].dests[0].port, 8080);
}

#[test]
fn example_b() {
    let mut b = MemBackend::default();
    all_scheds(|| {
        ok(&mut b, "-A -t 192.168.88.15:443 -p -M 255.255.255.0");
        ok(&mut b, "-a -t 192.168.88.15:443 -r 192.168.88.21");
        ok(&mut b, "-a -t 192.168.88.15:443 -r 192.168.88.22:8443 -w 3");
        ok(&mut b, "-A -u 192.168.88.15:53 -s sh -b sh-port");
        ok(&mut b, "-a -u 192.168.88.15:53 -r 192.168.88.21 -w 0");
    });
    let o = sh(&mut b, "-Ln");
    let want = format!(
        "{HEAD}TCP  192.168.88.15:443 wlc persistent 360 mask 255.255.255.0\n  -> 192.168.88.21:443            Route   1      0          0         \n  -> 192.168.88.22:443            Route   3      0          0         \nUDP  192.168.88.15:53 sh (sh-port)\n  -> 192.168.88.21:53             Route   0      0          0         \n"
    );
    assert_eq!(o.stdout, want);
    let o = sh(&mut b, "-Sn");
    assert_eq!(
        o.stdout,
        "-A -t 192.168.88.15:443 -s wlc -p 360 -M 255.255.255.0\n-a -t 192.168.88.15:443 -r 192.168.88.21:443 -g -w 1\n-a -t 192.168.88.15:443 -r 192.168.88.22:443 -g -w 3\n-A -u 192.168.88.15:53 -s sh -b sh-port\n-a -u 192.168.88.15:53 -r 192.168.88.21:53 -g -w 0\n"
    );
}

#[test]
fn example_c() {
    let mut b = MemBackend::default();
    all_scheds(|| {
        ok(&mut b, "-A -f 1 -s wrr -p 600");
        ok(&mut b, "-a -f 1 -r 10.1.0.5 -i -w 3");
        ok(&mut b, "-a -f 1 -r 10.1.0.6 -i -w 1");
    });
    // Traffic as the data plane would count it.
    for d in &mut b.table.services[0].dests {
        if d.addr.to_string() == "10.1.0.6" {
            d.active_conns = 1;
            d.persist_conns = 1;
        }
    }
    let o = sh(&mut b, "-Ln");
    let want = format!(
        "{HEAD}FWM  1 wrr persistent 600\n  -> 10.1.0.5:0                   Tunnel  3      0          0         \n  -> 10.1.0.6:0                   Tunnel  1      1          0         \n"
    );
    assert_eq!(o.stdout, want);
    assert_eq!(
        sh(&mut b, "-Sn").stdout,
        "-A -f 1 -s wrr -p 600\n-a -f 1 -r 10.1.0.5:0 -i -w 3 --tun-type ipip\n-a -f 1 -r 10.1.0.6:0 -i -w 1 --tun-type ipip\n"
    );
    let o = sh(&mut b, "-Ln --persistent-conn");
    assert!(o.stdout.contains("Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n  -> RemoteAddress:Port\n"));
    assert!(o.stdout.contains("  -> 10.1.0.6:0                   1         1           1          0         \n"));
    b.conns = vec![
        ConnEntry {
            proto: "IP",
            expires: 597,
            state: "ASSURED",
            caddr: "172.16.0.9".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            cport: 0,
            vaddr: "0.0.0.1".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            vport: 0,
            daddr: "10.1.0.6".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            dport: 0,
        },
        ConnEntry {
            proto: "TCP",
            expires: 897,
            state: "ESTABLISHED",
            caddr: "172.16.0.9".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            cport: 40312,
            vaddr: "10.0.0.10".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            vport: 443,
            daddr: "10.1.0.6".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            dport: 443,
        },
    ];
    assert_eq!(
        sh(&mut b, "-Lnc").stdout,
        "IPVS connection entries\npro expire state       source             virtual            destination\nIP  09:57  ASSURED     172.16.0.9:0       0.0.0.1:0          10.1.0.6:0\nTCP 14:57  ESTABLISHED 172.16.0.9:40312   10.0.0.10:443      10.1.0.6:443\n"
    );
}

#[test]
fn errors_and_statuses() {
    let mut b = MemBackend::default();
    let o = sh(&mut b, "-t 10.0.0.1:80 -A");
    assert_eq!((o.status, o.stderr.as_str()), (255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"));
    let o = sh(&mut b, "-L -C");
    assert_eq!((o.status, o.stderr.as_str()), (2, "invalid option `-C'\n"));
    let o = sh(&mut b, "-A -t");
    assert_eq!((o.status, o.stderr.as_str()), (255, "-t: missing argument\n"));
    let o = sh(&mut b, "-L --foo");
    assert_eq!((o.status, o.stderr.as_str()), (255, "--foo: unknown option\n"));
    let o = sh(&mut b, "-L --list=foo");
    assert_eq!((o.status, o.stderr.as_str()), (255, "--list=foo: option does not take an argument\n"));
    let o = sh(&mut b, "--list=foo");
    assert_eq!(o.status, 255);
    let o = sh(&mut b, "-L -c --timeout");
    assert_eq!(o.stderr, "The option 'timeout' conflicts with the 'connection' option in the 'list' command\n");
    let o = sh(&mut b, "-A -t 10.0.0.1:80 -n");
    assert_eq!((o.status, o.stderr.as_str()), (2, "Illegal 'numeric' option with the 'add-service' command\n"));
    let o = sh(&mut b, "-a -t 10.0.0.1:80");
    assert_eq!(o.stderr, "You need to supply the 'real-server' option for the 'add-server' command\n");
    let o = sh(&mut b, "-A -t 10.0.0.1:0");
    assert_eq!(o.stderr, "Zero port specified for non-persistent service\n");
    let o = sh(&mut b, "-A -6 -f 1");
    assert_eq!(o.stderr, "-6 used before -f\n\n");
    let o = sh(&mut b, "-a -t 10.0.0.1:80 -r 192.168.1.1 -g -m");
    assert_eq!(o.stderr, "multiple 'forwarding-method' options specified\n");
    let o = sh(&mut b, "-L -c --stats");
    assert_eq!(o.stderr, "options conflicts in the list command\n");
    let o = sh(&mut b, "-L --start-daemon master");
    assert_eq!(o.stderr, "invalid option `master'\n");
    let o = sh(&mut b, "--set 1 2");
    assert_eq!(o.stderr, "--set option requires 3 timeout values\n");
    let o = sh(&mut b, "-L foo");
    assert_eq!((o.status, o.stderr.as_str()), (2, "unexpected argument foo\n"));
    // Kernel errors.
    ok(&mut b, "-A -t 10.0.0.1:80 -s rr");
    let o = sh(&mut b, "-A -t 10.0.0.1:80 -s rr");
    assert_eq!((o.status, o.stderr.as_str()), (255, "Service already exists\n"));
    let o = sh(&mut b, "-A -t 10.0.0.2:80 -s nosuch");
    assert_eq!(o.stderr, "Scheduler or persistence engine not found\n");
    let o = sh(&mut b, "-a -t 10.0.0.1:80 -r 192.168.1.3 -y 1");
    assert_eq!(o.stderr, "Numerical result out of range\n");
    let o = sh(&mut b, "-a -t 10.0.0.9:80 -r 192.168.1.3");
    assert_eq!(o.stderr, "Service not defined\n");
    let o = sh(&mut b, "-d -t 10.0.0.1:80 -r 192.168.1.3");
    assert_eq!(o.stderr, "No such destination\n");
    let o = sh(&mut b, "-L -n -t 10.0.0.9:80");
    assert_eq!((o.status, o.stderr.as_str()), (1, "No such service\n"));
    let o = sh(&mut b, "-a -t 10.0.0.1:80 -r 192.168.1.255");
    assert_eq!(o.status, 0);
    let o = sh(&mut b, "-a -t 10.0.0.1:80 -r 255.255.255.255");
    assert_eq!(o.stderr, "Invalid operation.  Possibly wrong module version, address not unicast, ...\n");
    let o = sh(&mut b, "--stop-daemon master");
    assert_eq!((o.status, o.stderr.as_str()), (255, "No daemon is running\n"));
    let o = sh(&mut b, "--start-daemon master --mcast-port 0");
    assert_eq!((o.status, o.stderr.as_str()), (2, "illegal mcast-port specified\n"));
    let o = sh(&mut b, "--start-daemon master");
    assert_eq!((o.status, o.stderr.as_str()), (255, "No such device\n"));
}

/// The sync daemons' settings as the kernel completes them, and what `-L --daemon` prints
/// (the recordings cover the defaults; these are the clamps and the persistence in the table).
#[test]
fn sync_daemons() {
    let mut b = MemBackend::default();
    ok(&mut b, "--start-daemon backup --mcast-interface lo --sync-maxlen 100 --mcast-ttl 3 --syncid 7");
    ok(&mut b, "--start-daemon master --mcast-interface lo --mcast-group 239.1.2.3 --mcast-port 9999");
    let o = sh(&mut b, "-L --daemon");
    assert_eq!(
        o.stdout,
        "master sync daemon (mcast=lo, syncid=0, maxlen=1472, group=239.1.2.3, port=9999, ttl=1)\n\
         backup sync daemon (mcast=lo, syncid=7, maxlen=1024, group=224.0.0.81, port=8848, ttl=3)\n"
    );
    let d = &b.table.daemons;
    assert_eq!((d.starts, d.master.as_ref().map(|m| m.generation), d.backup.as_ref().map(|m| m.generation)), (2, Some(2), Some(1)));
    ok(&mut b, "--stop-daemon master");
    ok(&mut b, "--start-daemon master --mcast-interface lo");
    assert_eq!(b.table.daemons.master.as_ref().map(|m| m.generation), Some(3), "a restart is a new generation");
    // A real server of the other family: IPVS cannot sync the table.
    ok(&mut b, "--stop-daemon master");
    ok(&mut b, "-A -t 10.0.0.1:80");
    ok(&mut b, "-a -t 10.0.0.1:80 -r [2001:db8::1]:80 -i");
    let o = sh(&mut b, "--start-daemon master --mcast-interface lo");
    assert_eq!((o.status, o.stderr.as_str()), (255, "Invalid operation.  Possibly wrong module version, address not unicast, ...\n"));
}

#[test]
fn parsing_forms() {
    let mut b = MemBackend::default();
    all_scheds(|| {
        ok(&mut b, "-At 10.0.0.1:80 -p -s rr");
        ok(&mut b, "-At10.0.0.2:80 -p600");
        ok(&mut b, "--add-service --tcp-service=10.0.0.3:80 --persistent=700 --scheduler=wrr");
        ok(&mut b, "-at 10.0.0.1:80 -r192.168.1.1 -mw3");
        ok(&mut b, "-A -t 10.0.0.4:80 -p 2678400");
    });
    let o = sh(&mut b, "-Sn");
    assert_eq!(
        o.stdout,
        "-A -t 10.0.0.1:80 -s rr -p 360\n-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 3\n-A -t 10.0.0.2:80 -s wlc -p 600\n-A -t 10.0.0.3:80 -s wrr -p 700\n-A -t 10.0.0.4:80 -s wlc -p 2678400\n"
    );
    let o = sh(&mut b, "-A -t 10.0.0.5:80 -p 2678401");
    assert_eq!(o.stderr, "invalid timeout value `2678401' specified\n");
    let o = sh(&mut b, "-Lnt 10.0.0.1:80");
    assert!(o.stdout.starts_with("Prot LocalAddress:Port Scheduler Flags\n"));
}

#[test]
fn edit_full_replacement() {
    let mut b = MemBackend::default();
    all_scheds(|| {
        ok(&mut b, "-A -t 10.0.0.1:80 -s rr -p 600 -M 255.255.255.0");
        ok(&mut b, "-a -t 10.0.0.1:80 -r 192.168.1.1:8080 -m -w 5 -x 10 -y 2");
        ok(&mut b, "-E -t 10.0.0.1:80");
    });
    assert_eq!(sh(&mut b, "-Sn").stdout, "-A -t 10.0.0.1:80 -s wlc\n-a -t 10.0.0.1:80 -r 192.168.1.1:8080 -m -w 5\n");
    // -e without -m means DR, which forces the port to 80: no such destination.
    let o = sh(&mut b, "-e -t 10.0.0.1:80 -r 192.168.1.1:8080");
    assert_eq!(o.stderr, "No such destination\n");
    ok(&mut b, "-e -t 10.0.0.1:80 -r 192.168.1.1:8080 -m");
    assert_eq!(sh(&mut b, "-Sn").stdout, "-A -t 10.0.0.1:80 -s wlc\n-a -t 10.0.0.1:80 -r 192.168.1.1:8080 -m -w 1\n");
}

#[test]
fn restore_semantics() {
    let mut b = MemBackend::default();
    let input = "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 192.168.1.1 -m\n";
    let o = run_args(&mut b, &["-R"], Some(input));
    assert_eq!((o.status, o.stderr.as_str()), (0, "Service already exists\n"));
    assert_eq!(b.commits, 1);
    assert_eq!(b.table.services[0].dests.len(), 1);
    // An argument error aborts the rest but keeps (commits) what came before.
    let mut b = MemBackend::default();
    let o = run_args(&mut b, &["-R"], Some("-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -w 3\n-A -t 10.0.0.3:80 -s rr\n"));
    assert_eq!((o.status, o.stderr.as_str()), (2, "Illegal 'weight' option with the 'add-service' command\n"));
    assert_eq!(b.table.services.len(), 1);
    // Kernel error on the last line sets the status.
    let mut b = MemBackend::default();
    let o = run_args(&mut b, &["-R"], Some("-A -t 10.0.0.1:80 -s rr\n-D -t 10.0.0.9:80\n"));
    assert_eq!(o.status, 255);
    // Nested -R.
    let o = run_args(&mut b, &["-R"], Some("-R\n"));
    assert_eq!(o.status, 255);
    // Nothing changed: no commit.
    let mut b = MemBackend::default();
    let o = run_args(&mut b, &["-Ln"], None);
    assert_eq!((o.status, b.commits), (0, 0));
    assert_eq!(o.stdout, HEAD);
}

#[test]
fn sorting_quirk_and_nosort() {
    let mut b = MemBackend::default();
    ok(&mut b, "-A -t 10.0.0.1:80 -s rr");
    for d in ["192.168.0.1", "10.0.0.5", "172.16.0.1", "10.0.0.4"] {
        ok(&mut b, &format!("-a -t 10.0.0.1:80 -r {d} -m"));
    }
    let o = sh(&mut b, "-Sn --nosort");
    assert_eq!(o.status, 2); // -S does not take --nosort
    let o = sh(&mut b, "-Ln --nosort");
    let order: Vec<&str> = o.stdout.lines().skip(4).map(|l| l.split_whitespace().nth(1).unwrap_or("")).collect();
    assert_eq!(order, ["10.0.0.4:80", "172.16.0.1:80", "10.0.0.5:80", "192.168.0.1:80"]);
}

#[test]
fn help_and_version() {
    let mut b = MemBackend::default();
    let o = sh(&mut b, "-v");
    assert_eq!((o.status, o.stdout.as_str()), (0, "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"));
    let o = sh(&mut b, "-h");
    assert!(o.stdout.contains("  ipvsadm -A|E virtual-service [-s scheduler]"));
    assert_eq!(o.status, 0);
}

#[test]
fn personality_from_argv0() {
    let p = |s: &str| Personality::of(Some(&OsString::from(s)));
    assert_eq!(p("ipvsadm"), Personality::Ipvsadm);
    assert_eq!(p("/usr/local/sbin/lbadm"), Personality::Ipvsadm);
    assert_eq!(p("ipvsadm-save"), Personality::Save);
    assert_eq!(p("/sbin/ipvsadm-save"), Personality::Save);
    assert_eq!(p("/sbin/ipvsadm-restore"), Personality::Restore);
    assert_eq!(p("ipvsadm-restore.sh"), Personality::Ipvsadm);
    assert_eq!(Personality::of(None), Personality::Ipvsadm);
}

fn save(b: &mut MemBackend, args: &[&str]) -> Outcome {
    let mut argv: Vec<OsString> = vec!["/sbin/ipvsadm-save".into()];
    argv.extend(args.iter().map(OsString::from));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = run_save(&argv, b, &mut out, &mut err);
    Outcome { stdout: String::from_utf8_lossy(&out).into_owned(), stderr: String::from_utf8_lossy(&err).into_owned(), status }
}

fn restore(b: &mut MemBackend, input: &str) -> Outcome {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = run_restore(&mut input.as_bytes(), b, &mut out, &mut err);
    Outcome { stdout: String::from_utf8_lossy(&out).into_owned(), stderr: String::from_utf8_lossy(&err).into_owned(), status }
}

#[test]
fn save_wrapper_is_dash_s_with_first_argument() {
    let mut b = MemBackend::default();
    ok(&mut b, "-A -t 10.0.0.1:80 -s rr");
    ok(&mut b, "-a -t 10.0.0.1:80 -r 10.0.1.1 -m");
    let o = save(&mut b, &["-n"]);
    assert_eq!((o.status, o.stdout.as_str(), o.stderr.as_str()), (0, "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1\n", ""));
    assert_eq!(o.stdout, sh(&mut b, "-S -n").stdout);
    assert_eq!(save(&mut b, &[]).stdout, sh(&mut b, "-S").stdout);
    // `$1` unquoted: split on blanks; further arguments are dropped.
    assert_eq!(save(&mut b, &["-n ", "--bogus"]).stdout, o.stdout);
    let bad = save(&mut b, &["-x"]);
    assert_eq!((bad.status, bad.stdout.as_str()), (sh(&mut b, "-S -x").status, ""));
    assert_eq!(bad.stderr, sh(&mut b, "-S -x").stderr);
}

#[test]
fn restore_input_like_the_shell() {
    let r = |s: &str| String::from_utf8_lossy(&restore_input(s.as_bytes())).into_owned();
    assert_eq!(r("# saved\n-A -t 10.0.0.1:80\n  # kept\n#x\n-C\n\n\n"), "-A -t 10.0.0.1:80\n  # kept\n-C\n");
    assert_eq!(r("-C"), "-C\n");
    assert_eq!(r(""), "\n");
    assert_eq!(r("#only\n"), "\n");
    assert_eq!(r("-n\n"), "");
    assert_eq!(r("-e"), "\n");
    assert_eq!(r("-nx"), "-nx\n");
    assert_eq!(r("a\0b\n"), "ab\n");
}

#[test]
fn restore_wrapper_clears_then_restores() {
    let mut b = MemBackend::default();
    ok(&mut b, "-A -t 10.0.0.9:80 -s rr");
    ok(&mut b, "--set 10 20 30");
    let saved = "# ipvsadm-save output\n-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1\n";
    let o = restore(&mut b, saved);
    assert_eq!((o.status, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
    // -C flushed the old service (not the timeouts, as with ipvsadm -C).
    assert_eq!(sh(&mut b, "-Sn").stdout, "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1\n");
    assert_eq!(sh(&mut b, "-L --timeout").stdout, "Timeout (tcp tcpfin udp): 10 20 30\n");
    // The status is that of -R: a fail() line aborts with 2.
    let o = restore(&mut b, "-A -t 10.0.0.2:80 -s rr\n-a -t 10.0.0.2:80 -r 10.0.1.2 -w -1\n-A -t 10.0.0.3:80 -s rr\n");
    assert_eq!((o.status, o.stderr.as_str()), (2, "illegal weight specified\n"));
    assert_eq!(sh(&mut b, "-Sn").stdout, "-A -t 10.0.0.2:80 -s rr\n");
    // Empty input: an empty table.
    let o = restore(&mut b, "");
    assert_eq!(o.status, 0);
    assert_eq!(sh(&mut b, "-Sn").stdout, "");
}

#[test]
fn ipv6_services_and_real_servers_listed_and_saved() {
    let mut b = MemBackend::default();
    for cmd in [
        "-A -t [2001:db8::1]:80 -s rr",
        "-a -t [2001:db8::1]:80 -r [2001:db8::10]:8080 -m -w 2",
        "-a -t [2001:db8::1]:80 -r [2001:db8::11]:80 -g",
        "-a -t [2001:db8::1]:80 -r 10.1.1.2 -i",
        "-A -f 5 -6 -s sh -p 60 -M 64",
        "-a -f 5 -6 -r [fd00::6]:0 -i --tun-type gue --tun-port 6080 --tun-csum",
    ] {
        ok(&mut b, cmd);
    }
    assert_eq!(
        sh(&mut b, "-Sn").stdout,
        "-A -t [2001:db8::1]:80 -s rr\n\
         -a -t [2001:db8::1]:80 -r 10.1.1.2:80 -i -w 1 --tun-type ipip\n\
         -a -t [2001:db8::1]:80 -r [2001:db8::10]:8080 -m -w 2\n\
         -a -t [2001:db8::1]:80 -r [2001:db8::11]:80 -g -w 1\n\
         -A -f 5 -6 -s sh -p 60 -M 64\n\
         -a -f 5 -6 -r [fd00::6]:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum\n"
    );
    // Another family than the service's: tunnel only (ipvsadm's own check; the table's
    // EINVAL behind it is ctl's test).
    let before = b.table.clone();
    for cmd in ["-a -t [2001:db8::1]:80 -r 10.1.1.3 -m", "-a -t [2001:db8::1]:80 -r 10.1.1.3 -g"] {
        let o = sh(&mut b, cmd);
        assert_eq!((o.status, o.stderr.as_str()), (2, "Different address family is allowed only for tunneling servers\n"), "{cmd}");
    }
    assert_eq!(b.table, before);
}

#[test]
fn gue_and_gre_options_stored_as_ipvs_does() {
    let mut b = MemBackend::default();
    ok(&mut b, "-A -t 10.0.0.1:80 -s rr");
    for cmd in [
        "-a -t 10.0.0.1:80 -r 192.168.1.2 -i --tun-type gue --tun-port 6080",
        "-a -t 10.0.0.1:80 -r 192.168.1.3 -i --tun-type gue --tun-port 6081 --tun-nocsum",
        "-a -t 10.0.0.1:80 -r 192.168.1.4 -i --tun-type gue --tun-port 6082 --tun-csum",
        "-a -t 10.0.0.1:80 -r 192.168.1.5 -i --tun-type=gue --tun-port=7000 --tun-remcsum",
        "-a -t 10.0.0.1:80 -r 192.168.1.6 -i --tun-type gre",
        "-a -t 10.0.0.1:80 -r 192.168.1.7 -i --tun-type gre --tun-csum",
    ] {
        ok(&mut b, cmd);
    }
    let tun: Vec<_> = b.table.services[0].dests.iter().map(|d| (d.addr.to_string(), d.tunnel.kind, d.tunnel.port, d.tunnel.flags)).collect();
    let want = [("192.168.1.7", 2, 0, 1), ("192.168.1.6", 2, 0, 0), ("192.168.1.5", 1, 7000, 2), ("192.168.1.4", 1, 6082, 1), ("192.168.1.3", 1, 6081, 0), ("192.168.1.2", 1, 6080, 0)];
    assert_eq!(tun, want.map(|(a, k, p, f)| (a.to_string(), k, p, f)));
    ok(&mut b, "-e -t 10.0.0.1:80 -r 192.168.1.7 -i --tun-type gue --tun-port 9 -w 3");
    assert_eq!(b.table.services[0].dests[0].tunnel, crate::model::Tunnel { kind: 1, port: 9, flags: 0 });
    // ipvsadm's own checks come first.
    for (cmd, stderr) in [
        ("-a -t 10.0.0.1:80 -r 192.168.1.8 -i --tun-type gue", "You need to supply the 'tun-port' option for the 'gue' tunnel type\n"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.9 -i --tun-type gre --tun-remcsum", "Illegal 'tun-remcsum' option with the 'gre' tunnel type\n"),
    ] {
        let o = sh(&mut b, cmd);
        assert_eq!((o.status, o.stderr.as_str()), (2, stderr), "{cmd}");
    }
}
