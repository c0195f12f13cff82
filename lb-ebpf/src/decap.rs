//! For real servers of TUN services that have no tunnel device (this kernel has no ipip,
//! ip6_tunnel, gre or fou): strips the outer headers of a tunnelled packet addressed to one of
//! this host's addresses (IPv4 or IPv6, listed in `XLB_DECAP_ADDRS` by `lbd attach --program
//! decap`) and hands the inner packet to the kernel, with the Ethernet type of its family, which
//! delivers it to the VIP on lo. Taken: outer IPv4 or IPv6 (no extension headers) carrying
//! - IPIP: IPv4 (protocol 4) or IPv6 (41) directly;
//! - GRE (47): version 0, no routing, key or sequence, protocol IPv4 or IPv6; a checksum, when
//!   the C bit says there is one, must be right;
//! - GUE: UDP to a port of `XLB_DECAP_GUE_PORTS` (`--gue-port`), a UDP checksum that is zero or
//!   right, a version 0 data header, protocol 4 or 41, no option but what IPVS writes: remote
//!   checksum offload (`--tun-remcsum` on a packet sent from the director itself), whose inner
//!   checksum is completed here as the kernel's `gue_remcsum` would.
//!
//! Everything else (another protocol or port, not our address, a fragment, truncated or lying
//! headers, a wrong checksum, an inner packet of the wrong version) passes untouched: the kernel
//! judges it as it would without this program.
use aya_ebpf::{bindings::xdp_action, macros::map, maps::HashMap, programs::XdpContext};
use lb_common::{
    str_eq,
    tunnel::{
        DECAP_GUE_PORTS, DECAP_GUE_PORTS_MAX, ETH_P_IP, ETH_P_IPV6, GRE_F_CSUM, GRE_HDR_LEN, GUE_FLAG_PRIV, GUE_HDR_LEN,
        GUE_PFLAG_REMCSUM, IPPROTO_GRE, UDP_HDR_LEN,
    },
    Addr, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP,
};
use lb_common::verifier::masked;
use network_types::ip::Ipv4Hdr;

use crate::{
    csum,
    maps::XLB_DECAP_ADDRS,
    parse::{header, read, ETH_HLEN, IPV4_HLEN},
};

const IPV6_HLEN: usize = 40;

/// UDP ports (network order) whose datagrams to one of our addresses are GUE.
#[map]
static XLB_DECAP_GUE_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(DECAP_GUE_PORTS_MAX, 0);

const _: () = assert!(str_eq(DECAP_GUE_PORTS, "XLB_DECAP_GUE_PORTS"), "the GUE port map's name");

#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    match outer(ctx) {
        Some((strip, ethertype)) => strip_outer(ctx, strip, ethertype),
        None => xdp_action::XDP_PASS,
    }
}

/// Whether `a` is one of this host's decapsulating addresses.
#[inline(always)]
fn ours(a: &Addr) -> bool {
    // SAFETY: a hash map value stays valid until the program returns (RCU); it is only tested.
    unsafe { XLB_DECAP_ADDRS.get(a) }.is_some()
}

/// The outer header: how many bytes after Ethernet to strip, and the inner packet's Ethernet
/// type; `None` for anything not a tunnelled packet for us.
#[inline(always)]
fn outer(ctx: &XdpContext) -> Option<(usize, u16)> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let et = read::<[u8; 2]>(data, end, 12)?;
    let frame_len = end - data;
    match u16::from_be_bytes(et) {
        ETH_P_IP => {
            let ip = header::<Ipv4Hdr>(data, end, ETH_HLEN)?;
            // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while
            // this lives.
            let ip = unsafe { &*ip };
            let ihl = (ip.vihl & 0x0f) as usize * 4;
            let tot = u16::from_be_bytes(ip.tot_len) as usize;
            // Fragments of the outer packet: the kernel reassembles them (and cannot
            // decapsulate); leave them alone rather than strip a partial datagram.
            if ip.vihl >> 4 != 4
                || ihl < IPV4_HLEN
                || tot < ihl
                || ETH_HLEN + tot > frame_len
                || u16::from_be_bytes(ip.frags) & 0x3fff != 0
            {
                return None;
            }
            if !ours(&Addr::v4(u32::from_ne_bytes(ip.dst_addr))) {
                return None;
            }
            let src = u32::from_ne_bytes(ip.src_addr);
            let dst = u32::from_ne_bytes(ip.dst_addr);
            // The UDP pseudo-header's addresses, as a one's-complement sum.
            let pseudo = (src & 0xffff) as u64 + (src >> 16) as u64 + (dst & 0xffff) as u64 + (dst >> 16) as u64;
            tunnel(ctx, ETH_HLEN + (ihl & 0x3c), tot - ihl, ip.proto, pseudo)
        }
        ETH_P_IPV6 => {
            let ip = read::<[u32; 10]>(data, end, ETH_HLEN)?;
            let head = ip[0].to_ne_bytes();
            let vb = ip[1].to_ne_bytes();
            let plen = u16::from_be_bytes([vb[0], vb[1]]) as usize;
            let next = vb[2];
            if head[0] >> 4 != 6 || ETH_HLEN + IPV6_HLEN + plen > frame_len {
                return None;
            }
            let dst = Addr::v6([ip[6], ip[7], ip[8], ip[9]]);
            if !ours(&dst) {
                return None;
            }
            let mut pseudo = 0u64;
            for w in &ip[2..10] {
                pseudo += (w & 0xffff) as u64 + (w >> 16) as u64;
            }
            tunnel(ctx, ETH_HLEN + IPV6_HLEN, plen, next, pseudo)
        }
        _ => None,
    }
}

