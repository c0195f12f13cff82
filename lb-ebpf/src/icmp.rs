//! ICMP errors the data plane answers itself: TTL exceeded, fragmentation needed for a tunnel
//! that no longer fits, port unreachable for a service without a real server. (ICMP errors
//! about tracked connections, which are forwarded, are `related`'s.)
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};

use crate::{
    csum,
    maps::XLB_ICMP_LIMIT,
    parse::{header, ETH_HLEN, IPV4_HLEN},
    stats::bump,
};

pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_PORT_UNREACH: u8 = 3;
const PORT_UNREACH_GAP_NS: u64 = 1_000_000;
/// Quote: the offending datagram's IP header (up to 60 bytes) and 8 bytes of its payload
/// (RFC 792; Linux quotes more, up to 576 bytes in all).
const QUOTE_MAX: usize = 68;
const HDRS: usize = ETH_HLEN + IPV4_HLEN + 8;

#[inline(always)]
pub fn time_exceeded(ctx: &XdpContext) -> u32 {
    send_error(ctx, 11, 0, 0)
}

#[inline(always)]
pub fn frag_needed(ctx: &XdpContext, mtu: u16) -> u32 {
    send_error(ctx, 3, ICMP_FRAG_NEEDED, mtu)
}

/// A new connection to a service with no usable real server: as IPVS's `ip_vs_leave`, the
/// client is told "port unreachable" (its connect fails at once instead of timing out), at most
/// once per millisecond per CPU (the kernel rate-limits its ICMP errors); else dropped.
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
    send_error(ctx, 3, ICMP_PORT_UNREACH, 0)
}

/// Turns the frame into an ICMP error about itself, sent back where it came from, from the
/// address it was sent to (the VIP), as the kernel's icmp_send does for a local destination.
/// The new headers are prepended (headroom), so the quoted datagram stays where it is and a
/// frame shorter than the error it becomes needs no tailroom.
#[inline(always)]
fn send_error(ctx: &XdpContext, ty: u8, code: u8, mtu: u16) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(orig) = header::<[u8; ETH_HLEN + IPV4_HLEN]>(data, end, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives. `orig`'s bytes are copied out before the frame moves below.
    let orig = unsafe { &*orig };
    let mut eth = [0u8; 12];
    eth[..6].copy_from_slice(&orig[6..12]);
    eth[6..].copy_from_slice(&orig[..6]);
    let mut saddr = [0u8; 4];
    let mut daddr = [0u8; 4];
    saddr.copy_from_slice(&orig[ETH_HLEN + 12..ETH_HLEN + 16]);
    daddr.copy_from_slice(&orig[ETH_HLEN + 16..ETH_HLEN + 20]);
    let quote_len = ((orig[ETH_HLEN] & 0x0f) as usize * 4 + 8).min(QUOTE_MAX);
    if data + ETH_HLEN + quote_len > end {
        return xdp_action::XDP_DROP;
    }
    let orig_len = (end - data) as i32;
    // Room for the outer IPv4 and ICMP headers in front of the old Ethernet header: the old
    // IPv4 header then starts right after the new headers.
    // SAFETY: `ctx.ctx` is this program's xdp_md; `orig` is not used after the frame moves.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -((IPV4_HLEN + 8) as i32)) } != 0 {
        return xdp_action::XDP_DROP;
    }
    let cur = orig_len + (IPV4_HLEN + 8) as i32;
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
    h[12] = 0x08;
    h[13] = 0x00;
    const O: usize = ETH_HLEN;
    let ip_len = ((IPV4_HLEN + 8 + quote_len) as u16).to_be_bytes();
    // Internetwork control precedence, no DF, TTL 64: what the kernel's ICMP sender uses.
    let ip: [u8; 20] = [
        0x45, 0xc0, ip_len[0], ip_len[1], 0, 0, 0, 0, 64, 1, 0, 0, daddr[0], daddr[1], daddr[2], daddr[3], saddr[0],
        saddr[1], saddr[2], saddr[3],
    ];
    h[O..O + 20].copy_from_slice(&ip);
    let check = csum::ipv4_header(h, O).to_ne_bytes();
    h[O + 10] = check[0];
    h[O + 11] = check[1];
    const I: usize = ETH_HLEN + IPV4_HLEN;
    let m = mtu.to_be_bytes();
    let icmp: [u8; 8] = [ty, code, 0, 0, 0, 0, m[0], m[1]];
    h[I..I + 8].copy_from_slice(&icmp);
    let mut sum = 0u64;
    for i in 0..4 {
        sum += u16::from_ne_bytes([icmp[2 * i], icmp[2 * i + 1]]) as u64;
    }
    // The quote (an even number of bytes) is in place after the headers.
    for i in 0..QUOTE_MAX / 2 {
        if 2 * i >= quote_len {
            break;
        }
        let at = data + HDRS + 2 * i;
        if at + 2 > end {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: `at + 2 <= end` was checked just above; the quote starts at an even offset after
        // the headers.
        sum += unsafe { *(at as *const u16) } as u64;
    }
    let Some(h) = header::<[u8; HDRS]>(data, end, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let check = (!csum::fold(sum)).to_ne_bytes();
    // SAFETY: `header` checked these bytes are in the frame (`h` was checked again after the loop).
    unsafe {
        (*h)[I + 2] = check[0];
        (*h)[I + 3] = check[1];
    }
    bump(|g| &mut g.icmp_sent);
    xdp_action::XDP_TX
}
