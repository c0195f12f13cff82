//! The kernel's `hsiphash` as built on 64-bit kernels (lib/siphash.c): there HalfSipHash-1-3 is
//! replaced by SipHash-1-3 with a 64-bit-word key (`hsiphash_key_t` = two `unsigned long`),
//! truncated to 32 bits. Only the 4-byte-input form mh uses is provided; no loops, no panics.

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// `hsiphash_1u32(first, key)` = `hsiphash(&first, 4, key)` on a 64-bit little-endian kernel.
#[inline(always)]
pub fn hsiphash_1u32(first: u32, key: [u64; 2]) -> u32 {
    let mut v = [
        0x736f6d6570736575u64 ^ key[0],
        0x646f72616e646f6du64 ^ key[1],
        0x6c7967656e657261u64 ^ key[0],
        0x7465646279746573u64 ^ key[1],
    ];
    let b: u64 = (4u64 << 56) | first as u64;
    v[3] ^= b;
    round(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    ((v[0] ^ v[1]) ^ (v[2] ^ v[3])) as u32
}
