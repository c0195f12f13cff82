//! IPVS's sync message format (kernel `ip_vs_sync.c`), both versions: what a master sends and
//! what a backup accepts, byte for byte. Everything here is plain data: no maps, no sockets.
//!
//! Version 1 (the default): an 8-byte header `reserved=0 | syncid | size (be16) | nr_conns |
//! version=1 | spare (2 bytes, 0)`, then entries, each 4-byte aligned (zero padding in between,
//! none after the last): `type (bit 0: IPv6) | protocol | ver_size (be16: version in the top 4
//! bits, always 0, size of the entry with its options in the rest) | flags (be32) | state (be16) |
//! cport | vport | dport | fwmark (be32) | timeout (be32, seconds) | caddr | vaddr | daddr`
//! (addresses 4 or 16 bytes), then options as type/length/data (SEQ_DATA, PE_DATA, PE_NAME).
//!
//! Version 0: a 4-byte header `nr_conns | syncid | size (be16)`, then 24-byte IPv4 entries
//! `reserved | protocol | cport | vport | dport | caddr | vaddr | daddr | flags (be16) | state
//! (be16)`, each followed by 24 bytes of sequence data when its flags carry SEQ_MASK.
//!
//! Hand-written: no crate speaks IPVS's sync protocol.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

/// `IP_VS_CONN_F_*` (include/uapi/linux/ip_vs.h): the flags word of a sync entry.
pub mod flags {
    pub const FWD_MASK: u32 = 0x0007;
    pub const MASQ: u32 = 0x0000;
    pub const LOCALNODE: u32 = 0x0001;
    pub const TUNNEL: u32 = 0x0002;
    pub const DROUTE: u32 = 0x0003;
    pub const BYPASS: u32 = 0x0004;
    pub const SYNC: u32 = 0x0020;
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const OUT_SEQ: u32 = 0x0200;
    pub const IN_SEQ: u32 = 0x0400;
    pub const SEQ_MASK: u32 = 0x0600;
    pub const NO_CPORT: u32 = 0x0800;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
    /// The bits a backup takes from a message (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
    /// The bits a backup updates on a connection it has (`IP_VS_CONN_F_BACKUP_UPD_MASK`).
    pub const BACKUP_UPD_MASK: u32 = INACTIVE | SEQ_MASK;
}

/// Version byte of a version 1 header (`SYNC_PROTO_VER`).
pub const SYNC_PROTO_VER: u8 = 1;
pub const HEADER_V1_LEN: usize = 8;
pub const HEADER_V0_LEN: usize = 4;
/// `sizeof(struct ip_vs_sync_v4)` / `ip_vs_sync_v6`.
pub const ENTRY_V4_LEN: usize = 36;
pub const ENTRY_V6_LEN: usize = 72;
/// `SIMPLE_CONN_SIZE` / `FULL_CONN_SIZE` of version 0.
pub const ENTRY_V0_LEN: usize = 24;
pub const SEQ_OPT_LEN: usize = 24;
/// Option types (`IPVS_OPT_*`); `OPT_F_PARAM` marks an optional one (skipped when unknown).
pub const OPT_SEQ_DATA: u8 = 1;
pub const OPT_PE_DATA: u8 = 2;
pub const OPT_PE_NAME: u8 = 3;
pub const OPT_F_PARAM: u8 = 1 << (7 - 1);
/// `IP_VS_PEDATA_MAXLEN`, `IP_VS_PENAME_MAXLEN`.
pub const PEDATA_MAXLEN: usize = 255;
pub const PENAME_MAXLEN: usize = 16;
/// `IP_VS_CTPL_S_LAST`: template states are NONE (0) and ASSURED (1).
pub const TEMPLATE_STATES: u16 = 2;
/// The most entries one message carries: `nr_conns` is one byte (the kernel lets it wrap past
/// 255, losing entries at the backup; we start a new message instead).
pub const MAX_CONNS_PER_MESSAGE: usize = 255;

/// A connection's TCP sequence adjustment (`struct ip_vs_seq`), host order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seq {
    pub init_seq: u32,
    pub delta: u32,
    pub previous_delta: u32,
}

