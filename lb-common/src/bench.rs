//! The benchmark's programs (`cargo xtask bench`): the layouts and names shared by their object
//! (lb-ebpf's `lb-ebpf-bench` binary: `xlb_bench_gen`, `xlb_bench_sink`) and the benchmark that
//! loads it (tests/src/bench/e2e.rs). Not part of the data plane: lbd never loads that object.
//! The maps are private to each loaded object (not pinned).

/// Names of the programs and maps.
pub mod names {
    /// The end-to-end frame generator (run with BPF_PROG_TEST_RUN in live-frames mode).
    pub const GEN: &str = "xlb_bench_gen";
    /// The receiving side: counts what arrives, by kind, and drops it.
    pub const SINK: &str = "xlb_bench_sink";
    /// XDP_PASS and nothing else: lets redirected frames into a kernel director's stack (veth
    /// drops XDP-redirected frames when its peer has no XDP program).
    pub const PASS: &str = "xlb_bench_pass";
    /// [`GenCfg`](super::GenCfg) (array, index 0).
    pub const GEN_CFG: &str = "XLB_BENCH_GEN_CFG";
    /// Frames generated so far (per-CPU array of u64, index 0).
    pub const GEN_SEQ: &str = "XLB_BENCH_GEN_SEQ";
    /// [`SinkCfg`](super::SinkCfg) (array, index 0).
    pub const SINK_CFG: &str = "XLB_BENCH_SINK_CFG";
    /// [`SinkCounts`](super::SinkCounts) (per-CPU array, index 0).
    pub const SINK_COUNTS: &str = "XLB_BENCH_SINK_COUNTS";
}

/// Bytes of the template the generator writes: Ethernet + IPv4 (no options) + UDP.
pub const GEN_HDR_LEN: usize = 42;

/// Room for the template in [`GenCfg`] (the first [`GEN_HDR_LEN`] bytes are used).
pub const GEN_TMPL_LEN: usize = 48;

/// Source ports per source address when every frame is a new flow ([`GenCfg::new_flows`]).
pub const NEW_FLOW_PORTS: u32 = 1 << 14;

/// Generator configuration (index 0), written by the benchmark.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GenCfg {
    /// Interface to redirect every frame to (in the generator's namespace).
    pub ifindex: u32,
    /// Source ports used: `base_port .. base_port + nflows` (at least 1); not used with `new_flows`.
    pub nflows: u32,
    /// Host order; the template carries this port and the matching checksums.
    pub base_port: u16,
    /// 1: every frame is a flow of its own: frame `n` of the run (the per-CPU
    /// `GEN_SEQ`, which the benchmark zeroes before each run) is flow `f = first_flow + n`, with
    /// source port `base_port + f % NEW_FLOW_PORTS` and source address the template's
    /// `+ f / NEW_FLOW_PORTS`.
    pub new_flows: u16,
    pub first_flow: u32,
    pub tmpl: [u8; GEN_TMPL_LEN],
}

/// What the sink saw (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SinkCounts {
    /// IPv4 frames.
    pub ipv4: u64,
    /// UDP to `SinkCfg::addr` (DR: the VIP, unchanged).
    pub udp_to_addr: u64,
    /// IPIP (TUN).
    pub ipip: u64,
    /// UDP to port `SinkCfg::port` at another address (NAT / DNAT: rewritten destination).
    pub udp_to_port: u64,
    /// Anything else that is IPv4.
    pub other: u64,
}

/// What the sink sorts by (index 0), written by the benchmark.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SinkCfg {
    /// Network order, as in the packet.
    pub addr: u32,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}
