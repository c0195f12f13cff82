//! The recorded invocations of the real ipvsadm 1.31 (`tests/golden/ipvsadm`, and the malformed
//! corpus made from them) that lbadm answers differently on purpose, each with its reason: the
//! one skip list of every replay (lb-user's in memory, xlb-tests' on the binary and its
//! malformed corpus). A skipped step is still run (the table keeps its course); only the
//! comparison is left out.
//!
//! Deliberate differences:
//! - no connection sync daemon (`--start-daemon` fails by design);
//! - twos exists (as in kernels from 6.2 on), the 6.1 recording's kernel has none.
//!
//! IPv6 services and real servers, mixed families and `--tun-type gue|gre` are compared like
//! everything else (issue 15 lifted issue 12's refusals).

const NO_SYNC: &str = "no connection sync daemon in xlb (--start-daemon fails by design)";
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
    pub fn step(&mut self, argv: &[String], _stdin: Option<&str>, status: i32, stdout: &str) -> Option<&'static str> {
        let has = |w: &str| argv.iter().any(|a| a == w);
        if self.stem == "commands" && self.case == "sched-twos" {
            // xlb has twos, as kernels from 6.2 on do; twos-6.12.json is this case on 6.12.
            return Some(TWOS);
        }
        if self.stem == "commands" && self.case == "sync-daemon" {
            // A daemon that starts, stops, or shows up in `-L --daemon`; argument errors still
            // compare, and so do the listings and stops when no daemon runs.
            let arg_error = status == 2;
            if has("--start-daemon") && !arg_error {
                return Some(NO_SYNC);
            }
            if has("--stop-daemon") && status == 0 {
                return Some(NO_SYNC);
            }
            if has("--daemon") && !stdout.is_empty() {
                return Some(NO_SYNC);
            }
        }
        None
    }
}
