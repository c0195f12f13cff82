//! The IPVS table as userspace sees it: virtual services, their real servers, counters.
//!
//! `lbadm` loads a [`Table`] from the pinned maps (`store`), applies commands to it with the
//! kernel's semantics (`ctl`), and commits the result back to the maps in one step. The ids are
//! the data plane's array indexes; everything else mirrors IPVS's `ip_vs_service_user` /
//! `ip_vs_dest_user` and the counters `ipvsadm -L` prints.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Transport protocol of a non-fwmark service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => lb_common::IPPROTO_TCP,
            Proto::Udp => lb_common::IPPROTO_UDP,
            Proto::Sctp => lb_common::IPPROTO_SCTP,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            lb_common::IPPROTO_TCP => Some(Proto::Tcp),
            lb_common::IPPROTO_UDP => Some(Proto::Udp),
            lb_common::IPPROTO_SCTP => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// `TCP`, `UDP`, `SCTP`: as ipvsadm's listing names it.
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }
}

/// Address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Af {
    Inet,
    Inet6,
}

impl Af {
    pub fn of(addr: &IpAddr) -> Af {
        match addr {
            IpAddr::V4(_) => Af::Inet,
            IpAddr::V6(_) => Af::Inet6,
        }
    }
}

/// How a virtual service is identified (`-t/-u/--sctp-service addr:port` or `-f mark [-6]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SvcKey {
    Inet { proto: Proto, addr: IpAddr, port: u16 },
    Fwmark { mark: u32, af: Af },
}

impl SvcKey {
    pub fn af(&self) -> Af {
        match self {
            SvcKey::Inet { addr, .. } => Af::of(addr),
            SvcKey::Fwmark { af, .. } => *af,
        }
    }
}

/// `TCP 192.168.88.15:80` / `FWM 100`: how lbd's log, `lbd status` and the metrics name a
/// service (ipvsadm -Ln's names, with one blank).
pub fn svc_name(k: &SvcKey) -> String {
    match k {
        SvcKey::Inet { proto, addr, port } => format!("{} {}", proto.name(), dest_name(addr, *port)),
        SvcKey::Fwmark { mark, .. } => format!("FWM {mark}"),
    }
}

/// `192.168.88.100:80` / `[2001:db8::1]:80`: how lbd's log and the metrics name a real server.
pub fn dest_name(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V6(a) => format!("[{a}]:{port}"),
        a => format!("{a}:{port}"),
    }
}

/// Forwarding method of a real server (`-m`, `-i`, `-g`; `Local` is IPVS's legacy LOCALNODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fwd {
    Masq,
    Local,
    Tunnel,
    Route,
}

impl Fwd {
    pub const fn code(self) -> u8 {
        match self {
            Fwd::Masq => lb_common::FWD_MASQ,
            Fwd::Local => lb_common::FWD_LOCAL,
            Fwd::Tunnel => lb_common::FWD_TUNNEL,
            Fwd::Route => lb_common::FWD_DROUTE,
        }
    }

    pub fn from_code(c: u8) -> Option<Fwd> {
        match c {
            lb_common::FWD_MASQ => Some(Fwd::Masq),
            lb_common::FWD_LOCAL => Some(Fwd::Local),
            lb_common::FWD_TUNNEL => Some(Fwd::Tunnel),
            lb_common::FWD_DROUTE => Some(Fwd::Route),
            _ => None,
        }
    }
}

/// `--tun-type` and its options (only meaningful with `Fwd::Tunnel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tunnel {
    /// 0 ipip, 1 gue, 2 gre (IPVS's `IP_VS_CONN_F_TUNNEL_TYPE_*`).
    pub kind: u8,
    pub port: u16,
    /// IPVS's `IP_VS_TUNNEL_ENCAP_FLAG_*`: 0 nocsum, 1 csum, 2 remcsum.
    pub flags: u16,
}