/// One connection (or persistence template) as a sync message carries it. Ports in host order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConn {
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` ([`flags`]).
    pub flags: u32,
    /// IPVS's state number for the protocol (TCP: `IP_VS_TCP_S_*`; UDP: 0; templates:
    /// `IP_VS_CTPL_S_*`).
    pub state: u16,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    /// Version 1 only (0 in version 0).
    pub fwmark: u32,
    /// Seconds; version 1 only (0 in version 0: the backup uses its own timeouts).
    pub timeout: u32,
    /// All three of the same family.
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
    /// In/out sequence data, sent when `flags` has SEQ_MASK bits.
    pub seq: Option<[Seq; 2]>,
    pub pe_data: Option<Vec<u8>>,
    pub pe_name: Option<Vec<u8>>,
}

impl SyncConn {
    fn is_v6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    /// Its length in a version 1 message, options included, padding excluded.
    pub fn len_v1(&self) -> usize {
        let mut len = if self.is_v6() { ENTRY_V6_LEN } else { ENTRY_V4_LEN };
        if self.flags & flags::SEQ_MASK != 0 {
            len += SEQ_OPT_LEN + 2;
        }
        if let Some(d) = &self.pe_data {
            len += d.len() + 2;
            if let Some(n) = &self.pe_name {
                len += n.len() + 2;
            }
        }
        len
    }

    /// Its length in a version 0 message.
    pub fn len_v0(&self) -> usize {
        if self.flags & flags::SEQ_MASK != 0 { ENTRY_V0_LEN + SEQ_OPT_LEN } else { ENTRY_V0_LEN }
    }

    fn encode_v1(&self, out: &mut Vec<u8>) {
        let len = self.len_v1();
        out.push(if self.is_v6() { 1 } else { 0 }); // type: bit 0 = IPv6
        out.push(self.protocol);
        out.extend_from_slice(&((len & 0x0fff) as u16).to_be_bytes()); // version 0 | size
        // The kernel never sends HASHED (a local bookkeeping bit).
        out.extend_from_slice(&(self.flags & !flags::HASHED).to_be_bytes());
        out.extend_from_slice(&self.state.to_be_bytes());
        out.extend_from_slice(&self.cport.to_be_bytes());
        out.extend_from_slice(&self.vport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&self.fwmark.to_be_bytes());
        out.extend_from_slice(&self.timeout.to_be_bytes());
        for a in [self.caddr, self.vaddr, self.daddr] {
            put_addr(out, a, self.is_v6());
        }
        if self.flags & flags::SEQ_MASK != 0 {
            out.push(OPT_SEQ_DATA);
            out.push(SEQ_OPT_LEN as u8);
            put_seq(out, &self.seq.unwrap_or_default());
        }
        if let Some(d) = &self.pe_data {
            out.push(OPT_PE_DATA);
            out.push(d.len() as u8);
            out.extend_from_slice(d);
            if let Some(n) = &self.pe_name {
                out.push(OPT_PE_NAME);
                out.push(n.len() as u8);
                out.extend_from_slice(n);
            }
        }
    }

    fn encode_v0(&self, out: &mut Vec<u8>) {
        out.push(0); // reserved
        out.push(self.protocol);
        out.extend_from_slice(&self.cport.to_be_bytes());
        out.extend_from_slice(&self.vport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        for a in [self.caddr, self.vaddr, self.daddr] {
            put_addr(out, a, false);
        }
        out.extend_from_slice(&((self.flags & !flags::HASHED) as u16).to_be_bytes());
        out.extend_from_slice(&self.state.to_be_bytes());
        if self.flags & flags::SEQ_MASK != 0 {
            put_seq(out, &self.seq.unwrap_or_default());
        }
    }
}

fn put_addr(out: &mut Vec<u8>, a: IpAddr, v6: bool) {
    match (a, v6) {
        (IpAddr::V4(a), false) => out.extend_from_slice(&a.octets()),
        (IpAddr::V6(a), true) => out.extend_from_slice(&a.octets()),
        (IpAddr::V4(a), true) => out.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(_), false) => out.extend_from_slice(&[0; 4]),
    }
}

fn put_seq(out: &mut Vec<u8>, s: &[Seq; 2]) {
    for q in s {
        for w in [q.init_seq, q.delta, q.previous_delta] {
            out.extend_from_slice(&w.to_be_bytes());
        }
    }
}

/// Which message format a master sends (`sync_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V0,
    V1,
}

/// A message being filled.
struct Filling {
    version: Version,
    buf: Vec<u8>,
    nr: usize,
    /// Its capacity, fixed when it was started: `max(first entry + header, maxlen)`.
    end: usize,
    started: Instant,
}

