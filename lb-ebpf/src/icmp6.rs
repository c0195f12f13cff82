//! ICMPv6 errors the IPv6 data plane answers itself, as `icmp`'s IPv4 ones: hop limit exceeded,
//! packet too big for a tunnel, port unreachable for a service without a real server. As the
//! kernel's `icmp6_send` for a packet to a local address (the VIP): from the address the packet
//! was sent to, back to its source, hop limit 64, traffic class 0, quoting as much of the
//! offending packet as fits in the minimum IPv6 MTU (1280 - 40 - 8 = 1232 bytes), the ICMPv6
//! checksum over the pseudo-header. (The kernel may add an automatic flow label, a hash of its
//! own; these carry flow label 0.) The caller makes sure the packet is one an error may answer
//! (unicast, not an ICMPv6 error itself).
use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    programs::XdpContext,
};

use crate::{
    csum,
    maps::XLB_ICMP_LIMIT,
    parse::{header, read, ETH_HLEN},
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

/// [`send_error`] in a global BPF function: checked once, and its frame is not added to the
/// deep frames of the programs that answer (lblcr's scheduling, the tunnels').
#[inline(always)]
fn send_error(ctx: &XdpContext, ty: u8, code: u8, info: u32) -> u32 {
    xlb_icmp6_error(ctx.ctx, ty as u32, code as u32, info)
}

/// Turns the frame (Ethernet, IPv6 at 14) into an ICMPv6 error about itself (`ty`, `code`,
/// `info`: the MTU of a Packet Too Big), sent back out the interface it came in on. The new
/// headers are prepended (headroom) and the frame cut to the quote, which stays where it is;
/// the old Ethernet and IPv6 headers, still in place after the move, give the new ones their
/// addresses.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xlb_icmp6_error(ctx: *mut xdp_md, ty: u32, code: u32, info: u32) -> u32 {
    let ctx = &XdpContext::new(ctx);
    let (ty, code) = (ty as u8, code as u8);
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(orig) = header::<[u8; ETH_HLEN + IPV6_HLEN]>(data, end, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives (only its payload length is read).
    let plen = unsafe { u16::from_be_bytes([(*orig)[ETH_HLEN + 4], (*orig)[ETH_HLEN + 5]]) } as usize;
    // The packet as the kernel holds it (trimmed to its length; Ethernet padding is not part of
    // it), cut to what fits.
    let in_frame = end - data - ETH_HLEN;
    let quote_len = (IPV6_HLEN + plen).min(in_frame).min(QUOTE_MAX);
    let orig_len = (end - data) as i32;
    const GROW: usize = IPV6_HLEN + ICMP6_HLEN;
    // SAFETY: `ctx.ctx` is this program's xdp_md; `orig` is not used after the frame moves.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -(GROW as i32)) } != 0 {
        return xdp_action::XDP_DROP;
    }
    // SAFETY: as above: the frame moves; every pointer into it is taken again below.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_tail(ctx.ctx, (HDRS + quote_len) as i32 - (orig_len + GROW as i32)) }
        != 0
    {
        return xdp_action::XDP_DROP;
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    // The new headers, then the old IPv6 header (the quote's start: at least its 40 bytes).
    let Some(h) = header::<[u8; HDRS + IPV6_HLEN]>(data, end, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let h = unsafe { &mut *h };
    // The old Ethernet header, at GROW: read before the new headers cover it.
    const E: usize = GROW;
    let old_dst = (u32::from_ne_bytes([h[E], h[E + 1], h[E + 2], h[E + 3]]), [h[E + 4], h[E + 5]]);
    let old_src = (u32::from_ne_bytes([h[E + 6], h[E + 7], h[E + 8], h[E + 9]]), [h[E + 10], h[E + 11]]);
    let w = old_src.0.to_ne_bytes();
    h[..4].copy_from_slice(&w);
    h[4..6].copy_from_slice(&old_src.1);
    let w = old_dst.0.to_ne_bytes();
    h[6..10].copy_from_slice(&w);
    h[10..12].copy_from_slice(&old_dst.1);
    h[12] = 0x86;
    h[13] = 0xdd;
    const O: usize = ETH_HLEN;
    const Q: usize = HDRS;
    let plen = ((ICMP6_HLEN + quote_len) as u16).to_be_bytes();
    h[O] = 0x60;
    h[O + 1] = 0;
    h[O + 2] = 0;
    h[O + 3] = 0;
    h[O + 4] = plen[0];
    h[O + 5] = plen[1];
    h[O + 6] = IPPROTO_ICMPV6;
    h[O + 7] = 64;
    // From the address it was sent to, back to its source; summed for the pseudo-header. Word by
    // word (the offsets are even), each stored as soon as loaded: no bytes held on the stack.
    let mut sum = 0u64;
    let p = h.as_mut_ptr();
    for i in 0..16 {
        let (to, from) = if i < 8 { (O + 8 + 2 * i, Q + 24 + 2 * i) } else { (O + 8 + 2 * i, Q + 8 + 2 * (i - 8)) };
        // SAFETY: both offsets lie in `h` (checked above), which is not moved while this lives.
        // (Volatile: in this order, not all loads first with the words spilled to the stack.)
        unsafe {
            let w = core::ptr::read_volatile(p.add(from) as *const u16);
            core::ptr::write_volatile(p.add(to) as *mut u16, w);
            sum = in_order(sum + w as u64);
        }
    }
    const I: usize = ETH_HLEN + IPV6_HLEN;
    let m = info.to_be_bytes();
    h[I] = ty;
    h[I + 1] = code;
    h[I + 2] = 0;
    h[I + 3] = 0;
    h[I + 4..I + 8].copy_from_slice(&m);
    sum += u16::from_ne_bytes([ty, code]) as u64 + u16::from_ne_bytes([m[0], m[1]]) as u64 + u16::from_ne_bytes([m[2], m[3]]) as u64;
    // The upper-layer length and next header of the pseudo-header.
    sum += u16::from_ne_bytes(plen) as u64 + u16::from_ne_bytes([0, IPPROTO_ICMPV6]) as u64;
    // The quote, in place after the headers, to the end of the frame (cut to it above).
    let q = sum_to_end(data + HDRS, end, quote_len & 1 != 0);
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

/// `v` (a sum of at most a few hundred 16-bit words), through an instruction LLVM cannot see
/// into (`lb_common::verifier::masked`'s AND, by a mask it keeps intact): a sum accumulated
/// through it is added word by word as they are read, not regrouped with every word held at once
/// (on the stack).
#[inline(always)]
fn in_order(v: u64) -> u64 {
    lb_common::verifier::masked::<0x7fff_ffff>(v as usize) as u64
}

/// One's-complement sum of the bytes from `p` to the frame's end (at most [`QUOTE_MAX`]; `odd`:
/// their number is odd, the last byte is zero-padded). The loops are bounded by constants alone
/// and stop where the frame does: a length the verifier had to follow (Linux 6.1 loses its
/// bound) made it walk the loop far past the quote.
#[inline(always)]
fn sum_to_end(p: usize, end: usize, odd: bool) -> u64 {
    let mut s = 0u64;
    let mut off = 0;
    for _ in 0..QUOTE_MAX / 8 {
        let Some(b) = read::<[u8; 8]>(p, end, off) else {
            break;
        };
        s += u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as u64 + u32::from_ne_bytes([b[4], b[5], b[6], b[7]]) as u64;
        off += 8;
    }
    for _ in 0..3 {
        let Some(w) = read::<[u8; 2]>(p, end, off) else {
            break;
        };
        s += u16::from_ne_bytes(w) as u64;
        off += 2;
    }
    // The odd last byte, read as the second of the two before the end (a one-byte bounds check
    // is one the verifier does not credit).
    if odd
        && off > 0
        && let Some(w) = read::<[u8; 2]>(p, end, off - 1)
    {
        s += u16::from_ne_bytes([w[1], 0]) as u64;
    }
    s
}
