//! The real XDP object, loaded into the kernel (not attached) with its maps in a private pin
//! directory, run on crafted frames through BPF_PROG_TEST_RUN.
use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::{names, DestNeigh, TailProgram, NEIGH_F_RESOLVED};
use lb_user::store::{self, CreateOptions};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub fn verdict_name(v: u32) -> &'static str {
    ["XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"].get(v as usize).copied().unwrap_or("?")
}

pub struct XdpUnderTest {
    ebpf: Ebpf,
    program: &'static str,
}

/// What one run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    pub verdict: u32,
    pub frame: Vec<u8>,
    /// Kernel-measured duration of the run.
    pub duration_ns: u64,
}

impl XdpUnderTest {
    /// Loads `program` (`xlb_xdp`, `xlb_pass`) with the maps of `pin_dir`.
    pub fn load(pin_dir: &Path, program: &'static str) -> anyhow::Result<XdpUnderTest> {
        Self::load_with(pin_dir, CreateOptions::default(), program)
    }

    /// [`XdpUnderTest::load`] on a table created with `opts` (its connection table's size).
    pub fn load_with(pin_dir: &Path, opts: CreateOptions, program: &'static str) -> anyhow::Result<XdpUnderTest> {
        let tails: &[TailProgram] = if program == "xlb_xdp" { &TailProgram::ALL } else { &[] };
        Self::load_parts(pin_dir, opts, program, tails)
    }

    /// `xlb_xdp` with only the tail programs `tails` installed (a frame needing another one is
    /// dropped, or passed for IPv6, so a missing one fails the test): verifying all fifteen
    /// takes about 15 s per load on 6.1 under TCG, and tests of one path need three or four.
    /// Every program is still verified by `verifier_budget` and by every attach.
    pub fn load_tails(pin_dir: &Path, tails: &[TailProgram]) -> anyhow::Result<XdpUnderTest> {
        Self::load_parts(pin_dir, CreateOptions::default(), "xlb_xdp", tails)
    }

    fn load_parts(pin_dir: &Path, opts: CreateOptions, program: &'static str, tails: &[TailProgram]) -> anyhow::Result<XdpUnderTest> {
        let mut ebpf = store::load_object(pin_dir, opts)?;
        as_lbd_attach_would(&mut ebpf, pin_dir)?;
        lb_user::dataplane::install_tail_programs(&mut ebpf, tails)?;
        let prog: &mut Xdp = ebpf.program_mut(program).ok_or_else(|| anyhow!("no program {program}"))?.try_into()?;
        prog.load().with_context(|| format!("verifier refused {program}"))?;
        Ok(XdpUnderTest { ebpf, program })
    }

    /// The decap program (`xlb_decap`), its maps filled as `lbd attach --program decap` fills
    /// them from an interface: tunnels to `addrs` are stripped, UDP to `gue_ports` is GUE.
    pub fn load_decap(pin_dir: &Path, addrs: &[std::net::IpAddr], gue_ports: &[u16]) -> anyhow::Result<XdpUnderTest> {
        let mut ebpf = store::load_object(pin_dir, CreateOptions::default())?;
        lb_user::dataplane::fill_decap_maps(&mut ebpf, addrs, gue_ports)?;
        let program = "xlb_decap";
        let prog: &mut Xdp = ebpf.program_mut(program).ok_or_else(|| anyhow!("no program {program}"))?.try_into()?;
        prog.load().with_context(|| format!("verifier refused {program}"))?;
        Ok(XdpUnderTest { ebpf, program })
    }

    /// Runs the program once on `frame` as if received on `ingress_ifindex` (0: loopback).
    pub fn run_on(&mut self, frame: &[u8], ingress_ifindex: u32) -> anyhow::Result<RunResult> {
        self.run_repeat(frame, ingress_ifindex, 1)
    }

    pub fn run(&mut self, frame: &[u8]) -> anyhow::Result<RunResult> {
        self.run_on(frame, 0)
    }

    pub fn run_repeat(&mut self, frame: &[u8], ingress_ifindex: u32, repeat: u32) -> anyhow::Result<RunResult> {
        let prog: &mut Xdp =
            self.ebpf.program_mut(self.program).ok_or_else(|| anyhow!("no program"))?.try_into()?;
        let mut out = vec![0u8; frame.len() + 512];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
        let ctx: [u32; 6] = [0, frame.len() as u32, 0, ingress_ifindex, 0, 0];
        let ctx_bytes: Vec<u8> = ctx.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        if ingress_ifindex != 0 {
            opts.ctx_in = Some(&ctx_bytes);
        }
        opts.repeat = repeat;
        let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN")?;
        out.truncate(r.data_size_out as usize);
        Ok(RunResult { verdict: r.return_value, frame: out, duration_ns: r.duration.as_nanos() as u64 })
    }
}

/// What `lbd attach` does before attaching, for a harness that only test-runs: the kernel's
/// features probed (`XLB_FEATURES_OFF` honoured) and recorded in the table, and the calling
/// thread's network namespace's interfaces recorded as attached natively (the director the
/// fixtures model has xlb on both its interfaces).
pub fn as_lbd_attach_would(ebpf: &mut Ebpf, pin_dir: &Path) -> anyhow::Result<()> {
    let probed = lb_user::features::probe(ebpf)?;
    lb_user::features::apply(&mut store::Store::open_at(pin_dir, Default::default())?, probed)?;
    lb_user::dataplane::record_all_attached_for_test(pin_dir, lb_common::IFACE_XDP_NATIVE)
}

/// The table's slow-path tag (`Config::slow_path_tag`).
pub fn slow_path_tag(pin_dir: &Path) -> anyhow::Result<u32> {
    Ok(store::Store::open_at(pin_dir, Default::default())?.config()?.slow_path_tag)
}

/// Fills the data plane's next-hop cache for `dest_id` so a run needs no FIB (BPF_PROG_TEST_RUN
/// has no real interface behind it). `ifindex` must be the run's ingress ifindex for XDP_TX.
pub fn set_next_hop(pin_dir: &Path, dest_id: u32, dmac: [u8; 6], smac: [u8; 6], ifindex: u32) -> anyhow::Result<()> {
    set_route(pin_dir, dest_id, DestNeigh { dmac, smac, ifindex, mtu: 1500, flags: NEIGH_F_RESOLVED, ..Default::default() })
}

/// Presets the next-hop cache of `dest_id` (never expiring) with any route answer.
pub fn set_route(pin_dir: &Path, dest_id: u32, n: DestNeigh) -> anyhow::Result<()> {
    let data = MapData::from_pin(pin_dir.join(names::DEST_NEIGH))?;
    let mut a: Array<MapData, DestNeigh> = Array::try_from(aya::maps::Map::Array(data))?;
    a.set(dest_id, DestNeigh { expires: u64::MAX, ..n }, 0)?;
    Ok(())
}

/// The ifindex BPF_PROG_TEST_RUN reports as ingress when given no context (loopback).
pub const LOOPBACK_IFINDEX: u32 = 1;
