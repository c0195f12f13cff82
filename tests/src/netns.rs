//! Network namespaces and the processes in them, removed when dropped (also when a test fails).
use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short prefix unique to this process and call, for namespace and file names.
pub fn unique_prefix(tag: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("x{tag}{}{n}", std::process::id() % 100_000)
}

/// Runs a command, failing with its output when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

pub fn sh(script: &str) -> anyhow::Result<String> {
    let out = run(Command::new("sh").arg("-ec").arg(script))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> anyhow::Result<Netns> {
        let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        // No IPv6 chatter (router solicitations, MLD) in the captures and counters.
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        Ok(ns)
    }

    /// `ip -n <ns> args...`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run(Command::new("ip").arg("-n").arg(&self.name).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command run inside the namespace (`ip netns exec`).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A command run with only the network namespace switched (`nsenter --net`): /sys and
    /// bpffs stay the host's, which programs touching pinned BPF objects need.
    pub fn cmd_net_only(&self, program: impl Into<PathBuf>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name)).arg(program.into());
        c
    }

    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = run(self.cmd(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Starts a long-running process in the namespace; it is killed when the handle drops.
    pub fn spawn(&self, program: &str, args: &[&str]) -> anyhow::Result<Proc> {
        let child = self
            .cmd(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {program} in {}", self.name))?;
        Ok(Proc { child: Some(child) })
    }

    /// Waits until something listens on `proto` (`tcp`/`udp`) port `port` in the namespace.
    pub fn wait_listening(&self, proto: &str, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let flag = if proto == "udp" { "-lun" } else { "-ltn" };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(out) = self.exec("ss", &[flag])
                && out.lines().any(|l| l.split_whitespace().nth(3).is_some_and(|a| a.ends_with(&format!(":{port}"))))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("nothing listens on {proto}/{port} in {} after {timeout:?}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside would keep the namespace alive: kill them first.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

impl Netns {
    /// `lbd --pin-dir PINS ARGS...` in this namespace (network only: the host's bpffs), in the
    /// background, its stdout and stderr appended to `log`.
    pub fn spawn_lbd(&self, pins: &std::path::Path, args: &[&str], log: &std::path::Path) -> anyhow::Result<Proc> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = self
            .cmd_net_only(crate::workspace_bin("lbd"))
            .arg("--pin-dir")
            .arg(pins)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start lbd {args:?} in {}: {e}", self.name))?;
        Ok(Proc::from_child(child))
    }
}

/// A background process, killed on drop.
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    pub fn from_child(child: Child) -> Proc {
        Proc { child: Some(child) }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Asks the process to stop (SIGTERM) and waits for it, so it can flush what it wrote.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
