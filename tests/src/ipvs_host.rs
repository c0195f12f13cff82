//! Whether this kernel has IPVS, the one check the tests, the comparison, the benchmark and
//! xtask share (xtask includes this file by path: it does not depend on xlb-tests, so only std
//! is used here).
use std::process::{Command, Stdio};

/// Debian's ipvsadm, the tool that drives kernel IPVS (`cargo xtask` installs it on the host; the
/// matrix's guests see the host's files).
pub const IPVSADM: &str = "/usr/sbin/ipvsadm";

/// Whether this kernel has IPVS: `/proc/net/ip_vs` exists, after `modprobe ip_vs` if need be.
pub fn kernel_has_ipvs() -> bool {
    let proc_file = std::path::Path::new("/proc/net/ip_vs");
    if !proc_file.exists() {
        let _ = Command::new("modprobe").args(["-q", "ip_vs"]).stderr(Stdio::null()).status();
    }
    proc_file.exists()
}

/// Why kernel IPVS cannot be driven here (no IPVS in this kernel, or no ipvsadm), or None when it
/// can.
pub fn ipvs_unavailable() -> Option<String> {
    if !kernel_has_ipvs() {
        return Some("this kernel has no IPVS (no /proc/net/ip_vs, and `modprobe ip_vs` did not give one)".to_string());
    }
    match Command::new(IPVSADM).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        _ => Some(format!("this kernel has IPVS, but {IPVSADM} cannot run (Debian package ipvsadm)")),
    }
}
