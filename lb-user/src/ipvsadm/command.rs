//! One parsed and checked ipvsadm invocation: the commands, the options (ipvsadm's `OPTC_*`
//! bits and names) and the service / real server / daemon arguments they fill. Made by
//! [`super::cli::parse`]; read by the command runner (`super`), the listings' flags
//! ([`super::format`]) and the golden skip list.

use std::net::IpAddr;

use crate::model::Fwd;

/// The commands, in ipvsadm's `CMD_*` order (index into [`CMD_NAMES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

pub const CMD_NAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

pub const OPT_NAMES: [&str; 34] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

// Option bit numbers (ipvsadm's OPTC_*).
pub const OPTC_NUMERIC: usize = 0;
pub const OPTC_CONNECTION: usize = 1;
pub const OPTC_SERVICE: usize = 2;
pub const OPTC_SCHEDULER: usize = 3;
pub const OPTC_PERSISTENT: usize = 4;
pub const OPTC_NETMASK: usize = 5;
pub const OPTC_SERVER: usize = 6;
pub const OPTC_FORWARD: usize = 7;
pub const OPTC_WEIGHT: usize = 8;
pub const OPTC_UTHRESHOLD: usize = 9;
pub const OPTC_LTHRESHOLD: usize = 10;
pub const OPTC_MCAST: usize = 11;
pub const OPTC_TIMEOUT: usize = 12;
pub const OPTC_DAEMON: usize = 13;
pub const OPTC_STATS: usize = 14;
pub const OPTC_RATE: usize = 15;
pub const OPTC_THRESHOLDS: usize = 16;
pub const OPTC_PERSISTENTCONN: usize = 17;
pub const OPTC_NOSORT: usize = 18;
pub const OPTC_SYNCID: usize = 19;
pub const OPTC_EXACT: usize = 20;
pub const OPTC_ONEPACKET: usize = 21;
pub const OPTC_PE: usize = 22;
pub const OPTC_SCHED_FLAGS: usize = 23;
pub const OPTC_MCAST_GROUP: usize = 24;
pub const OPTC_MCAST_PORT: usize = 25;
pub const OPTC_MCAST_TTL: usize = 26;
pub const OPTC_SYNC_MAXLEN: usize = 27;
pub const OPTC_TUN_INFO: usize = 28;
pub const OPTC_TUN_TYPE: usize = 29;
pub const OPTC_TUN_PORT: usize = 30;
pub const OPTC_TUN_NOCSUM: usize = 31;
pub const OPTC_TUN_CSUM: usize = 32;
pub const OPTC_TUN_REMCSUM: usize = 33;

pub const fn bit(optc: usize) -> u64 {
    1u64 << optc
}

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

/// `--start-daemon` / `--stop-daemon` parameters (validated, never used: no sync daemon).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonArg {
    pub master: bool,
    pub mcast_ifn: String,
    pub syncid: u32,
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