/// The tunnel header at `off` in an outer packet whose payload (`len` bytes) is of protocol
/// `proto`; `pseudo`: the sum of the outer addresses (UDP's pseudo-header).
#[inline(always)]
fn tunnel(ctx: &XdpContext, off: usize, mut len: usize, proto: u8, pseudo: u64) -> Option<(usize, u16)> {
    let (data, end) = (ctx.data(), ctx.data_end());
    // GUE's remote checksum offload: (start, offset) of the inner checksum to complete.
    let mut remcsum = None;
    let (hlen, inner_af_proto) = match proto {
        IPPROTO_IPIP | IPPROTO_IPV6 => (0, proto),
        IPPROTO_GRE => {
            let g = read::<[u8; 4]>(data, end, off)?;
            let flags = u16::from_be_bytes([g[0], g[1]]);
            // Only what IPVS sends: version 0, no routing, key or sequence (a keyed tunnel is
            // someone else's), an optional checksum.
            if flags & !GRE_F_CSUM != 0 {
                return None;
            }
            let inner = match u16::from_be_bytes([g[2], g[3]]) {
                ETH_P_IP => IPPROTO_IPIP,
                ETH_P_IPV6 => IPPROTO_IPV6,
                _ => return None,
            };
            let hlen = if flags & GRE_F_CSUM != 0 {
                // RFC 2784: over the GRE header and payload; a right one sums to all ones.
                if len < 8 || csum::fold(csum::sum_bytes(data + off, end, len)?) != 0xffff {
                    return None;
                }
                GRE_HDR_LEN as usize + 4
            } else {
                GRE_HDR_LEN as usize
            };
            (hlen, inner)
        }
        IPPROTO_UDP => {
            let u = read::<[u8; 12]>(data, end, off)?;
            // A GUE port of ours, or plain UDP.
            // SAFETY: a hash map value stays valid until the program returns (RCU); only tested.
            unsafe { XLB_DECAP_GUE_PORTS.get(&u16::from_ne_bytes([u[2], u[3]])) }?;
            let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
            if ulen < (UDP_HDR_LEN + GUE_HDR_LEN) as usize || ulen > len {
                return None;
            }
            // Zero: no checksum (IPv4; over IPv6 the kernel's UDP tunnel sockets take it too,
            // RFC 6935). Else it must be right, as the kernel's UDP would check it.
            if u[6] | u[7] != 0 {
                let sum = pseudo
                    + u16::from_ne_bytes((IPPROTO_UDP as u16).to_be_bytes()) as u64
                    + u16::from_ne_bytes((ulen as u16).to_be_bytes()) as u64
                    + csum::sum_bytes(data + off, end, ulen)?;
                if csum::fold(sum) != 0xffff {
                    return None;
                }
            }
            // GUE: version 0, a data message (no C bit), the inner protocol; options as IPVS
            // writes them: none, or the private word (flags PRIV) holding nothing or remote
            // checksum offload (its start and offset follow), hlen counting them.
            if u[9] != IPPROTO_IPIP && u[9] != IPPROTO_IPV6 {
                return None;
            }
            let gue_len = match (u[8], u16::from_be_bytes([u[10], u[11]])) {
                (0, 0) => GUE_HDR_LEN as usize,
                (1, GUE_FLAG_PRIV) if read::<[u8; 4]>(data, end, off + 12)? == [0; 4] => GUE_HDR_LEN as usize + 4,
                (2, GUE_FLAG_PRIV) => {
                    let o = read::<[u8; 8]>(data, end, off + 12)?;
                    if u32::from_be_bytes([o[0], o[1], o[2], o[3]]) != GUE_PFLAG_REMCSUM {
                        return None;
                    }
                    remcsum = Some((u16::from_be_bytes([o[4], o[5]]) as usize, u16::from_be_bytes([o[6], o[7]]) as usize));
                    GUE_HDR_LEN as usize + 8
                }
                _ => return None,
            };
            // What follows the GUE header is the inner packet, to the end of the datagram.
            len = ulen;
            (UDP_HDR_LEN as usize + gue_len, u[9])
        }
        _ => return None,
    };
    let (version, ethertype, min) = if inner_af_proto == IPPROTO_IPV6 {
        (6, ETH_P_IPV6, IPV6_HLEN)
    } else {
        (4, ETH_P_IP, IPV4_HLEN)
    };
    // The inner packet: a whole header of its family at least.
    if len < hlen + min {
        return None;
    }
    let inner_off = off + (hlen & 0x3f);
    // (A one-byte bounds check is one the verifier does not credit: the version is read with
    // the IPv4 header's length checked.)
    let first = read::<[u8; IPV4_HLEN]>(data, end, inner_off)?;
    if first[0] >> 4 != version {
        return None;
    }
    if version == 6 && header::<[u8; IPV6_HLEN]>(data, end, inner_off).is_none() {
        return None;
    }
    if let Some((start, offset)) = remcsum {
        complete_remote_checksum(data, end, inner_off, len - hlen, start, offset)?;
    }
    Some((inner_off - ETH_HLEN, ethertype))
}

