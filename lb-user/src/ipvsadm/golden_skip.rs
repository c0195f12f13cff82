//! The recorded invocations of the real ipvsadm 1.31 (`tests/golden/ipvsadm`, and the malformed
//! corpus made from them) that lbadm answers differently on purpose, each with its reason: the
//! one skip list of every replay (lb-user's in memory, xlb-tests' on the binary and its
//! malformed corpus). A skipped step is still run (the table keeps its course); only the
//! comparison is left out.
//!
//! Deliberate differences:
//! - twos exists (as in kernels from 6.2 on), the 6.1 recording's kernel has none.
//!
//! IPv6 services and real servers, mixed families and `--tun-type gue|gre` are compared like
//! everything else (issue 15 lifted issue 12's refusals).

const TWOS: &str = "twos: the 6.1 recording's kernel has no ip_vs_twos (compared on 6.12 instead)";

/// The skips of one recorded case, fed its steps in order ([`CaseSkips::step`]).
pub struct CaseSkips {
    stem: String,
    case: String,
}

impl CaseSkips {
    pub fn new(stem: &str, case: &str) -> CaseSkips {
        CaseSkips { stem: stem.to_string(), case: case.to_string() }
    }

    /// Why the recorded step `ipvsadm ARGV` (without argv[0]) with `stdin`, which answered
    /// `status`/`stdout`, is not compared; `None`: compare it.
    pub fn step(&mut self, _argv: &[String], _stdin: Option<&str>, _status: i32, _stdout: &str) -> Option<&'static str> {
        if self.stem == "commands" && self.case == "sched-twos" {
            // xlb has twos, as kernels from 6.2 on do; twos-6.12.json is this case on 6.12.
            return Some(TWOS);
        }
        None
    }
}
