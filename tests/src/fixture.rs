//! The packet fixtures' one harness (the IPv4 and IPv6 suites): a frame in, the verdict and the
//! frame expected out, run through the real `xlb_xdp` inside a director namespace and judged
//! byte for byte.
use std::path::{Path, PathBuf};

use crate::xdp::{RunResult, XDP_DROP, XdpUnderTest, verdict_name};

pub struct Fixture {
    pub name: String,
    pub input: Vec<u8>,
    /// Ingress: false = eth0 (client side), true = eth1 (server side).
    pub from_servers: bool,
    pub verdict: u32,
    /// Expected frame (ignored for XDP_DROP).
    pub output: Vec<u8>,
    /// Counted as malformed (`parse_fail`).
    pub malformed: bool,
}

/// Runs every fixture, in order, through `xlb_xdp` with the maps of `pin_dir`, on a thread inside
/// namespace `ns` (BPF_PROG_TEST_RUN resolves the ingress ifindex and the FIB in the caller's
/// namespace); `eth0`, `eth1`: the ifindexes there.
pub fn run_in(ns: &str, pin_dir: &Path, list: Vec<Fixture>, eth0: u32, eth1: u32) -> Vec<(Fixture, RunResult)> {
    let (name, path): (String, PathBuf) = (ns.to_string(), pin_dir.to_path_buf());
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
        use std::os::fd::AsRawFd as _;
        // SAFETY: setns on an open namespace file, for this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
        let mut xdp = XdpUnderTest::load(&path, "xlb_xdp").expect("load");
        list.into_iter()
            .map(|fx| {
                let r = xdp.run_on(&fx.input, if fx.from_servers { eth1 } else { eth0 }).expect("run");
                (fx, r)
            })
            .collect::<Vec<_>>()
    })
    .join()
    .expect("fixture thread")
}

/// Prints every fixture and fails with all whose verdict or frame differs; `want(fixture, got)`
/// is the frame a fixture's output is compared as (its `output`, or that with what the data
/// plane may choose freely taken from `got`).
pub fn assert_all(results: &[(Fixture, RunResult)], want: impl Fn(&Fixture, &[u8]) -> Vec<u8>) {
    let mut failures = Vec::new();
    for (i, (fx, r)) in results.iter().enumerate() {
        let ok = r.verdict == fx.verdict && (fx.verdict == XDP_DROP || r.frame == want(fx, &r.frame));
        println!("{:>2} {:<13} {}", i + 1, verdict_name(fx.verdict), fx.name);
        if !ok {
            failures.push(format!(
                "#{} {}: got {} {:02x?}\n   want {} {:02x?}",
                i + 1,
                fx.name,
                verdict_name(r.verdict),
                r.frame,
                verdict_name(fx.verdict),
                fx.output
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), results.len(), failures.join("\n"));
}