/// GUE remote checksum offload, as the kernel's `gue_remcsum` / `skb_remcsum_process`: the
/// sender left the checksum at `offset` in the inner packet (at `inner_off`, `inner_len` bytes)
/// holding only its pseudo-header's sum; it becomes the checksum of everything from `start` on.
/// The last change made to a packet that is then stripped: nothing is written unless it all
/// fits.
#[inline(always)]
fn complete_remote_checksum(
    data: usize,
    end: usize,
    inner_off: usize,
    inner_len: usize,
    start: usize,
    offset: usize,
) -> Option<()> {
    if start >= inner_len || offset + 2 > inner_len || start > csum::SUM_MAX || offset > csum::SUM_MAX {
        return None;
    }
    // (Masked where the verifier sees it: Linux 6.1 loses a bound LLVM proved.)
    let (start, offset) = (masked::<0x7ff>(start), masked::<0x7ff>(offset));
    let sum = csum::sum_bytes(data + inner_off + start, end, inner_len - start)?;
    let field = header::<[u8; 2]>(data, end, inner_off + offset)?;
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    unsafe { *field = (!csum::fold(sum)).to_ne_bytes() };
    Some(())
}

/// Removes `strip` bytes after the Ethernet header and sets its type to `ethertype`; passes the
/// result (or the untouched frame, when it cannot be moved).
#[inline(always)]
fn strip_outer(ctx: &XdpContext, strip: usize, ethertype: u16) -> u32 {
    let Some(e) = read::<[u8; 12]>(ctx.data(), ctx.data_end(), 0) else {
        return xdp_action::XDP_PASS;
    };
    // At most an IPv4 header with options and GUE (bounded for the verifier).
    if strip > 128 {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: `ctx.ctx` is this program's xdp_md; the frame moves, and nothing read before is used
    // through old pointers after (they are looked up again below).
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, strip as i32) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let Some(h) = header::<[u8; ETH_HLEN]>(ctx.data(), ctx.data_end(), 0) else {
        // Cannot happen (the inner header was checked to be there): never pass half a frame.
        return xdp_action::XDP_DROP;
    };
    let t = ethertype.to_be_bytes();
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    unsafe {
        core::ptr::copy_nonoverlapping(e.as_ptr(), (*h).as_mut_ptr(), 12);
        (*h)[12] = t[0];
        (*h)[13] = t[1];
    }
    xdp_action::XDP_PASS
}