/// The master's current buffer, filled as the kernel fills its `ip_vs_sync_buff`: an entry that
/// does not fit (or one of the other version) sends the buffer first; a buffer holds at least
/// one entry however long (the kernel sizes it `max(entry + header, maxlen)`).
pub struct Builder {
    syncid: u8,
    maxlen: usize,
    cur: Option<Filling>,
}

impl Builder {
    pub fn new(syncid: u8, maxlen: usize) -> Builder {
        Builder { syncid, maxlen, cur: None }
    }

    /// When the partly filled message was started, if one waits.
    pub fn started(&self) -> Option<Instant> {
        self.cur.as_ref().map(|f| f.started)
    }

    /// Adds `c` in version `v`; returns the message it completed, if any. Version 0 carries
    /// IPv4 only: an IPv6 entry is dropped there (returns `None` and does nothing), as the
    /// kernel does.
    pub fn add(&mut self, v: Version, c: &SyncConn) -> Option<Vec<u8>> {
        if v == Version::V0 && c.is_v6() {
            return None;
        }
        let (len, hdr) = match v {
            Version::V1 => (c.len_v1(), HEADER_V1_LEN),
            Version::V0 => (c.len_v0(), HEADER_V0_LEN),
        };
        let mut done = None;
        if let Some(f) = &self.cur {
            // Version 1 entries start 4-byte aligned.
            let pad = if f.version == Version::V1 { (4 - f.buf.len() % 4) % 4 } else { 0 };
            if f.version != v || f.buf.len() + pad + len > f.end || f.nr >= MAX_CONNS_PER_MESSAGE {
                done = self.take();
            }
        }
        let syncid = self.syncid;
        let end = self.maxlen.max(hdr + len);
        let f = self.cur.get_or_insert_with(|| {
            let mut buf = Vec::with_capacity(end);
            match v {
                // reserved (0: version 0 receivers drop it), syncid, size, nr_conns, version, spare
                Version::V1 => buf.extend_from_slice(&[0, syncid, 0, 0, 0, SYNC_PROTO_VER, 0, 0]),
                // nr_conns, syncid, size
                Version::V0 => buf.extend_from_slice(&[0, syncid, 0, 0]),
            }
            Filling { version: v, buf, nr: 0, end, started: Instant::now() }
        });
        match v {
            Version::V1 => {
                while !f.buf.len().is_multiple_of(4) {
                    f.buf.push(0);
                }
                c.encode_v1(&mut f.buf);
            }
            Version::V0 => c.encode_v0(&mut f.buf),
        }
        f.nr += 1;
        done
    }

    /// The partly filled message, finished (size and count written), leaving none.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        let Filling { version, mut buf, nr, .. } = self.cur.take()?;
        let size = (buf.len() as u16).to_be_bytes();
        buf[2..4].copy_from_slice(&size);
        match version {
            Version::V1 => buf[4] = nr as u8,
            Version::V0 => buf[0] = nr as u8,
        }
        Some(buf)
    }
}

/// Why a whole message was dropped (`ip_vs_process_message`'s checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Shorter than a version 0 header.
    TooShort,
    /// Its size field is not its length.
    BadSize,
    /// Another syncid than the backup's (a backup with syncid 0 takes all).
    OtherSyncid,
    /// An entry runs past the end, or its options do not parse.
    Bogus,
    /// An entry with a version other than 0 in `ver_size`.
    UnknownVersion,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::TooShort => "message header too short",
            Drop::BadSize => "bogus message size",
            Drop::OtherSyncid => "other syncid",
            Drop::Bogus => "bogus entry",
            Drop::UnknownVersion => "unknown entry version",
        }
    }
}

/// Why one entry was skipped (the rest of the message is still read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A protocol IPVS does not know.
    Protocol,
    /// A state number past the protocol's (or the template's) last.
    State,
    /// A mandatory option of an unknown type.
    UnknownOption,
    /// Persistence-engine data without an engine name (or an engine xlb does not have).
    PeData,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Protocol => "unsupported protocol",
            Skip::State => "invalid state",
            Skip::UnknownOption => "unknown mandatory option",
            Skip::PeData => "persistence engine data",
        }
    }
}

/// A decoded message: the entries to apply, in order, and those skipped. Entries before a
/// fatal error of a version 1 message were applied by the kernel already; `dropped` says so.
#[derive(Debug, Default)]
pub struct Decoded {
    pub version: Option<Version>,
    pub conns: Vec<SyncConn>,
    pub skipped: Vec<Skip>,
    pub dropped: Option<Drop>,
}

