//! External command checks: ldirectord's `checktype = external` (`checkcommand` run with the
//! virtual server, virtual port, real server and real port as its arguments) and keepalived's
//! MISC_CHECK (`misc_path`, split into words, run as is). The command is killed at the check's
//! timeout, as both daemons do.

use std::process::Stdio;
use std::time::Duration;

/// Runs `argv` within `timeout`: `Ok(None)` for up, `Ok(Some(weight))` for up with a weight
/// (`dynamic` only), or why it is down.
pub async fn run(argv: &[String], dynamic: bool, timeout: Duration) -> Result<Option<i32>, String> {
    let (program, args) = argv.split_first().ok_or("no command to run")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A command still running when the check gives up is killed with the future.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => s.map_err(|e| format!("{program}: {e}"))?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(format!("{program} still running after {timeout:?}: killed"));
        }
    };
    verdict(program, status.code(), dynamic)
}

/// What an exit code means: 0 up; with `dynamic` (keepalived's misc_dynamic) 2..=255 up with
/// weight `code - 2` too; anything else (a signal: no code) down.
pub fn verdict(program: &str, code: Option<i32>, dynamic: bool) -> Result<Option<i32>, String> {
    match code {
        Some(0) => Ok(None),
        Some(c @ 2..=255) if dynamic => Ok(Some(c - 2)),
        Some(c) => Err(format!("{program} exited with status {c}")),
        None => Err(format!("{program} was killed by a signal")),
    }
}

#[cfg(test)]
mod tests {
    use super::verdict;

    #[test]
    fn exit_codes() {
        assert_eq!(verdict("x", Some(0), false), Ok(None));
        assert!(verdict("x", Some(1), false).is_err());
        assert!(verdict("x", Some(2), false).is_err(), "without misc_dynamic any non-zero status is down");
        assert_eq!(verdict("x", Some(0), true), Ok(None));
        assert_eq!(verdict("x", Some(1), true), Err("x exited with status 1".into()));
        assert_eq!(verdict("x", Some(2), true), Ok(Some(0)));
        assert_eq!(verdict("x", Some(255), true), Ok(Some(253)));
        assert!(verdict("x", None, true).is_err());
    }
}
