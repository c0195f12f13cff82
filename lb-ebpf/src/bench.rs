//! The benchmark's programs (`cargo xtask bench`), an object of their own (`lb-ebpf-bench`,
//! built by lb-user/build.rs next to the data plane's and loaded only by the benchmark, never by
//! lbd). Their layouts and names: `lb_common::bench`.
//!
//! - `xlb_bench_gen`: the end-to-end frame generator. Run with BPF_PROG_TEST_RUN in live-frames
//!   mode, it writes a complete Ethernet/IPv4/UDP header from a template into every frame (live
//!   frames are recycled without being re-initialised, so whatever a forwarder wrote into a page
//!   comes back), gives each frame one of `nflows` source ports (UDP checksum updated
//!   incrementally) and XDP_REDIRECTs it into a veth, whose peer is the director's interface.
//!   With `new_flows`, every frame is a flow never sent before (source address and port both vary).
//! - `xlb_bench_sink`: counts what reaches the receiving side, by kind, and drops it.
//! - `xlb_bench_pass`: XDP_PASS, on a kernel director's receiving interface.
//!
//! Their maps are private to each loaded object (not pinned).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};

use lb_common::bench::{GenCfg, SinkCfg, SinkCounts, GEN_HDR_LEN, NEW_FLOW_PORTS};
use lb_ebpf::{
    csum,
    parse::{header, ETH_HLEN, ETH_P_IP, IPV4_HLEN},
};

#[map]
static XLB_BENCH_GEN_CFG: Array<GenCfg> = Array::with_max_entries(1, 0);
#[map]
static XLB_BENCH_GEN_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
#[map]
static XLB_BENCH_SINK_CFG: Array<SinkCfg> = Array::with_max_entries(1, 0);
#[map]
static XLB_BENCH_SINK_COUNTS: PerCpuArray<SinkCounts> = PerCpuArray::with_max_entries(1, 0);

/// The frame generator.
#[xdp]
pub fn xlb_bench_gen(ctx: XdpContext) -> u32 {
    let Some(cfg) = XLB_BENCH_GEN_CFG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + GEN_HDR_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    let mut i = 0;
    while i < GEN_HDR_LEN {
        // SAFETY: i < GEN_HDR_LEN and data + GEN_HDR_LEN <= end: the byte is in the frame.
        unsafe { *((data + i) as *mut u8) = cfg.tmpl[i] };
        i += 1;
    }
    let Some(seq) = XLB_BENCH_GEN_SEQ.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a value of the per-CPU XLB_BENCH_GEN_SEQ from a successful lookup: valid for the run
    // and this CPU's own.
    let n = unsafe { *seq };
    // SAFETY: as above.
    unsafe { *seq = n + 1 };
    let (port, src_add) = if cfg.new_flows != 0 {
        let f = (cfg.first_flow as u64).wrapping_add(n);
        (cfg.base_port.wrapping_add((f % NEW_FLOW_PORTS as u64) as u16), (f / NEW_FLOW_PORTS as u64) as u32)
    } else {
        let nflows = if cfg.nflows == 0 { 1 } else { cfg.nflows as u64 };
        (cfg.base_port.wrapping_add((n % nflows) as u16), 0)
    };
    let Some(ip) = header::<Ipv4Hdr>(data, end, ETH_HLEN) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(udp) = header::<UdpHdr>(data, end, ETH_HLEN + IPV4_HLEN) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: `header` checked that the IPv4 and UDP headers lie inside the frame.
    unsafe {
        let old = cfg.base_port.to_be_bytes();
        let new = port.to_be_bytes();
        (*udp).src = new;
        let mut check = u16::from_ne_bytes((*udp).check);
        // 0: the datagram carries no checksum.
        let has_check = check != 0;
        if has_check {
            check = csum::update16(check, u16::from_ne_bytes(old), u16::from_ne_bytes(new));
        }
        if src_add != 0 {
            let old_src = u32::from_ne_bytes((*ip).src_addr);
            let new_src = u32::from_be(old_src).wrapping_add(src_add).to_be();
            (*ip).src_addr = new_src.to_ne_bytes();
            (*ip).check = csum::update32(u16::from_ne_bytes((*ip).check), old_src, new_src).to_ne_bytes();
            if has_check {
                check = csum::update32(check, old_src, new_src);
            }
        }
        if has_check {
            // A UDP checksum that sums to 0 is sent as 0xffff (0 means none).
            (*udp).check = (if check == 0 { 0xffff } else { check }).to_ne_bytes();
        }
    }
    // SAFETY: bpf_redirect takes plain integers and touches no memory of ours.
    unsafe { aya_ebpf::helpers::bpf_redirect(cfg.ifindex, 0) as u32 }
}

/// The receiving side: counts and drops.
#[xdp]
pub fn xlb_bench_sink(ctx: XdpContext) -> u32 {
    let Some(c) = XLB_BENCH_SINK_COUNTS.get_ptr_mut(0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: a value of the per-CPU XLB_BENCH_SINK_COUNTS from a successful lookup: valid for the
    // run and this CPU's own.
    let c = unsafe { &mut *c };
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(eth) = header::<EthHdr>(data, end, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that the Ethernet header lies inside the frame.
    if u16::from_be(unsafe { (*eth).ether_type }) != ETH_P_IP {
        return xdp_action::XDP_DROP;
    }
    let Some(ip) = header::<Ipv4Hdr>(data, end, ETH_HLEN) else {
        return xdp_action::XDP_DROP;
    };
    c.ipv4 += 1;
    // SAFETY: `header` checked that the IPv4 header lies inside the frame; only read.
    let ip = unsafe { &*ip };
    let cfg = XLB_BENCH_SINK_CFG.get(0);
    let (addr, port) = cfg.map(|s| (s.addr, s.port)).unwrap_or((0, 0));
    if ip.proto == lb_common::IPPROTO_IPIP {
        c.ipip += 1;
    } else if ip.proto == lb_common::IPPROTO_UDP && ip.vihl == 0x45 {
        let daddr = u32::from_ne_bytes(ip.dst_addr);
        let dport = match header::<UdpHdr>(data, end, ETH_HLEN + IPV4_HLEN) {
            // SAFETY: `header` checked that the UDP header lies inside the frame.
            Some(u) => u16::from_ne_bytes(unsafe { (*u).dst }),
            None => 0,
        };
        if daddr == addr {
            c.udp_to_addr += 1;
        } else if dport == port {
            c.udp_to_port += 1;
        } else {
            c.other += 1;
        }
    } else {
        c.other += 1;
    }
    xdp_action::XDP_DROP
}

/// XDP_PASS: frames go on into the kernel's stack.
#[xdp]
pub fn xlb_bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
