//! The recordings of the real ipvsadm 1.31 (`tests/golden/ipvsadm/<stem>.json`, made by
//! `tests/oracle/`): their schema and their loading, for every replay (lb-user's in memory,
//! xlb-tests' on the binary and its seeds).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// One recorded invocation and what the real ipvsadm answered.
#[derive(Clone, Debug, Deserialize)]
pub struct Step {
    /// Without argv[0].
    pub argv: Vec<String>,
    /// `None`: stdin was /dev/null.
    pub stdin: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

impl Step {
    /// Whether a run answered byte for byte what ipvsadm answered.
    pub fn answered_by(&self, stdout: &[u8], stderr: &[u8], status: i32) -> bool {
        (stdout, stderr, status) == (self.stdout.as_bytes(), self.stderr.as_bytes(), self.status)
    }
}

/// A sequence of invocations recorded from an empty table.
#[derive(Clone, Debug, Deserialize)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub about: String,
    pub steps: Vec<Step>,
}

/// One recording file.
#[derive(Deserialize)]
struct File {
    #[serde(default)]
    cases: Vec<Case>,
}

/// `tests/golden/ipvsadm`.
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/ipvsadm")
}

/// The cases of `tests/golden/ipvsadm/<stem>.json`.
pub fn load(stem: &str) -> anyhow::Result<Vec<Case>> {
    load_from(&golden_dir(), stem)
}

/// The cases of `<dir>/<stem>.json`.
pub fn load_from(dir: &Path, stem: &str) -> anyhow::Result<Vec<Case>> {
    let path = dir.join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let f: File = serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    Ok(f.cases)
}

/// Stems of every recording file in `tests/golden/ipvsadm`, sorted.
pub fn stems() -> anyhow::Result<Vec<String>> {
    stems_in(&golden_dir())
}

/// Stems of every recording file (`*.json`) in `dir`, sorted.
pub fn stems_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    v.sort();
    Ok(v)
}