/// The counters IPVS keeps per service, per dest and globally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// Rates as IPVS's estimator reports them (per second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// One real server of one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dest {
    /// Data-plane id (index into the per-dest arrays).
    pub id: u32,
    pub addr: IpAddr,
    pub port: u16,
    pub fwd: Fwd,
    pub weight: i32,
    /// The last non-zero weight (IPVS `last_weight`): set on add and by edits to a non-zero
    /// weight; an edit to 0 keeps it. mh builds its table by it.
    pub last_weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tunnel: Tunnel,
    /// Insertion sequence (list order is descending `seq`).
    pub seq: u64,
    /// IPVS's OVERLOAD flag.
    pub overloaded: bool,
    /// Its address is local to the director: the data plane hands its packets to the
    /// director's own stack (`FWD_LOCAL`), whatever `fwd` says (which is what is listed).
    #[serde(default)]
    pub local: bool,
    pub active_conns: u32,
    pub inact_conns: u32,
    pub persist_conns: u32,
    pub stats: Counters,
    pub rates: Rates,
}

/// One virtual service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Data-plane id (index into the per-service arrays).
    pub id: u32,
    pub key: SvcKey,
    /// Scheduler name (`rr`, `wlc`, ...).
    pub sched: String,
    /// `lb_common::SVC_F_*` (persistent, one-packet, scheduler flags 1-3).
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub timeout: u32,
    /// Persistence netmask: IPv4 mask in host order (e.g. 0xffffff00), or IPv6 prefix length.
    pub netmask: u32,
    /// Persistence engine name (`--pe`), empty when none.
    pub pe_name: String,
    /// Real servers in IPVS's list order: newest first.
    pub dests: Vec<Dest>,
    pub stats: Counters,
    pub rates: Rates,
}

/// `--set tcp tcpfin udp` (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        use lb_common::tcp_state::*;
        Timeouts {
            tcp: DEFAULT_TIMEOUTS[STATE_ESTABLISHED as usize],
            tcp_fin: DEFAULT_TIMEOUTS[STATE_FIN_WAIT as usize],
            udp: DEFAULT_TIMEOUTS[STATE_UDP as usize],
        }
    }
}

/// One entry of `ipvsadm -Lc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    /// `TCP`, `UDP`, `SCTP`, or `IP` for fwmark templates.
    pub proto: &'static str,
    /// Seconds until expiry.
    pub expires: u32,
    pub state: &'static str,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

/// The whole table: what ipvsadm's kernel holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Services in creation order (listings sort them; see ipvsadm's comparators).
    pub services: Vec<Service>,
    pub timeouts: Timeouts,
    /// Global totals (`-Ln --stats` has none, but `-Z` zeroes them).
    pub totals: Counters,
    /// Next dest insertion sequence number.
    pub next_seq: u64,
    /// Ids of deleted dests (IPVS's trash): connections may still refer to them, so they are
    /// not handed to new dests. Filled by the store; deletions add to it.
    pub reserved_dest_ids: Vec<u32>,
    /// The trash itself: re-adding the same real server to the same service revives it (its
    /// id, connections and counters), as `ip_vs_trash_get_dest` does.
    pub trash: Vec<TrashedDest>,
    /// The connection sync daemons started (`--start-daemon`), as `-L --daemon` lists them.
    #[serde(default)]
    pub daemons: SyncDaemons,
}

/// The sync daemons: at most one master and one backup, both at once if asked (IPVS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDaemons {
    pub master: Option<SyncDaemonCfg>,
    pub backup: Option<SyncDaemonCfg>,
    /// Starts so far (the last start's generation).
    #[serde(default)]
    pub starts: u32,
}

/// One sync daemon's settings, completed as the kernel completes them at start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDaemonCfg {
    pub ifname: String,
    pub ifindex: u32,
    pub syncid: u8,
    pub maxlen: u32,
    pub group: IpAddr,
    pub port: u16,
    pub ttl: u8,
    /// Bumped at every start (lbd restarts a daemon whose generation changed).
    pub generation: u32,
}

/// A deleted dest that connections may still use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrashedDest {
    pub svc: SvcKey,
    /// The id of the service it belonged to: not handed to a new service while the dest is in
    /// the trash (the dest's connections still count on that service, and the trash names its
    /// service through the id).
    #[serde(default)]
    pub svc_id: u32,
    pub addr: IpAddr,
    pub port: u16,
    pub id: u32,
}
