//! One parsed and checked ipvsadm invocation: the commands, the options (ipvsadm's `OPTC_*`
//! bits and names) and the service / real server / daemon arguments they fill. Made by
//! [`super::cli::parse`]; read by the command runner (`super`), the listings' flags
//! ([`super::format`]) and the golden skip list.

use std::net::IpAddr;

use crate::model::Fwd;

/// Declares ipvsadm's commands once each: `Variant = "name"` makes the [`Cmd`] variant (in
/// ipvsadm's `CMD_*` order) and its entry in [`CMD_NAMES`] (ipvsadm's `cmdnames`).
macro_rules! commands {
    ($($cmd:ident = $name:literal,)*) => {
        /// The commands, in ipvsadm's `CMD_*` order (index into [`CMD_NAMES`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Cmd {
            $($cmd,)*
        }

        /// Command names by [`Cmd`], for the messages.
        pub const CMD_NAMES: [&str; [$(Cmd::$cmd),*].len()] = [$($name),*];
    };
}

commands! {
    Add = "add-service",
    Edit = "edit-service",
    Del = "delete-service",
    Flush = "flush",
    List = "list",
    AddDest = "add-server",
    DelDest = "delete-server",
    EditDest = "edit-server",
    Timeout = "set",
    StartDaemon = "start-daemon",
    StopDaemon = "stop-daemon",
    Restore = "restore",
    Save = "save",
    Zero = "zero",
}

/// Declares ipvsadm's options once each: `OPTC_X = "name"` makes the bit number `OPTC_X`
/// (the line's index) and its entry in [`OPT_NAMES`] (ipvsadm's `optnames`).
macro_rules! options {
    ($($optc:ident = $name:literal,)*) => {
        /// Option names by bit number, for the messages.
        pub const OPT_NAMES: [&str; [$($name),*].len()] = [$($name),*];
        options!(@number 0; $($optc)*);
    };
    (@number $n:expr;) => {};
    (@number $n:expr; $optc:ident $($rest:ident)*) => {
        pub const $optc: usize = $n;
        options!(@number $n + 1; $($rest)*);
    };
}

// Option bit numbers (ipvsadm's OPTC_*) and names.
options! {
    OPTC_NUMERIC = "numeric",
    OPTC_CONNECTION = "connection",
    OPTC_SERVICE = "service-address",
    OPTC_SCHEDULER = "scheduler",
    OPTC_PERSISTENT = "persistent",
    OPTC_NETMASK = "netmask",
    OPTC_SERVER = "real-server",
    OPTC_FORWARD = "forwarding-method",
    OPTC_WEIGHT = "weight",
    OPTC_UTHRESHOLD = "u-threshold",
    OPTC_LTHRESHOLD = "l-threshold",
    OPTC_MCAST = "mcast-interface",
    OPTC_TIMEOUT = "timeout",
    OPTC_DAEMON = "daemon",
    OPTC_STATS = "stats",
    OPTC_RATE = "rate",
    OPTC_THRESHOLDS = "thresholds",
    OPTC_PERSISTENTCONN = "persistent-conn",
    OPTC_NOSORT = "nosort",
    OPTC_SYNCID = "syncid",
    OPTC_EXACT = "exact",
    OPTC_ONEPACKET = "ops",
    OPTC_PE = "pe",
    OPTC_SCHED_FLAGS = "sched-flags",
    OPTC_MCAST_GROUP = "mcast-group",
    OPTC_MCAST_PORT = "mcast-port",
    OPTC_MCAST_TTL = "mcast-ttl",
    OPTC_SYNC_MAXLEN = "sync-maxlen",
    OPTC_TUN_INFO = "tun-info",
    OPTC_TUN_TYPE = "tun-type",
    OPTC_TUN_PORT = "tun-port",
    OPTC_TUN_NOCSUM = "tun-nocsum",
    OPTC_TUN_CSUM = "tun-csum",
    OPTC_TUN_REMCSUM = "tun-remcsum",
}

/// The bit of option `optc` in [`Entry::options`].
pub const fn bit(optc: usize) -> u64 {
    1u64 << optc
}

// Address families as ipvsadm fills `af` (the C library's values).
pub const AF_UNSPEC: u16 = 0;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// The virtual service as ipvsadm fills `ipvs_service_t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcArg {
    pub af: u16,
    pub protocol: u8,
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub fwmark: u32,
    pub sched: String,
    pub flags: u32,
    pub timeout: u32,
    /// IPv4 mask (host order) or IPv6 prefix length.
    pub netmask: u32,
    pub pe_name: String,
}

/// The real server as ipvsadm fills `ipvs_dest_t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestArg {
    pub af: u16,
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub fwd: Fwd,
    pub weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tun_type: u8,
    pub tun_port: u16,
    pub tun_flags: u16,
}

/// `--start-daemon` / `--stop-daemon` parameters (0 / `None`: the kernel's default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonArg {
    pub master: bool,
    pub mcast_ifn: String,
    pub syncid: u32,
    pub group: Option<IpAddr>,
    pub port: u16,
    pub ttl: u8,
    pub maxlen: u32,
}

/// One parsed and checked ipvsadm invocation (`struct ipvs_command_entry` + options/format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub cmd: Cmd,
    pub options: u64,
    pub format: u32,
    pub svc: SvcArg,
    pub dest: DestArg,
    pub timeouts: [u32; 3],
    pub daemon: DaemonArg,
}

impl Entry {
    pub fn has(&self, optc: usize) -> bool {
        self.options & bit(optc) != 0
    }
}
