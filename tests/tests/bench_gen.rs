//! The benchmark's frame generator (`xlb_bench_gen`, the bench object of lb-ebpf): the frame it
//! writes for a flow is, byte for byte, that flow's own frame (addresses, ports, IPv4 and UDP
//! checksums). `cargo xtask bench`'s new-connection rate counts on every frame being a flow never
//! sent before, and the kernel's paths (IPVS, nftables) drop a frame whose IPv4 checksum is wrong.
//! BPF_PROG_TEST_RUN without live frames: the program's XDP_REDIRECT is returned, not carried
//! out, and its frame comes back. Needs root.
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray, PerCpuValues},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::bench::{GEN_HDR_LEN, GEN_TMPL_LEN, GenCfg, NEW_FLOW_PORTS, names};
use xlb_tests::frames::{Frame, sa};

const MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
const BASE_PORT: u16 = 20_000;
const SRC: [u8; 4] = [10, 128, 0, 1];
const VIP: [u8; 4] = [10, 0, 1, 100];
const XDP_REDIRECT: u32 = 4;

/// The 60-byte frame of flow (`src`, `port`) → VIP:80, as the benchmark sends.
fn frame(src: [u8; 4], port: u16, udp_checksum: bool) -> Vec<u8> {
    let f = Frame::udp(sa(src, port), sa(VIP, 80)).payload(&[0x78; 18]).macs(MACS.0, MACS.1);
    if udp_checksum { f.bytes() } else { f.udp_no_checksum().bytes() }
}

fn generator() -> Ebpf {
    let obj = lb_user::bench_object();
    assert!(!obj.is_empty(), "this build has no benchmark object (AYA_BUILD_SKIP)");
    let mut ebpf = Ebpf::load(obj).expect("load the benchmark object");
    let p: &mut Xdp = ebpf.program_mut(names::GEN).expect("xlb_bench_gen").try_into().expect("an XDP program");
    p.load().expect("verifier accepts xlb_bench_gen");
    ebpf
}

/// Configures the generator with the template `tmpl` (and its frame numbering restarted when
/// `restart`).
fn configure(ebpf: &mut Ebpf, tmpl_frame: &[u8], nflows: u32, new_flows: u16, first_flow: u32, restart: bool) {
    let mut tmpl = [0u8; GEN_TMPL_LEN];
    tmpl[..GEN_HDR_LEN].copy_from_slice(&tmpl_frame[..GEN_HDR_LEN]);
    let mut cfg: Array<_, GenCfg> = Array::try_from(ebpf.map_mut(names::GEN_CFG).expect("cfg map")).expect("array");
    cfg.set(0, GenCfg { ifindex: 1, nflows, base_port: BASE_PORT, new_flows, first_flow, tmpl }, 0).expect("set cfg");
    if restart {
        let mut seq: PerCpuArray<_, u64> =
            PerCpuArray::try_from(ebpf.map_mut(names::GEN_SEQ).expect("seq map")).expect("per-CPU array");
        let cpus = aya::util::nr_cpus().expect("nr_cpus");
        seq.set(0, PerCpuValues::try_from(vec![0u64; cpus]).expect("values"), 0).expect("zero seq");
    }
}

/// One run on `input`: the frame the generator wrote.
fn run(ebpf: &mut Ebpf, input: &[u8]) -> Vec<u8> {
    let p: &mut Xdp = ebpf.program_mut(names::GEN).expect("xlb_bench_gen").try_into().expect("an XDP program");
    let mut out = vec![0u8; input.len() + 256];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(input);
    opts.data_out = Some(&mut out);
    opts.repeat = 1;
    let r = p.test_run(opts).expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, XDP_REDIRECT, "the generator redirects every frame");
    out.truncate(r.data_size_out as usize);
    out
}

#[test]
fn every_new_flow_frame_is_that_flows_own_frame() {
    let mut ebpf = generator();
    for udp_checksum in [true, false] {
        let tmpl = frame(SRC, BASE_PORT, udp_checksum);
        let p = NEW_FLOW_PORTS;
        for f in [0, 1, 2, p - 1, p, p + 7, 5 * p + 12_345, 1_000_003, 3_000_000] {
            configure(&mut ebpf, &tmpl, 1, 1, f, true);
            // Whatever the frame held before (live frames are recycled), the header is the flow's.
            let got = run(&mut ebpf, &frame([192, 0, 2, 9], 7, true));
            let src = (u32::from_be_bytes(SRC) + f / p).to_be_bytes();
            let want = frame(src, BASE_PORT + (f % p) as u16, udp_checksum);
            assert_eq!(got, want, "flow {f} (UDP checksum: {udp_checksum})");
        }
    }
}

#[test]
fn established_runs_take_their_source_ports_in_turn() {
    // Frame numbers are per CPU: the runs stay on one.
    xlb_tests::bench::pin_to_cpu(0).expect("pin to CPU 0");
    let mut ebpf = generator();
    let tmpl = frame([10, 0, 1, 2], BASE_PORT, true);
    configure(&mut ebpf, &tmpl, 3, 0, 0, true);
    let ports: Vec<u16> = (0..7)
        .map(|_| {
            let got = run(&mut ebpf, &tmpl);
            let port = u16::from_be_bytes([got[34], got[35]]);
            assert_eq!(got, frame([10, 0, 1, 2], port, true), "frame of source port {port}");
            port
        })
        .collect();
    let b = BASE_PORT;
    assert_eq!(ports, [b, b + 1, b + 2, b, b + 1, b + 2, b]);
}
