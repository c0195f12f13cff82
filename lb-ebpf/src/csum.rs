//! Internet checksums (RFC 1071/1624). Words are read and written in memory order: the
//! one's-complement sum does not depend on byte order as long as reads and writes agree.
use crate::parse::header;

#[inline(always)]
pub fn fold(mut s: u64) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// RFC 1624: the checksum `check` after a 16-bit word changed from `old` to `new`.
#[inline(always)]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold((!check) as u64 + (!old) as u64 + new as u64)
}

/// The checksum after a 32-bit field (memory order) changed.
#[inline(always)]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let o = old.to_ne_bytes();
    let n = new.to_ne_bytes();
    let c = update16(check, u16::from_ne_bytes([o[0], o[1]]), u16::from_ne_bytes([n[0], n[1]]));
    update16(c, u16::from_ne_bytes([o[2], o[3]]), u16::from_ne_bytes([n[2], n[3]]))
}

/// Checksum of the 20-byte IPv4 header at `h[off..]` (its checksum field must be zero).
#[inline(always)]
pub fn ipv4_header<const N: usize>(h: &[u8; N], off: usize) -> u16 {
    let mut s = 0u64;
    for i in 0..10 {
        let j = off + 2 * i;
        if j + 1 < N {
            s += u16::from_ne_bytes([h[j], h[j + 1]]) as u64;
        }
    }
    !fold(s)
}

/// Largest span [`sum_bytes`] covers (an Ethernet MTU's worth).
pub const SUM_MAX: usize = 1500;

/// One's-complement sum (not folded, not inverted) of `len` bytes at `p` (a packet address),
/// as 16-bit words in memory order, the odd last byte zero-padded. A bounded loop over 8-byte
/// blocks with one constant-size bounds check each (which the verifier can follow, in a
/// quarter of the steps of a word loop), then the last few words. `None` past the frame or
/// beyond [`SUM_MAX`].
#[inline(always)]
pub fn sum_bytes(p: usize, data_end: usize, len: usize) -> Option<u64> {
    if len > SUM_MAX {
        return None;
    }
    let mut s = 0u64;
    let blocks = len / 8;
    for i in 0..SUM_MAX / 8 {
        if i >= blocks {
            break;
        }
        let b = header::<[u8; 8]>(p, data_end, 8 * i)?;
        // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
        // lives.
        let b = unsafe { *b };
        s += u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as u64 + u32::from_ne_bytes([b[4], b[5], b[6], b[7]]) as u64;
    }
    // Two 16-bit halves of a 32-bit word add up to the same one's-complement sum once folded.
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16) + (s >> 32);
    let tail = 8 * blocks;
    for k in 0..4 {
        let off = tail + 2 * k;
        if off >= len {
            break;
        }
        if off + 1 == len {
            // The odd last byte, read as the second byte of the word before it (a one-byte
            // bounds check is one the verifier does not credit); callers sum at least 8 bytes.
            if off == 0 {
                return None;
            }
            let w = header::<[u8; 2]>(p, data_end, off - 1)?;
            // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while
            // this lives.
            s += u16::from_ne_bytes([unsafe { (*w)[1] }, 0]) as u64;
            break;
        }
        let w = header::<[u8; 2]>(p, data_end, off)?;
        // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
        // lives.
        s += u16::from_ne_bytes(unsafe { *w }) as u64;
    }
    Some(s)
}
