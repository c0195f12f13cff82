//! The seeds' ipvsadm command lines (/work/shared/seeds/*.txt), each seed's lines in its order
//! and unchanged (shell variables substituted with the seed's own values), run on the built
//! lbadm binary invoked as `ipvsadm` against a real pinned table; every output is compared
//! byte for byte with the real ipvsadm's (tests/golden/ipvsadm/seeds.json, recorded from the
//! same lines). One test per seed file.
use std::collections::HashMap;
use std::path::PathBuf;

use xlb_tests::golden::{self, Case, Lbadm};

/// Where the seeds live (`XLB_SEEDS_DIR` overrides).
fn seeds_dir() -> PathBuf {
    std::env::var_os("XLB_SEEDS_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/work/shared/seeds"))
}

/// The seed text with `$NAME` / `${NAME}` replaced by the values the seed assigns (`NAME=value`).
fn substituted_lines(text: &str) -> Vec<String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some((k, v)) = t.split_once('=')
            && !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && !v.is_empty()
            && !v.contains(char::is_whitespace)
        {
            vars.entry(k.to_string()).or_insert_with(|| v.trim_matches(['"', '\'']).to_string());
        }
    }
    let mut names: Vec<&String> = vars.keys().collect();
    // Longest first, so $RIP1 is not read as $RIP followed by 1.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    text.lines()
        .map(|l| {
            let mut l = l.to_string();
            for n in &names {
                l = l.replace(&format!("${{{n}}}"), &vars[*n]).replace(&format!("${n}"), &vars[*n]);
            }
            l
        })
        .collect()
}

/// Whether some seed line runs `ipvsadm ARGV`: a word ending in `ipvsadm` (after a prompt, a
/// path or `#`) followed by exactly these words (then the end of the line or a `#` comment).
fn seed_has(lines: &[String], argv: &[String]) -> bool {
    lines.iter().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        (0..words.len()).any(|i| {
            if !words[i].ends_with("ipvsadm") {
                return false;
            }
            let rest = &words[i + 1..];
            rest.len() >= argv.len()
                && rest.iter().zip(argv).all(|(a, b)| a == b)
                && rest.get(argv.len()).is_none_or(|w| w.starts_with('#'))
        })
    })
}

fn run_seed(number: &str) {
    let cases: Vec<Case> = golden::load("seeds")
        .expect("seeds.json")
        .into_iter()
        .filter(|c| c.name.starts_with(&format!("seed-{number}-")))
        .collect();
    assert!(!cases.is_empty(), "seeds.json has no case for seed {number}");
    let seed_file = std::fs::read_dir(seeds_dir())
        .ok()
        .and_then(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{number}_")))
        }));
    match &seed_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).expect("seed text");
            let lines = substituted_lines(&text);
            let (mut from_seed, mut implied) = (0, 0);
            for c in &cases {
                for s in &c.steps {
                    if seed_has(&lines, &s.argv) {
                        from_seed += 1;
                        continue;
                    }
                    // The listing a seed's lines imply (what its text shows of the table).
                    implied += 1;
                    assert!(
                        s.argv == ["-Ln"] || s.argv == ["-Sn"],
                        "{}: `ipvsadm {}` is not a line of {}",
                        c.name,
                        s.argv.join(" "),
                        path.display()
                    );
                }
            }
            eprintln!("seed {number}: {from_seed} invocations are lines of the seed, {implied} the listings they imply");
        }
        None => eprintln!("seed {number}: {} not found; replaying the recording only", seeds_dir().display()),
    }
    let mut lb = Lbadm::new(&format!("seed-{number}")).expect("lbadm set-up");
    let rep = golden::replay(&mut lb, "seeds", &cases).expect("replay");
    assert_eq!(rep.skipped.len(), 0);
    golden::check(&rep, &format!("seed {number} ({})", cases.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")));
}

#[test]
fn seed_000_c1a336f3394f8ccd() {
    run_seed("000");
}

#[test]
fn seed_001_69799a3f639c6e36() {
    run_seed("001");
}

#[test]
fn seed_002_ecc261d9db74c2d3() {
    run_seed("002");
}

#[test]
fn seed_003_3d9a8323c1864048() {
    run_seed("003");
}

#[test]
fn seed_004_ee8fa582ec8603fb() {
    run_seed("004");
}

#[test]
fn every_seed_file_has_a_test() {
    let Ok(rd) = std::fs::read_dir(seeds_dir()) else { return };
    let mut numbers: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().split('_').next().map(str::to_string))
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["000", "001", "002", "003", "004"], "a new seed needs its test here");
}
