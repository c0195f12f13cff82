//! xlb userspace: the table model, the map store, the ipvsadm-compatible front end (`lbadm`)
//! and the daemon's pieces (`lbd`).

pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod estimator;
pub mod features;
pub mod fwmark;
pub mod health;
pub mod ipvsadm;
pub mod journal;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod netdev;
pub mod pulse;
pub mod sched_tables;
pub mod store;
pub mod sync;
pub mod sysctl;

/// The XDP object built by build.rs (lb-ebpf for bpfel).
pub fn ebpf_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"))
}

/// The benchmark's object built by build.rs (lb-ebpf's `lb-ebpf-bench`: the frame generator and
/// the sink, `lb_common::bench`). Only the benchmark uses it; lbd and lbadm do not carry it.
pub fn bench_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf-bench"))
}
