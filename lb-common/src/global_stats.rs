//! `XLB_GLOBAL_STATS`' value: IPVS's global totals and the data plane's verdict and event
//! counters. Each counter is declared once, in [`global_stats!`]'s invocation below: its doc
//! comment, its place in the `#[repr(C)]` layout (the order of the lines), and its place in the
//! lists readers print ([`GlobalStats::verdicts`] / [`GlobalStats::events`]).

use crate::maps::Stats;

/// Generates [`GlobalStats`] from one line per counter: `name: verdict N` or `name: event N`,
/// N its index in [`GlobalStats::verdicts`] or [`GlobalStats::events`]. The struct's fields
/// follow `total` in the order of the lines; `accumulate` sums `total` and every counter.
macro_rules! global_stats {
    (
        $(#[$meta:meta])*
        pub struct GlobalStats {
            pub total: Stats,
            $( $(#[$doc:meta])* $name:ident: $kind:ident $index:literal, )*
        }
    ) => {
        $(#[$meta])*
        pub struct GlobalStats {
            pub total: Stats,
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl GlobalStats {
            /// How many verdict counters there are.
            pub const VERDICTS: usize = 0 $( + global_stats!(@count verdict $kind) )*;
            /// How many event counters there are.
            pub const EVENTS: usize = 0 $( + global_stats!(@count event $kind) )*;

            /// The verdict counters by name.
            pub const fn verdicts(&self) -> [(&'static str, u64); Self::VERDICTS] {
                let mut out = [("", 0); Self::VERDICTS];
                $( global_stats!(@put verdict $kind out $index self $name); )*
                out
            }

            /// The event counters by name, in the one order every reader prints them (lbd
            /// status, metrics, the bench's path proofs).
            pub const fn events(&self) -> [(&'static str, u64); Self::EVENTS] {
                let mut out = [("", 0); Self::EVENTS];
                $( global_stats!(@put event $kind out $index self $name); )*
                out
            }

            /// Adds `o` (another CPU's share) into `self`; readers sum per-CPU values with it.
            pub fn accumulate(&mut self, o: &GlobalStats) {
                self.total.accumulate(&o.total);
                $( self.$name = self.$name.wrapping_add(o.$name); )*
            }
        }
    };
    (@count verdict verdict) => { 1 };
    (@count event event) => { 1 };
    (@count $list:ident $kind:ident) => { 0 };
    (@put verdict verdict $out:ident $index:literal $s:ident $name:ident) => {
        $out[$index] = (stringify!($name), $s.$name);
    };
    (@put event event $out:ident $index:literal $s:ident $name:ident) => {
        $out[$index] = (stringify!($name), $s.$name);
    };
    (@put $list:ident $kind:ident $out:ident $index:literal $s:ident $name:ident) => {};
}

global_stats! {
    /// Value of `XLB_GLOBAL_STATS[0]` (per CPU): IPVS's global totals and the data plane's verdicts.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct GlobalStats {
        pub total: Stats,
        /// Frames the XDP program saw.
        rx: event 0,
        /// Verdicts.
        pass: verdict 0,
        tx: verdict 1,
        redirect: verdict 2,
        drop: verdict 3,
        /// Frames that were not fully parsed (truncated, bad header) and so were passed untouched.
        parse_fail: event 1,
        /// Packets for a service whose scheduler had no usable real server.
        no_dest: event 2,
        /// New connections that could not be recorded (table full).
        conn_insert_fail: event 5,
        /// Packets sent by the tc slow path (the next hop had no neighbour entry yet, or XDP cannot
        /// transmit on the egress interface).
        neigh_miss: event 7,
        /// Established-flow packets (connection table hit).
        conn_hit: event 4,
        /// New connections created.
        conn_new: event 3,
        /// Packets dropped because the kernel has no route to their next hop.
        no_route: event 8,
        /// ICMP errors the data plane generated (time exceeded, fragmentation needed).
        icmp_sent: event 9,
        /// ICMP errors about a tracked connection forwarded to their party.
        icmp_related: event 10,
        /// NAT replies (real server to client) rewritten and forwarded.
        nat_reply: event 11,
        /// Half-open connections evicted to make room in a full table (see `HALF_OPEN_SLOTS`).
        conn_evicted: event 6,
        /// Connections queued for the sync master (`XLB_SYNC_EVENTS`).
        sync_queued: event 12,
        /// Connections the sync master could not be told of: its queue was full (lbd behind or
        /// not running). The packet itself went on.
        sync_dropped: event 13,
    }
}

impl GlobalStats {
    /// A verdict or event counter by name.
    pub fn by_name(&self, name: &str) -> Option<u64> {
        self.verdicts().into_iter().chain(self.events()).find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every counter has one distinct name in the lists (no index left out or used twice), and
    /// the lists keep the order readers print.
    #[test]
    fn names_in_their_order() {
        let g = GlobalStats::default();
        let verdicts: [&str; 4] = g.verdicts().map(|(n, _)| n);
        assert_eq!(verdicts, ["pass", "tx", "redirect", "drop"]);
        let events: [&str; 14] = g.events().map(|(n, _)| n);
        assert_eq!(
            events,
            [
                "rx",
                "parse_fail",
                "no_dest",
                "conn_new",
                "conn_hit",
                "conn_insert_fail",
                "conn_evicted",
                "neigh_miss",
                "no_route",
                "icmp_sent",
                "icmp_related",
                "nat_reply",
                "sync_queued",
                "sync_dropped",
            ]
        );
    }

    #[test]
    fn accumulate_and_by_name() {
        let mut a = GlobalStats { rx: 2, drop: 1, conn_evicted: u64::MAX, ..Default::default() };
        let b = GlobalStats { rx: 3, conn_evicted: 2, total: Stats { conns: 4, ..Default::default() }, ..Default::default() };
        a.accumulate(&b);
        assert_eq!((a.rx, a.drop, a.conn_evicted, a.total.conns), (5, 1, 1, 4));
        assert_eq!(a.by_name("rx"), Some(5));
        assert_eq!(a.by_name("drop"), Some(1));
        assert_eq!(a.by_name("total"), None);
    }
}