/// Number of states of IPVS protocol `p` (`ip_vs_proto_get(p)->num_states`), `None` for a
/// protocol IPVS does not handle.
fn num_states(p: u8) -> Option<u16> {
    match p {
        6 => Some(11),      // TCP: IP_VS_TCP_S_LAST
        17 => Some(1),      // UDP: IP_VS_UDP_S_LAST
        132 => Some(13),    // SCTP: IP_VS_SCTP_S_LAST
        50 | 51 => Some(1), // ESP, AH
        _ => None,
    }
}

/// The checks of an entry's protocol and state, common to both versions.
fn check_state(protocol: u8, f: u32, state: u16) -> Option<Skip> {
    if f & flags::TEMPLATE == 0 {
        match num_states(protocol) {
            None => Some(Skip::Protocol),
            Some(n) if state >= n => Some(Skip::State),
            Some(_) => None,
        }
    } else if state >= TEMPLATE_STATES {
        Some(Skip::State)
    } else {
        None
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn v4(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
}

fn v6(b: &[u8], at: usize) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(o))
}

fn get_seq(b: &[u8]) -> [Seq; 2] {
    let s = |at| Seq { init_seq: be32(b, at), delta: be32(b, at + 4), previous_delta: be32(b, at + 8) };
    [s(0), s(12)]
}

/// Reads a received message as a backup with syncid `syncid` does.
pub fn decode(buf: &[u8], syncid: u8) -> Decoded {
    let mut d = Decoded::default();
    if buf.len() < HEADER_V0_LEN {
        d.dropped = Some(Drop::TooShort);
        return d;
    }
    if buf.len() != be16(buf, 2) as usize {
        d.dropped = Some(Drop::BadSize);
        return d;
    }
    if syncid != 0 && buf[1] != syncid {
        d.dropped = Some(Drop::OtherSyncid);
        return d;
    }
    // A version 1 header: reserved 0, version 1, spare 0 (the kernel reads those 8 bytes even
    // of a 4..7-byte message; there they cannot all match, as size = length < 8 leaves no room).
    if buf.len() >= HEADER_V1_LEN && buf[0] == 0 && buf[5] == SYNC_PROTO_VER && buf[6] == 0 && buf[7] == 0 {
        d.version = Some(Version::V1);
        decode_v1(buf, &mut d);
    } else {
        d.version = Some(Version::V0);
        decode_v0(buf, &mut d);
    }
    d
}

fn decode_v0(buf: &[u8], d: &mut Decoded) {
    let nr = buf[0] as usize;
    let mut p = HEADER_V0_LEN;
    for _ in 0..nr {
        if p + ENTRY_V0_LEN > buf.len() {
            d.dropped = Some(Drop::Bogus);
            return;
        }
        let s = &buf[p..];
        let f = (be16(s, 20) as u32 | flags::SYNC) & !flags::HASHED;
        let seq = if f & flags::SEQ_MASK != 0 {
            if p + ENTRY_V0_LEN + SEQ_OPT_LEN > buf.len() {
                d.dropped = Some(Drop::Bogus);
                return;
            }
            Some(get_seq(&s[ENTRY_V0_LEN..]))
        } else {
            None
        };
        p += ENTRY_V0_LEN + if seq.is_some() { SEQ_OPT_LEN } else { 0 };
        let state = be16(s, 22);
        if let Some(skip) = check_state(s[1], f, state) {
            d.skipped.push(skip);
            continue;
        }
        d.conns.push(SyncConn {
            protocol: s[1],
            flags: f,
            state,
            cport: be16(s, 2),
            vport: be16(s, 4),
            dport: be16(s, 6),
            fwmark: 0,
            timeout: 0,
            caddr: v4(s, 8),
            vaddr: v4(s, 12),
            daddr: v4(s, 16),
            seq,
            pe_data: None,
            pe_name: None,
        });
    }
}

