//! Test counts over every run of `cargo xtask test` (host suite, forced fallbacks, each guest),
//! for the one closing line CI reads: `total: N passed, N failed, N skipped`.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::Context as _;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Tally {
    /// Adds the counts of a libtest closing line (`test result: ok. 3 passed; 1 failed; 2
    /// ignored; ...`); any other line changes nothing.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.skipped += n,
                _ => {}
            }
        }
    }

    pub fn add(&mut self, o: Tally) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }
}

/// Runs `cmd` with its standard output passed through line by line, counting libtest's closing
/// lines into `tally`.
pub fn run_counted(cmd: &mut Command, tally: &mut Tally) -> anyhow::Result<ExitStatus> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("cannot run {cmd:?}"))?;
    if let Some(out) = child.stdout.take() {
        let mut stdout = std::io::stdout();
        for line in BufReader::new(out).lines() {
            let line = line.context("reading test output")?;
            tally.add_line(&line);
            let _ = writeln!(stdout, "{line}");
        }
    }
    Ok(child.wait()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_lines_are_counted() {
        let mut t = Tally::default();
        t.add_line("test result: ok. 17 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1s");
        t.add_line("test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add_line("running 4 tests");
        assert_eq!(t, Tally { passed: 18, failed: 3, skipped: 1 });
    }
}
