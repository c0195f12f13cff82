//! IPVS's rate estimator (`ip_vs_est.c`, the 2-second timer of kernels up to 6.1): every 2 s the
//! counters' growth is folded into smoothed rates (weight 1/4), kept scaled as the kernel keeps
//! them; `ipvsadm --rate` reads them rounded the kernel's way. `lbd run` ticks it; `lbadm` reads.
//!
//! Hand-written: the kernel's fixed-point arithmetic, on which `--rate`'s figures depend.
use lb_common::{RateEst, Stats};

use crate::model::{Counters, Rates};

/// Seconds between two ticks.
pub const TICK_SECS: u64 = 2;

fn stats(c: &Counters) -> Stats {
    Stats { conns: c.conns, inpkts: c.inpkts, outpkts: c.outpkts, inbytes: c.inbytes, outbytes: c.outbytes }
}

/// A new estimator starting from the counters as they are (no rate yet).
pub fn start(now: &Counters) -> RateEst {
    RateEst { last: stats(now), ..RateEst::default() }
}

fn smooth(avg: u64, rate: u64) -> u64 {
    // e->x += ((s64)rate - (s64)e->x) >> 2, in the kernel's signed arithmetic.
    (avg as i64).wrapping_add((rate as i64).wrapping_sub(avg as i64) >> 2) as u64
}

/// One 2-second tick (`estimation_timer`): counts per second scaled by 2^10 (packets,
/// connections) or 2^5 (bytes), smoothed.
pub fn tick(e: &mut RateEst, now: &Counters) {
    let n = stats(now);
    let d = |new: u64, old: u64| new.wrapping_sub(old);
    e.cps = smooth(e.cps, d(n.conns, e.last.conns) << 9);
    e.inpps = smooth(e.inpps, d(n.inpkts, e.last.inpkts) << 9);
    e.outpps = smooth(e.outpps, d(n.outpkts, e.last.outpkts) << 9);
    e.inbps = smooth(e.inbps, d(n.inbytes, e.last.inbytes) << 4);
    e.outbps = smooth(e.outbps, d(n.outbytes, e.last.outbytes) << 4);
    e.last = n;
}

/// The rates `ipvsadm --rate` shows (`ip_vs_read_estimator`).
pub fn read(e: &RateEst) -> Rates {
    Rates {
        cps: (e.cps.wrapping_add(0x1ff)) >> 10,
        inpps: (e.inpps.wrapping_add(0x1ff)) >> 10,
        outpps: (e.outpps.wrapping_add(0x1ff)) >> 10,
        inbps: (e.inbps.wrapping_add(0xf)) >> 5,
        outbps: (e.outbps.wrapping_add(0xf)) >> 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_converges_to_the_kernel_value() {
        // 100 connections, 1000 packets, 64000 bytes per second, steadily.
        let mut c = Counters::default();
        let mut e = start(&c);
        for _ in 0..60 {
            c.conns += 200;
            c.inpkts += 2000;
            c.inbytes += 128_000;
            tick(&mut e, &c);
        }
        let r = read(&e);
        assert_eq!((r.cps, r.inpps, r.inbps, r.outpps, r.outbps), (100, 1000, 64_000, 0, 0));
    }

    #[test]
    fn first_tick_is_a_quarter_of_the_rate() {
        let mut c = Counters::default();
        let mut e = start(&c);
        c.inpkts += 800; // 400 pps over 2 s
        tick(&mut e, &c);
        assert_eq!(read(&e).inpps, 100);
    }
}
