//! Test support for xlb: frames, private pin directories, the real XDP object under
//! BPF_PROG_TEST_RUN, and network-namespace labs. Tests need root (CAP_BPF, CAP_NET_ADMIN).

pub mod bench;
pub mod compare;
pub mod director;
pub mod fixture;
pub mod frames;
pub mod frames_tun;
pub mod fuzz;
pub mod golden;
pub mod ipvs_host;
pub mod lab;
pub mod lab_checks;
pub mod lab_health;
pub mod netns;
pub mod pair;
pub mod pins;
pub mod real_server;
pub mod table;
pub mod xdp;

/// Path of a binary built from this workspace (lbadm, lbd), next to the running test binary's
/// target directory.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}
