//! The schedulers in the real XDP object against kernel IPVS: every sequence recorded from the
//! kernel (tests/golden/sched/*.json: ipvsadm commands, new connections, held connections) is
//! replayed with the built `lbadm` (invoked as `ipvsadm`) on a private table and SYNs run
//! through BPF_PROG_TEST_RUN; the real server the data plane picks for each connection, and the
//! ActiveConn/InActConn counts before it, must be the kernel's.
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use lb_user::{model::SvcKey, store::Store};
use serde::Deserialize;
use xlb_tests::{
    frames::{ACK, FIN, Frame, SYN, sa},
    pins::TempPins,
    workspace_bin,
    xdp::XdpUnderTest,
};

/// What `Replay::table` reads: counts by rs name, rs names by dest id, the eligible rs names.
type LiveTable = (BTreeMap<String, (u32, u32)>, BTreeMap<u32, String>, Vec<String>);
/// One replayed sequence: its kernel, the sequence, and (connections, count snapshots) or why not.
type Replayed = (String, Sequence, Result<(usize, usize), String>);

#[derive(Deserialize)]
struct File {
    kernel: String,
    /// Which scheduler modules the recording's kernel had (6.1 has no `ip_vs_twos`).
    #[serde(default)]
    ipvs_modules_loaded: BTreeMap<String, bool>,
    sequences: Vec<Sequence>,
}

#[derive(Clone, Deserialize)]
struct Sequence {
    name: String,
    sched: String,
    #[serde(default)]
    known_mismatch: Option<String>,
    steps: Vec<Step>,
}

#[derive(Clone, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Step {
    Ipvsadm {
        argv: Vec<String>,
        rc: i32,
    },
    Conn {
        client: String,
        cport: Option<u16>,
        hold: bool,
        vip: String,
        vport: u16,
        answer: String,
        #[serde(default)]
        counts_before: Option<BTreeMap<String, (u32, u32)>>,
    },
    CloseHeld {
        index: usize,
    },
}

fn rs_name(addr: &str) -> Option<&'static str> {
    match addr {
        "10.0.2.11" => Some("rs1"),
        "10.0.2.12" => Some("rs2"),
        "10.0.2.13" => Some("rs3"),
        _ => None,
    }
}

fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().map(|a| a.octets()).unwrap_or([0; 4])
}

struct Replay {
    pins: TempPins,
    ipvsadm: PathBuf,
    xdp: XdpUnderTest,
}

impl Replay {
    fn run_ipvsadm(&self, argv: &[String]) -> i32 {
        let out = Command::new(&self.ipvsadm)
            .args(argv)
            .env("XLB_PIN_DIR", self.pins.path())
            .output()
            .expect("run ipvsadm");
        out.status.code().unwrap_or(-1)
    }

    /// (rs name -> (ActiveConn, InActConn)), the dest-id -> rs name map of the live table, and
    /// the rs names a scheduler may pick for `vport` (weight > 0, not OVERLOADed).
    fn table(&self, vport: u16) -> LiveTable {
        let t = Store::open_at(self.pins.path(), Default::default()).and_then(|s| s.load()).expect("load");
        let mut counts = BTreeMap::new();
        let mut names = BTreeMap::new();
        let mut eligible = Vec::new();
        for s in &t.services {
            for d in &s.dests {
                if let Some(n) = rs_name(&d.addr.to_string()) {
                    let e = counts.entry(n.to_string()).or_insert((0, 0));
                    e.0 += d.active_conns;
                    e.1 += d.inact_conns;
                    names.insert(d.id, n.to_string());
                    if matches!(s.key, SvcKey::Inet { port, .. } if port == vport) && d.weight > 0 && !d.overloaded {
                        eligible.push(n.to_string());
                    }
                }
            }
        }
        (counts, names, eligible)
    }

    fn dest_of(&self, client: [u8; 4], cport: u16, vip: [u8; 4], vport: u16) -> Option<u32> {
        xlb_tests::table::tcp_conn_dest(self.pins.path(), client, cport, vip, vport)
    }
}

