//! Replays the kernel recordings in `tests/golden/sched/*.json` (see the README there) against
//! the reference implementations and checks every pick, and every recorded ActiveConn/InActConn
//! snapshot against the modelled counters.

extern crate std;

use super::*;
use std::collections::BTreeMap;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

// ---- a minimal JSON reader (the crate has no dependencies) ----
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn get(&self, k: &str) -> Option<&J> {
        match self {
            J::Obj(v) => v.iter().find(|(n, _)| n == k).map(|(_, j)| j),
            _ => None,
        }
    }
    fn s(&self) -> &str {
        match self {
            J::Str(s) => s,
            _ => "",
        }
    }
    fn arr(&self) -> &[J] {
        match self {
            J::Arr(v) => v,
            _ => &[],
        }
    }
    fn num(&self) -> Option<i64> {
        match self {
            J::Num(n) => Some(*n as i64),
            _ => None,
        }
    }
    fn truthy(&self) -> bool {
        matches!(self, J::Bool(true))
    }
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && (self.b[self.i] as char).is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn val(&mut self) -> J {
        self.ws();
        match self.b[self.i] {
            b'{' => {
                self.i += 1;
                let mut v = Vec::new();
                loop {
                    self.ws();
                    if self.b[self.i] == b'}' {
                        self.i += 1;
                        return J::Obj(v);
                    }
                    let k = match self.val() {
                        J::Str(s) => s,
                        _ => panic!("key"),
                    };
                    self.ws();
                    assert_eq!(self.b[self.i], b':');
                    self.i += 1;
                    let x = self.val();
                    v.push((k, x));
                    self.ws();
                    if self.b[self.i] == b',' {
                        self.i += 1;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                loop {
                    self.ws();
                    if self.b[self.i] == b']' {
                        self.i += 1;
                        return J::Arr(v);
                    }
                    v.push(self.val());
                    self.ws();
                    if self.b[self.i] == b',' {
                        self.i += 1;
                    }
                }
            }
            b'"' => {
                self.i += 1;
                let mut s = String::new();
                loop {
                    let c = self.b[self.i];
                    self.i += 1;
                    match c {
                        b'"' => return J::Str(s),
                        b'\\' => {
                            let e = self.b[self.i];
                            self.i += 1;
                            match e {
                                b'n' => s.push('\n'),
                                b't' => s.push('\t'),
                                b'r' => s.push('\r'),
                                b'u' => {
                                    let h = core::str::from_utf8(&self.b[self.i..self.i + 4]).unwrap();
                                    s.push(char::from_u32(u32::from_str_radix(h, 16).unwrap()).unwrap_or('?'));
                                    self.i += 4;
                                }
                                x => s.push(x as char),
                            }
                        }
                        _ => {
                            // Re-assemble UTF-8 sequences byte by byte.
                            let start = self.i - 1;
                            let mut end = self.i;
                            while end < self.b.len() && (self.b[end] & 0xc0) == 0x80 {
                                end += 1;
                            }
                            s.push_str(core::str::from_utf8(&self.b[start..end]).unwrap_or("?"));
                            self.i = end;
                        }
                    }
                }
            }
            b't' => {
                self.i += 4;
                J::Bool(true)
            }
            b'f' => {
                self.i += 5;
                J::Bool(false)
            }
            b'n' => {
                self.i += 4;
                J::Null
            }
            _ => {
                let st = self.i;
                while self.i < self.b.len() && b"+-0123456789.eE".contains(&self.b[self.i]) {
                    self.i += 1;
                }
                J::Num(core::str::from_utf8(&self.b[st..self.i]).unwrap().parse().unwrap())
            }
        }
    }
}

fn parse(text: &str) -> J {
    P { b: text.as_bytes(), i: 0 }.val()
}

// ---- the model of one service ----
fn ip_host(s: &str) -> u32 {
    let o: Vec<u32> = s.split('.').map(|x| x.parse().unwrap()).collect();
    (o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]
}

fn rs_id(addr: &str) -> u32 {
    // rs1..rs3 = 10.0.2.11..13 -> ids 1..3
    ip_host(addr) - ip_host("10.0.2.10")
}

#[derive(Default, Clone, Copy)]
struct Thr {
    /// -x (the -y lower threshold only matters when connections expire, which the recorded
    /// sequences are too short for).
    u: u32,
}

struct Model {
    sched: String,
    flags: String,
    list: Vec<DestState>,
    thr: BTreeMap<u32, Thr>,
    trash: BTreeMap<u32, (DestState, Thr)>,
    rr: RrReference,
    wrr: WrrReference,
    lblc: Vec<LblcEntry>,
    lblcr: Vec<LblcrEntry>,
    now: u64,
    held: Vec<u32>,
}

impl Model {
    fn new(sched: &str, flags: &str) -> Self {
        Model {
            sched: sched.to_string(),
            flags: flags.to_string(),
            list: Vec::new(),
            thr: BTreeMap::new(),
            trash: BTreeMap::new(),
            rr: RrReference::default(),
            wrr: WrrReference::new(&[]),
            lblc: vec![LblcEntry::default(); 16],
            lblcr: vec![LblcrEntry::default(); 16],
            now: 0,
            held: Vec::new(),
        }
    }

    fn views(&self) -> Vec<DestView> {
        self.list.iter().map(|d| d.view()).collect()
    }

    fn dest_mut(&mut self, id: u32) -> Option<&mut DestState> {
        if let Some(d) = self.list.iter_mut().find(|d| d.id == id) {
            return Some(d);
        }
        self.trash.get_mut(&id).map(|(d, _)| d)
    }

    fn ipvsadm(&mut self, argv: &[String]) {
        let opt = |k: &str| argv.iter().position(|a| a == k).map(|i| argv[i + 1].clone());
        let cmd = argv[0].as_str();
        let rs = opt("-r");
        let id = rs.as_deref().map(|r| rs_id(r.split(':').next().unwrap()));
        let port: u16 = rs.as_deref().and_then(|r| r.split(':').nth(1)).map_or(0, |p| p.parse().unwrap());
        let w: i32 = opt("-w").map_or(1, |w| w.parse().unwrap());
        let thr = Thr { u: opt("-x").map_or(0, |x| x.parse().unwrap()) };
        match cmd {
            "-a" => {
                let id = id.unwrap();
                let (mut d, old) = match self.trash.remove(&id) {
                    Some((d, t)) => (d, t),
                    None => (DestState::new(id, w), Thr::default()),
                };
                d.weight = w;
                d.last_weight = w;
                d.available = true;
                d.addr_fold = ip_host(rs.as_deref().unwrap().split(':').next().unwrap());
                d.port = port;
                if thr.u == 0 || thr.u > old.u {
                    d.overloaded = false;
                }
                self.thr.insert(id, thr);
                self.list.insert(0, d);
                self.changed();
            }
            "-e" => {
                let id = id.unwrap();
                let old = self.thr.get(&id).copied().unwrap_or_default();
                let d = self.list.iter_mut().find(|d| d.id == id).unwrap();
                d.weight = w;
                if w != 0 {
                    d.last_weight = w;
                }
                if thr.u == 0 || thr.u > old.u {
                    d.overloaded = false;
                }
                self.thr.insert(id, thr);
                self.changed();
            }
            "-d" => {
                let id = id.unwrap();
                let old = self.views();
                let pos = self.list.iter().position(|d| d.id == id).unwrap();
                let mut d = self.list.remove(pos);
                d.available = false;
                let t = self.thr.remove(&id).unwrap_or_default();
                self.trash.insert(id, (d, t));
                self.rr.on_delete(&old, id);
                self.changed();
            }
            _ => {}
        }
    }

    fn changed(&mut self) {
        let v = self.views();
        self.wrr.on_change(&v);
    }

    fn pick(&mut self, client: u32, cport: Option<u16>, vip: u32) -> Option<Option<u32>> {
        self.now += 1;
        let v = self.views();
        let list = self.list.clone();
        let usable = |id: u32| list.iter().any(|d| d.id == id && d.weight > 0 && !d.overloaded && d.available);
        let has = |f: &str| self.flags.split(',').any(|x| x == f);
        Some(match self.sched.as_str() {
            "rr" => self.rr.pick(&v),
            "wrr" => self.wrr.pick(&v),
            "lc" => least_conn_pick(LcKind::Lc, &list),
            "wlc" => least_conn_pick(LcKind::Wlc, &list),
            "sed" => least_conn_pick(LcKind::Sed, &list),
            "nq" => least_conn_pick(LcKind::Nq, &list),
            "fo" => fo_pick(&list),
            "ovf" => ovf_pick(&list),
            "dh" => {
                let mut t = [NO_DEST; HASH_TAB_SIZE];
                build_dh_table(&v, &mut t);
                dh_pick(&t, vip, usable)
            }
            "sh" => {
                let port = if has("sh-port") { cport? } else { 0 };
                let mut t = [NO_DEST; HASH_TAB_SIZE];
                build_sh_table(&v, &mut t);
                sh_pick(&t, client, port, has("sh-fallback"), usable)
            }
            "mh" => {
                let port = if has("mh-port") { cport? } else { 0 };
                let mut t = [NO_DEST; MH_TAB_SIZE];
                let mut setup = [MhSetup::default(); 8];
                assert!(build_mh_table(&list, &mut t, &mut setup));
                mh_pick(&t, client, port, has("mh-fallback"), usable)
            }
            "lblc" => LblcReference { entries: &mut self.lblc }.pick(&list, [vip, 0, 0, 0], self.now),
            "lblcr" => {
                let trash = self.trash.clone();
                let all = |id: u32| list.iter().find(|d| d.id == id).copied().or(trash.get(&id).map(|t| t.0));
                LblcrReference { entries: &mut self.lblcr, expiration: u64::MAX / 2 }
                    .pick(&list, [vip, 0, 0, 0], self.now, all)
            }
            _ => return None,
        })
    }

    /// Binds a new connection to `id` (ip_vs_bind_dest): counters and the OVERLOAD flag.
    fn bind(&mut self, id: u32, hold: bool) {
        let u = self.thr.get(&id).map_or(0, |t| t.u);
        let d = self.dest_mut(id).unwrap();
        if hold {
            d.active += 1;
        } else {
            // The quick connection is over (TIME_WAIT) before the next one starts.
            d.inactive += 1;
        }
        if u != 0 && d.active + d.inactive >= u {
            d.overloaded = true;
        }
        if hold {
            self.held.push(id);
        }
    }

    fn close_held(&mut self, i: usize) {
        let id = self.held[i];
        if let Some(d) = self.dest_mut(id) {
            d.active -= 1;
            d.inactive += 1;
        }
    }
}

fn name(id: u32) -> String {
    format!("rs{id}")
}

#[test]
fn replay_kernel_recordings() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/sched");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/golden/sched")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let (mut checked, mut skipped_seqs) = (0usize, Vec::new());
    let mut failures = Vec::new();
    for f in &files {
        let doc = parse(&std::fs::read_to_string(f).unwrap());
        let kernel = doc.get("kernel").map(|k| k.s().to_string()).unwrap_or_default();
        for s in doc.get("sequences").unwrap().arr() {
            let sname = s.get("name").unwrap().s().to_string();
            if let Some(why) = s.get("known_mismatch") {
                skipped_seqs.push(format!("{sname}: {}", why.s()));
                continue;
            }
            let mut m: Option<Model> = None;
            let mut failed = None;
            for (k, st) in s.get("steps").unwrap().arr().iter().enumerate() {
                let op = st.get("op").unwrap().s();
                match op {
                    "ipvsadm" => {
                        let argv: Vec<String> = st.get("argv").unwrap().arr().iter().map(|a| a.s().to_string()).collect();
                        if st.get("rc").and_then(|r| r.num()) != Some(0) {
                            continue; // refused by the kernel (e.g. twos on 6.1): no state change
                        }
                        if argv[0] == "-A" {
                            let opt = |key: &str| argv.iter().position(|a| a == key).map(|i| argv[i + 1].clone());
                            m = Some(Model::new(&opt("-s").unwrap(), &opt("-b").unwrap_or_default()));
                        } else if let Some(m) = m.as_mut() {
                            m.ipvsadm(&argv);
                        }
                    }
                    "close_held" => {
                        if let Some(m) = m.as_mut() {
                            m.close_held(st.get("index").unwrap().num().unwrap() as usize);
                        }
                    }
                    "conn" => {
                        let Some(m) = m.as_mut() else { continue };
                        if let Some(J::Obj(counts)) = st.get("counts_before") {
                            for (rs, c) in counts {
                                let id: u32 = rs[2..].parse().unwrap();
                                let got = m.list.iter().find(|d| d.id == id).map(|d| (d.active as i64, d.inactive as i64));
                                let want = (c.arr()[0].num().unwrap(), c.arr()[1].num().unwrap());
                                if got != Some(want) {
                                    failed.get_or_insert(format!("step {k}: {rs} counts model {got:?} kernel {want:?}"));
                                }
                            }
                        }
                        let client = ip_host(st.get("client").unwrap().s());
                        let cport = st.get("cport").and_then(|p| p.num()).map(|p| p as u16);
                        let vip = ip_host(st.get("vip").map_or("10.0.0.1", |v| v.s()));
                        let hold = st.get("hold").is_some_and(|h| h.truthy());
                        let answer = st.get("answer").unwrap().s().to_string();
                        if m.sched == "twos" {
                            // Random: only check that the kernel's pick is one twos may make.
                            let ok = match answer.as_str() {
                                "none" => !m.list.iter().any(|d| d.weight > 0 && !d.overloaded),
                                a => m.list.iter().any(|d| name(d.id) == a && d.weight > 0 && !d.overloaded),
                            };
                            if !ok {
                                failed.get_or_insert(format!("step {k}: twos picked ineligible {answer}"));
                            }
                            if answer != "none" {
                                m.bind(answer[2..].parse().unwrap(), hold);
                            }
                            continue;
                        }
                        let Some(got) = m.pick(client, cport, vip) else { continue };
                        let got_name = got.map_or("none".to_string(), name);
                        if got_name != answer {
                            failed.get_or_insert(format!("step {k}: picked {got_name}, kernel {answer}"));
                        }
                        checked += 1;
                        // Bind what the kernel really picked so later steps stay comparable.
                        if answer != "none" {
                            m.bind(answer[2..].parse().unwrap(), hold);
                        }
                    }
                    _ => {}
                }
            }
            if let Some(e) = failed {
                failures.push(format!("{} [{kernel}] {sname}: {e}", f.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    std::println!("checked {checked} picks; skipped (known_mismatch): {skipped_seqs:?}");
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
    assert!(checked > 300, "only {checked} picks checked");
}