fn decode_v1(buf: &[u8], d: &mut Decoded) {
    let nr = buf[4] as usize;
    let mut next = HEADER_V1_LEN;
    for _ in 0..nr {
        let p = next;
        if p + ENTRY_V4_LEN > buf.len() {
            d.dropped = Some(Drop::Bogus);
            return;
        }
        let ver_size = be16(buf, p + 2);
        let size = (ver_size & 0x0fff) as usize;
        let end = p + size;
        if end > buf.len() {
            d.dropped = Some(Drop::Bogus);
            return;
        }
        if ver_size >> 12 != 0 {
            d.dropped = Some(Drop::UnknownVersion);
            return;
        }
        match decode_entry(&buf[p..end]) {
            Err(()) => {
                d.dropped = Some(Drop::Bogus);
                return;
            }
            Ok(Err(skip)) => d.skipped.push(skip),
            Ok(Ok(c)) => d.conns.push(c),
        }
        // The next entry starts 4-byte aligned.
        next = p + ((size + 3) & !3);
    }
}

/// One version 1 entry (`s`: exactly its `size` bytes). `Err(())`: the whole message is
/// dropped (`ip_vs_proc_sync_conn` returning < 0); `Ok(Err(_))`: this entry is skipped.
fn decode_entry(s: &[u8]) -> Result<Result<SyncConn, Skip>, ()> {
    // A size smaller than the fixed part is bogus (the kernel's `p > msg_end`).
    let is_v6 = match s.first() {
        Some(t) if t & 1 != 0 => true,
        Some(0) => false,
        _ => return Err(()),
    };
    let fixed = if is_v6 { ENTRY_V6_LEN } else { ENTRY_V4_LEN };
    if fixed > s.len() {
        return Err(());
    }
    let mut seq = None;
    let mut pe_data: Option<Vec<u8>> = None;
    let mut pe_name: Option<Vec<u8>> = None;
    let mut p = fixed;
    while p < s.len() {
        if p + 2 > s.len() {
            return Err(());
        }
        let (ptype, plen) = (s[p], s[p + 1] as usize);
        p += 2;
        if plen == 0 || p + plen > s.len() {
            return Err(());
        }
        let data = &s[p..p + plen];
        match ptype & !OPT_F_PARAM {
            OPT_SEQ_DATA => {
                if plen != SEQ_OPT_LEN || seq.is_some() {
                    return Err(());
                }
                seq = Some(get_seq(data));
            }
            OPT_PE_DATA => {
                if plen > PEDATA_MAXLEN || pe_data.is_some() {
                    return Err(());
                }
                pe_data = Some(data.to_vec());
            }
            OPT_PE_NAME => {
                if plen > PENAME_MAXLEN || pe_name.is_some() {
                    return Err(());
                }
                pe_name = Some(data.to_vec());
            }
            _ if ptype & OPT_F_PARAM == 0 => {
                // The kernel skips the entry at once here, the rest of its options unread.
                return Ok(Err(Skip::UnknownOption));
            }
            _ => {}
        }
        p += plen;
    }
    let f = (be32(s, 4) & flags::BACKUP_MASK) | flags::SYNC;
    let state = be16(s, 8);
    if let Some(skip) = check_state(s[1], f, state) {
        return Ok(Err(skip));
    }
    // PE data needs its engine's name (and xlb has no engine to hand it to: see backup.rs).
    if pe_data.is_some() && pe_name.is_none() {
        return Ok(Err(Skip::PeData));
    }
    // Offsets: 0 type, 1 protocol, 2 ver_size, 4 flags, 8 state, 10 cport, 12 vport, 14 dport,
    // 16 fwmark, 20 timeout, 24 addresses.
    let (caddr, vaddr, daddr) = if is_v6 { (v6(s, 24), v6(s, 40), v6(s, 56)) } else { (v4(s, 24), v4(s, 28), v4(s, 32)) };
    Ok(Ok(SyncConn {
        protocol: s[1],
        flags: f,
        state,
        cport: be16(s, 10),
        vport: be16(s, 12),
        dport: be16(s, 14),
        fwmark: be32(s, 16),
        timeout: be32(s, 20),
        caddr,
        vaddr,
        daddr,
        seq,
        pe_data,
        pe_name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp4() -> SyncConn {
        SyncConn {
            protocol: 6,
            flags: flags::DROUTE | flags::NOOUTPUT,
            state: 1,
            cport: 40000,
            vport: 80,
            dport: 8080,
            fwmark: 0,
            timeout: 900,
            caddr: "10.0.0.1".parse().unwrap(),
            vaddr: "10.0.0.100".parse().unwrap(),
            daddr: "10.0.1.2".parse().unwrap(),
            seq: None,
            pe_data: None,
            pe_name: None,
        }
    }

    /// The kernel's layout of one IPv4 TCP entry in a version 1 message, by hand.
    #[test]
    fn v1_ipv4_entry_bytes() {
        let mut b = Builder::new(7, 1472);
        assert!(b.add(Version::V1, &tcp4()).is_none());
        let m = b.take().unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            0, 7, 0, 44,          // 0: reserved, syncid, size = 8 + 36
            1, 1, 0, 0,           // 4: nr_conns, version 1, spare
            0, 6, 0, 36,          // 8: type (IPv4), protocol TCP, ver_size = version 0 | 36
            0, 0, 0x00, 0x83,     // 12: flags DROUTE | NOOUTPUT
            0, 1,                 // 16: state ESTABLISHED
            0x9c, 0x40,           // 18: cport 40000
            0, 80, 0x1f, 0x90,    // 20: vport 80, dport 8080
            0, 0, 0, 0,           // 24: fwmark
            0, 0, 0x03, 0x84,     // 28: timeout 900
            10, 0, 0, 1,          // 32: caddr
            10, 0, 0, 100,        // 36: vaddr
            10, 0, 1, 2,          // 40: daddr
        ];
        assert_eq!(m, want);
        let d = decode(&m, 0);
        assert_eq!(d.dropped, None);
        let mut back = tcp4();
        back.flags |= flags::SYNC;
        assert_eq!(d.conns, vec![back]);
    }

    /// Version 0: 4-byte header, 24-byte entry, sequence data after it.
    #[test]
    fn v0_entry_bytes_and_seq() {
        let mut c = tcp4();
        c.flags |= flags::IN_SEQ;
        c.seq = Some([Seq { init_seq: 1, delta: 2, previous_delta: 3 }, Seq { init_seq: 4, delta: 5, previous_delta: 6 }]);
        c.timeout = 0;
        let mut b = Builder::new(3, 1472);
        assert!(b.add(Version::V0, &c).is_none());
        let m = b.take().unwrap();
        #[rustfmt::skip]
        let mut want: Vec<u8> = vec![
            1, 3, 0, 52,          // 0: nr_conns, syncid, size = 4 + 24 + 24
            0, 6,                 // 4: reserved, protocol
            0x9c, 0x40, 0, 80, 0x1f, 0x90, // 6: cport, vport, dport
            10, 0, 0, 1, 10, 0, 0, 100, 10, 0, 1, 2, // 12: caddr, vaddr, daddr
            0x04, 0x83, 0, 1,     // 24: flags (16 bits), state
        ];
        for w in 1u32..=6 {
            want.extend_from_slice(&w.to_be_bytes()); // 28: in_seq, out_seq
        }
        assert_eq!(m, want);
        let d = decode(&m, 3);
        assert_eq!(d.version, Some(Version::V0));
        let mut back = c.clone();
        back.flags |= flags::SYNC;
        assert_eq!(d.conns, vec![back]);
        // Another syncid than the backup's is dropped; syncid 0 takes all.
        assert_eq!(decode(&m, 4).dropped, Some(Drop::OtherSyncid));
        assert_eq!(decode(&m, 0).conns.len(), 1);
    }

    /// IPv6 entries with options; padding between entries, none after the last.
    #[test]
    fn v1_ipv6_options_and_padding() {
        let mut c = tcp4();
        c.caddr = "2001:db8::1".parse().unwrap();
        c.vaddr = "2001:db8::100".parse().unwrap();
        c.daddr = "2001:db8:1::2".parse().unwrap();
        c.pe_data = Some(vec![1, 2, 3]);
        c.pe_name = Some(b"sip".to_vec());
        let mut b = Builder::new(0, 1472);
        b.add(Version::V1, &c);
        b.add(Version::V1, &tcp4());
        let m = b.take().unwrap();
        // 8 + (72 + 5 + 5 = 82, padded to 84) + 36
        assert_eq!(m.len(), 8 + 84 + 36);
        assert_eq!(&m[8..12], &[1, 6, 0, 82]);
        assert_eq!(&m[8 + 72..8 + 82], &[2, 3, 1, 2, 3, 3, 3, b's', b'i', b'p']);
        assert_eq!(&m[90..92], &[0, 0]); // padding
        assert_eq!(m[92], 0); // next entry: IPv4
        let d = decode(&m, 0);
        assert_eq!(d.dropped, None);
        assert_eq!(d.conns.len(), 2);
        assert_eq!(d.conns[0].caddr, c.caddr);
        assert_eq!(d.conns[0].pe_name.as_deref(), Some(&b"sip"[..]));
        // Version 0 carries no IPv6.
        let mut b = Builder::new(0, 1472);
        assert!(b.add(Version::V0, &c).is_none());
        assert!(b.take().is_none());
    }

    /// Messages hold what fits in maxlen, as the kernel's buffers; a version switch sends the
    /// buffer of the other version.
    #[test]
    fn batching() {
        // Header 8 + 36, then each further entry 36 (already aligned): 8 + 3 * 36 = 116.
        let mut b = Builder::new(0, 116);
        let mut sent = Vec::new();
        for _ in 0..7 {
            sent.extend(b.add(Version::V1, &tcp4()));
        }
        sent.extend(b.take());
        let counts: Vec<u8> = sent.iter().map(|m| m[4]).collect();
        assert_eq!(counts, vec![3, 3, 1]);
        assert!(sent.iter().all(|m| m.len() <= 116));
        // A maxlen smaller than one entry still sends it, alone.
        let mut b = Builder::new(0, 10);
        assert!(b.add(Version::V1, &tcp4()).is_none());
        assert_eq!(b.add(Version::V1, &tcp4()).map(|m| m.len()), Some(44));
        // Version change.
        let mut b = Builder::new(0, 1472);
        b.add(Version::V1, &tcp4());
        let m = b.add(Version::V0, &tcp4()).unwrap();
        assert_eq!(m[5], SYNC_PROTO_VER);
        let m = b.take().unwrap();
        assert_eq!((m[0], m.len()), (1, 28));
        // No more than 255 entries in one message (nr_conns is a byte).
        let mut b = Builder::new(0, 65000);
        let mut n = 0;
        for _ in 0..300 {
            if let Some(m) = b.add(Version::V1, &tcp4()) {
                n += 1;
                assert_eq!(m[4], 255);
            }
        }
        assert_eq!(n, 1);
    }

    #[test]
    fn rejects() {
        let mut b = Builder::new(0, 1472);
        b.add(Version::V1, &tcp4());
        let good = b.take().unwrap();
        assert_eq!(decode(&good[..3], 0).dropped, Some(Drop::TooShort));
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(decode(&bad, 0).dropped, Some(Drop::BadSize));
        // Entry size past the end.
        let mut bad = good.clone();
        bad[11] = 40;
        assert_eq!(decode(&bad, 0).dropped, Some(Drop::Bogus));
        // Entry version 1.
        let mut bad = good.clone();
        bad[10] = 0x10;
        assert_eq!(decode(&bad, 0).dropped, Some(Drop::UnknownVersion));
        // Unknown type byte.
        let mut bad = good.clone();
        bad[8] = 2;
        assert_eq!(decode(&bad, 0).dropped, Some(Drop::Bogus));
        // Bad TCP state: skipped, not dropped.
        let mut bad = good.clone();
        bad[17] = 11;
        let d = decode(&bad, 0);
        assert_eq!((d.dropped, d.skipped.as_slice(), d.conns.len()), (None, &[Skip::State][..], 0));
        // Unknown protocol.
        let mut bad = good.clone();
        bad[9] = 99;
        assert_eq!(decode(&bad, 0).skipped, vec![Skip::Protocol]);
        // Template states: NONE and ASSURED only.
        let mut t = tcp4();
        t.flags = flags::TEMPLATE;
        t.state = 2;
        let mut b = Builder::new(0, 1472);
        b.add(Version::V1, &t);
        assert_eq!(decode(&b.take().unwrap(), 0).skipped, vec![Skip::State]);
        // Unknown mandatory option skips the entry; an optional one is ignored.
        let mut c = tcp4();
        c.pe_data = Some(vec![9]);
        c.pe_name = Some(b"x".to_vec());
        let mut b = Builder::new(0, 1472);
        b.add(Version::V1, &c);
        let m = b.take().unwrap();
        let mut opt = m.clone();
        opt[8 + 36] = 5;
        assert_eq!(decode(&opt, 0).skipped, vec![Skip::UnknownOption]);
        opt[8 + 36] = 5 | OPT_F_PARAM;
        assert_eq!(decode(&opt, 0).conns.len(), 1);
        // Zero-length option.
        let mut opt = m.clone();
        opt[8 + 37] = 0;
        assert_eq!(decode(&opt, 0).dropped, Some(Drop::Bogus));
        // A v0 message whose count promises more than it holds.
        let mut b = Builder::new(0, 1472);
        b.add(Version::V0, &tcp4());
        let mut m = b.take().unwrap();
        m[0] = 2;
        let d = decode(&m, 0);
        assert_eq!((d.conns.len(), d.dropped), (1, Some(Drop::Bogus)));
    }

    /// A datagram of kernel IPVS (Linux 6.12, `--start-daemon master --syncid 9`) for one HTTP
    /// request through a persistent NAT service, captured in the oracle guest: the template
    /// goes with every client packet (IPVS syncs `cp->control` on each one), the
    /// connection when it reached ESTABLISHED and TIME_WAIT. Our decoder reads it as the kernel's
    /// backup does; our encoder, given the same entries, writes the same bytes.
    #[test]
    fn kernel_master_datagram() {
        let kernel_master: String = [
            "0009012808010000", // reserved, syncid 9, size 296, 8 conns, version 1, spare
            "00060024000011000000000000500050000000000000012c0a0900640a0900640a090002",
            "00060024000011000001000000500050000000000000012c0a0900640a0900640a090002",
            "000600240000000000019f300050005000000000000003840a0900640a0900640a090002",
            "00060024000011000001000000500050000000000000012c0a0900640a0900640a090002",
            "00060024000011000001000000500050000000000000012c0a0900640a0900640a090002",
            "00060024000011000001000000500050000000000000012c0a0900640a0900640a090002",
            "000600240000010000059f300050005000000000000000780a0900640a0900640a090002",
            "00060024000011000001000000500050000000000000012c0a0900640a0900640a090002",
        ]
        .concat();
        let m: Vec<u8> = (0..kernel_master.len()).step_by(2).map(|i| u8::from_str_radix(&kernel_master[i..i + 2], 16).unwrap()).collect();
        let d = decode(&m, 9);
        assert_eq!((d.version, d.dropped, d.skipped.len(), d.conns.len()), (Some(Version::V1), None, 0, 8));
        let t = &d.conns[0];
        assert_eq!((t.flags, t.state, t.cport, t.vport, t.dport, t.timeout), (flags::TEMPLATE | flags::INACTIVE | flags::SYNC, 0, 0, 80, 80, 300));
        let c = &d.conns[2];
        assert_eq!((c.flags, c.state, c.cport, c.timeout), (flags::MASQ | flags::SYNC, 1, 40752, 900));
        assert_eq!((c.caddr, c.daddr), ("10.9.0.100".parse().unwrap(), "10.9.0.2".parse().unwrap()));
        let tw = &d.conns[6];
        assert_eq!((tw.flags, tw.state, tw.timeout), (flags::INACTIVE | flags::SYNC, 5, 120));
        assert_eq!(decode(&m, 8).dropped, Some(Drop::OtherSyncid));
        let mut b = Builder::new(9, 1472);
        for e in &d.conns {
            assert!(b.add(Version::V1, &SyncConn { flags: e.flags & !flags::SYNC, ..e.clone() }).is_none());
        }
        assert_eq!(b.take().unwrap(), m);
    }

    /// Random bytes, and random corruptions of good messages, never panic.
    #[test]
    fn fuzz_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut b = Builder::new(0, 1472);
        for i in 0..20 {
            let mut c = tcp4();
            if i % 3 == 0 {
                c.caddr = "2001:db8::1".parse().unwrap();
                c.vaddr = "2001:db8::2".parse().unwrap();
                c.daddr = "2001:db8::3".parse().unwrap();
            }
            if i % 4 == 0 {
                c.flags |= flags::OUT_SEQ;
            }
            b.add(Version::V1, &c);
        }
        let good = b.take().unwrap();
        for _ in 0..20000 {
            let len = (rnd() % 300) as usize;
            let mut m: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            if m.len() >= 4 && rnd() % 2 == 0 {
                let l = (m.len() as u16).to_be_bytes();
                m[2..4].copy_from_slice(&l);
                if m.len() >= 8 && rnd() % 2 == 0 {
                    m[0] = 0;
                    m[5] = 1;
                    m[6] = 0;
                    m[7] = 0;
                }
            }
            let _ = decode(&m, (rnd() % 3) as u8);
            let mut g = good.clone();
            for _ in 0..(rnd() % 4 + 1) {
                let at = (rnd() as usize) % g.len();
                g[at] = rnd() as u8;
            }
            let _ = decode(&g, 0);
        }
    }
}