/// Replays one recorded sequence; returns (connections checked, count snapshots checked).
fn replay(seq: &Sequence, dir: &Path) -> Result<(usize, usize), String> {
    let pins = TempPins::new("sched").map_err(|e| e.to_string())?;
    let ipvsadm = dir.join("ipvsadm");
    let _ = std::fs::remove_file(&ipvsadm);
    std::os::unix::fs::symlink(workspace_bin("lbadm"), &ipvsadm).map_err(|e| e.to_string())?;
    // Create the maps (the first ipvsadm does too) before loading the program on them.
    let probe = Command::new(&ipvsadm).arg("-Ln").env("XLB_PIN_DIR", pins.path()).output();
    probe.map_err(|e| e.to_string())?;
    let xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").map_err(|e| format!("{e:#}"))?;
    let mut r = Replay { pins, ipvsadm, xdp };
    let mut held: Vec<Frame> = Vec::new();
    let mut next_port = 20000u16;
    let (mut conns, mut snapshots) = (0, 0);
    for (i, step) in seq.steps.iter().enumerate() {
        match step {
            Step::Ipvsadm { argv, rc } => {
                let got = r.run_ipvsadm(argv);
                if got != *rc {
                    return Err(format!("step {i}: ipvsadm {argv:?} exited {got}, the kernel's {rc}"));
                }
            }
            Step::Conn { client, cport, hold, vip, vport, answer, counts_before } => {
                let (counts, names, eligible) = r.table(*vport);
                // twos's counts follow its random picks: the kernel's are not ours.
                if let Some(want) = counts_before.as_ref().filter(|_| seq.sched != "twos") {
                    let got: BTreeMap<String, (u32, u32)> =
                        want.keys().map(|k| (k.clone(), counts.get(k).copied().unwrap_or((0, 0)))).collect();
                    if &got != want {
                        return Err(format!("step {i}: counts before the connection {got:?}, the kernel's {want:?}"));
                    }
                    snapshots += 1;
                }
                let port = cport.unwrap_or_else(|| {
                    next_port += 1;
                    next_port
                });
                let (c, v) = (v4(client), v4(vip));
                let syn = Frame::tcp(sa(c, port), sa(v, *vport), SYN);
                r.xdp.run(&syn.bytes()).map_err(|e| format!("{e:#}"))?;
                let picked = r.dest_of(c, port, v, *vport).and_then(|id| names.get(&id).cloned());
                let picked = picked.unwrap_or_else(|| "none".to_string());
                if seq.sched == "twos" {
                    // Random draws (the kernel's and bpf_get_prandom_u32's): the pick must be
                    // one twos may make, and "none" exactly when the kernel had none.
                    let ok = if answer == "none" { picked == "none" } else { eligible.contains(&picked) };
                    if !ok {
                        return Err(format!("step {i}: twos picked {picked}, eligible {eligible:?} (kernel: {answer})"));
                    }
                } else if &picked != answer {
                    return Err(format!("step {i}: {client}:{port} -> {vip}:{vport} went to {picked}, the kernel's to {answer}"));
                }
                conns += 1;
                if answer == "none" {
                    continue;
                }
                // Established (ActiveConn); a short connection ends closed (InActConn).
                let ack = Frame::tcp(sa(c, port), sa(v, *vport), ACK);
                r.xdp.run(&ack.bytes()).map_err(|e| format!("{e:#}"))?;
                let fin = Frame::tcp(sa(c, port), sa(v, *vport), FIN | ACK);
                if *hold {
                    held.push(fin);
                } else {
                    r.xdp.run(&fin.bytes()).map_err(|e| format!("{e:#}"))?;
                }
            }
            Step::CloseHeld { index } => {
                let fin = held.get(*index).ok_or(format!("step {i}: no held connection {index}"))?;
                r.xdp.run(&fin.bytes()).map_err(|e| format!("{e:#}"))?;
            }
        }
    }
    Ok((conns, snapshots))
}

#[test]
fn recorded_kernel_sequences_on_the_data_plane() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/sched");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("golden/sched")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let work = std::env::temp_dir().join(format!("xlb-sched-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let mut per_sched: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut skipped: BTreeMap<String, String> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut jobs: Vec<(String, Sequence)> = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read");
        let f: File = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for seq in f.sequences {
            if f.ipvs_modules_loaded.get(&format!("ip_vs_{}", seq.sched)) == Some(&false) {
                skipped.insert(format!("{} ({})", seq.sched, f.kernel), "the recording's kernel has no such module".into());
                continue;
            }
            if let Some(why) = &seq.known_mismatch {
                skipped.insert(format!("{}/{}", seq.sched, seq.name), why.clone());
                continue;
            }
            jobs.push((f.kernel.clone(), seq));
        }
    }
    // Each replay loads the object (the verifier's time dominates): one worker per CPU.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    let results: Vec<Replayed> = std::thread::scope(|sc| {
        let chunks: Vec<Vec<(String, Sequence)>> = (0..workers)
            .map(|w| jobs.iter().skip(w).step_by(workers).map(|(k, s)| (k.clone(), s.clone())).collect())
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(w, chunk)| {
                let dir = work.join(format!("w{w}"));
                sc.spawn(move || {
                    std::fs::create_dir_all(&dir).expect("worker dir");
                    chunk.into_iter().map(|(k, seq)| {
                        let r = replay(&seq, &dir);
                        (k, seq, r)
                    }).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("replay worker")).collect()
    });
    for (kernel, seq, r) in results {
        match r {
            Ok((c, s)) => {
                let e = per_sched.entry(seq.sched.clone()).or_default();
                e.0 += 1;
                e.1 += c;
                e.2 += s;
            }
            Err(e) => failures.push(format!("{} ({kernel}) {}: {e}", seq.name, seq.sched)),
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    for (s, (n, c, k)) in &per_sched {
        eprintln!("sched {s}: {n} sequences, {c} connections and {k} count snapshots as the kernel");
    }
    for (s, why) in &skipped {
        eprintln!("sched {s}: skipped ({why})");
    }
    assert!(failures.is_empty(), "{} sequences differ from the kernel:\n{}", failures.len(), failures.join("\n"));
    assert!(per_sched.len() >= 8, "replayed {per_sched:?}");
}
