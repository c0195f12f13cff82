//! ICMPv6 errors the IPv6 data plane answers itself, as `icmp`'s IPv4 ones: hop limit exceeded,
//! packet too big for a tunnel, port unreachable for a service without a real server. As the
//! kernel's `icmp6_send` for a packet to a local address (the VIP): from the address the packet
//! was sent to, back to its source, hop limit 64, traffic class 0, quoting as much of the
//! offending packet as fits in the minimum IPv6 MTU (1280 - 40 - 8 = 1232 bytes), the ICMPv6
//! checksum over the pseudo-header. (The kernel may add an automatic flow label, a hash of its
//! own; these carry flow label 0.) The caller makes sure the packet is one an error may answer
//! (unicast, not an ICMPv6 error itself).
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};

use crate::{
    csum,
    maps::XLB_ICMP_LIMIT,
    parse::{header, ETH_HLEN},
    stats::bump,
};

const IPV6_HLEN: usize = 40;
const ICMP6_HLEN: usize = 8;
const IPPROTO_ICMPV6: u8 = 58;
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_TIME_EXCEED: u8 = 3;
pub const ICMPV6_PORT_UNREACH: u8 = 4;
const PORT_UNREACH_GAP_NS: u64 = 1_000_000;
/// The quote: what fits in the minimum MTU after the new headers.
const QUOTE_MAX: usize = 1280 - IPV6_HLEN - ICMP6_HLEN;
const HDRS: usize = ETH_HLEN + IPV6_HLEN + ICMP6_HLEN;

/// Hop limit exceeded in transit (type 3, code 0).
#[inline(always)]
pub fn time_exceeded(ctx: &XdpContext) -> u32 {
    send_error(ctx, ICMPV6_TIME_EXCEED, 0, 0)
}

/// Packet too big (type 2) with the MTU the packet must fit in.
#[inline(always)]
pub fn packet_too_big(ctx: &XdpContext, mtu: u32) -> u32 {
    send_error(ctx, ICMPV6_PKT_TOOBIG, 0, mtu)
}

/// A new connection to a service with no usable real server (IPVS's `ip_vs_leave`): port
/// unreachable (type 1, code 4), at most once per millisecond per CPU (the budget the IPv4
/// errors share); else dropped.
#[inline(always)]
pub fn port_unreachable(ctx: &XdpContext, now: u64) -> u32 {
    let Some(last) = XLB_ICMP_LIMIT.get_ptr_mut(0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: this CPU's value of XLB_ICMP_LIMIT (per-CPU array), valid for the run and used by no
    // one else meanwhile.
    let last = unsafe { &mut *last };
    if now.wrapping_sub(*last) < PORT_UNREACH_GAP_NS {
        return xdp_action::XDP_DROP;
    }
    *last = now;
    send_error(ctx, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, 0)
}

/// Turns the frame (Ethernet, IPv6 at 14) into an ICMPv6 error about itself, sent back out the
/// interface it came in on. The new headers are prepended (headroom) and the frame cut to the
/// quote, which stays where it is.
#[inline(always)]
fn send_error(ctx: &XdpContext, ty: u8, code: u8, info: u32) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(orig) = header::<[u8; ETH_HLEN + IPV6_HLEN]>(data, end, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives. `orig`'s bytes are copied out before the frame moves below.
    let orig = unsafe { &*orig };
    let mut eth = [0u8; 12];
    eth[..6].copy_from_slice(&orig[6..12]);
    eth[6..].copy_from_slice(&orig[..6]);
    let mut addrs = [0u8; 32];
    // The new source is the old destination, the new destination the old source.
    addrs[..16].copy_from_slice(&orig[ETH_HLEN + 24..ETH_HLEN + 40]);
    addrs[16..].copy_from_slice(&orig[ETH_HLEN + 8..ETH_HLEN + 24]);
    // The packet as the kernel holds it (trimmed to its length; Ethernet padding is not part of
    // it), cut to what fits.
    let pkt_len = IPV6_HLEN + u16::from_be_bytes([orig[ETH_HLEN + 4], orig[ETH_HLEN + 5]]) as usize;
    let in_frame = end - data - ETH_HLEN;
    let quote_len = pkt_len.min(in_frame).min(QUOTE_MAX);
    let orig_len = (end - data) as i32;
    // SAFETY: `ctx.ctx` is this program's xdp_md; `orig` is not used after the frame moves.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -((IPV6_HLEN + ICMP6_HLEN) as i32)) } != 0 {
        return xdp_action::XDP_DROP;
    }
    let cur = orig_len + (IPV6_HLEN + ICMP6_HLEN) as i32;
    // SAFETY: as above: the frame moves; every pointer into it is taken again below.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_tail(ctx.ctx, (HDRS + quote_len) as i32 - cur) } != 0 {
        return xdp_action::XDP_DROP;
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(h) = header::<[u8; HDRS]>(data, end, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let h = unsafe { &mut *h };
    h[..12].copy_from_slice(&eth);
    h[12] = 0x86;
    h[13] = 0xdd;
    const O: usize = ETH_HLEN;
    let plen = ((ICMP6_HLEN + quote_len) as u16).to_be_bytes();
    h[O] = 0x60;
    h[O + 1] = 0;
    h[O + 2] = 0;
    h[O + 3] = 0;
    h[O + 4] = plen[0];
    h[O + 5] = plen[1];
    h[O + 6] = IPPROTO_ICMPV6;
    h[O + 7] = 64;
    h[O + 8..O + 40].copy_from_slice(&addrs);
    const I: usize = ETH_HLEN + IPV6_HLEN;
    let m = info.to_be_bytes();
    let icmp: [u8; 8] = [ty, code, 0, 0, m[0], m[1], m[2], m[3]];
    h[I..I + 8].copy_from_slice(&icmp);
    // Pseudo-header (addresses, upper-layer length, next header) and the ICMPv6 header.
    let mut sum = 0u64;
    for i in 0..16 {
        sum += u16::from_ne_bytes([addrs[2 * i], addrs[2 * i + 1]]) as u64;
    }
    for i in 0..4 {
        sum += u16::from_ne_bytes([icmp[2 * i], icmp[2 * i + 1]]) as u64;
    }
    sum += u16::from_ne_bytes(plen) as u64 + u16::from_ne_bytes([0, IPPROTO_ICMPV6]) as u64;
    // The quote, in place after the headers.
    let Some(q) = csum::sum_bytes(data + HDRS, end, quote_len) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(h) = header::<[u8; HDRS]>(data, end, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let check = (!csum::fold(sum + q)).to_ne_bytes();
    // SAFETY: `header` checked these bytes are in the frame (`h` was checked again after the sum).
    unsafe {
        (*h)[I + 2] = check[0];
        (*h)[I + 3] = check[1];
    }
    bump(|g| &mut g.icmp_sent);
    xdp_action::XDP_TX
}
