//! UDP checks: keepalived's UDP_CHECK (one datagram; an ICMP error such as port unreachable
//! is down, and with `require_reply` an answer of the right length and bytes must come), and
//! the ICMP echo ldirectord sends for `checktype = connect` on a UDP service.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What keepalived's `require_reply [HEX]`, `min_reply_length`, `max_reply_length` ask of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpReply {
    /// The answer starts with these bytes (compared over the shorter of the two)...
    pub data: Vec<u8>,
    /// ...but for the bits set here (an `X` nibble in the configuration).
    pub mask: Vec<u8>,
    pub min_len: usize,
    pub max_len: usize,
}

/// keepalived's free-form hex string: blank-separated groups, each read two digits at a time
/// (a last odd digit is a byte of its own: `Ab12f 3` is AB 12 0F 03). With `wildcards` an `X`
/// digit matches anything: returns the bytes and the mask of the bits to ignore.
pub fn parse_hex(s: &str, wildcards: bool) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut data = Vec::new();
    let mut mask = Vec::new();
    for group in s.split_whitespace() {
        let digits: Vec<char> = group.chars().collect();
        for pair in digits.chunks(2) {
            let mut byte = 0u8;
            let mut m = 0u8;
            for c in pair {
                let (v, x) = match c {
                    'x' | 'X' if wildcards => (0, 0xf),
                    c => (c.to_digit(16).ok_or_else(|| format!("`{c}` is not a hex digit in `{group}`"))? as u8, 0),
                };
                byte = (byte << 4) | v;
                m = (m << 4) | x;
            }
            data.push(byte);
            mask.push(m);
        }
    }
    Ok((data, mask))
}

/// Whether `got` is an answer `want` accepts.
pub fn reply_ok(got: &[u8], want: &UdpReply) -> Result<(), String> {
    if got.len() < want.min_len || got.len() > want.max_len {
        return Err(format!("reply of {} bytes (expected {}..={})", got.len(), want.min_len, want.max_len));
    }
    let same = got.iter().zip(&want.data).zip(&want.mask).all(|((g, w), m)| (g ^ w) & !m == 0);
    if same { Ok(()) } else { Err(format!("reply {} does not match", hex(got))) }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// keepalived's UDP_CHECK. `timeout` is the check's: with no reply required, silence until
/// then is up.
pub async fn check(target: SocketAddr, payload: &[u8], reply: Option<&UdpReply>, timeout: Duration) -> Result<(), String> {
    let bind: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let s = tokio::net::UdpSocket::bind(bind).await.map_err(|e| format!("socket: {e}"))?;
    s.connect(target).await.map_err(|e| format!("connect to {target}: {e}"))?;
    s.send(payload).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 65536];
    // A connected socket reports the ICMP error of the datagram as the receive's error.
    let waited = if reply.is_some() { timeout } else { timeout.mul_f32(0.9) };
    match tokio::time::timeout(waited, s.recv(&mut buf)).await {
        Ok(Ok(n)) => match reply {
            Some(want) => reply_ok(&buf[..n], want),
            None => Ok(()),
        },
        Ok(Err(e)) => Err(format!("{target}: {e}")),
        Err(_) if reply.is_none() => Ok(()),
        Err(_) => Err(format!("no reply within {timeout:?}")),
    }
}

/// One ICMP echo to `addr` (a raw socket: lbd runs as root); up on the echo reply.
pub async fn ping(addr: IpAddr) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, proto, request_type, reply_type) = match addr {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128, 129),
    };
    let sock = Socket::new(domain, Type::RAW, Some(proto)).map_err(|e| format!("ICMP socket: {e}"))?;
    sock.set_nonblocking(true).map_err(|e| format!("ICMP socket: {e}"))?;
    // Tokio's datagram socket only does sendto/recvfrom on the descriptor: a raw ICMP one fits.
    let sock = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(sock)).map_err(|e| format!("ICMP socket: {e}"))?;
    let ident = (std::process::id() as u16) ^ 0x4c42;
    let seq = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_micros() & 0xffff) as u16;
    let mut pkt = vec![request_type, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"lbd ping check");
    if addr.is_ipv4() {
        // ICMPv6's checksum is the kernel's to fill in.
        let sum = inet_checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    sock.send_to(&pkt, SocketAddr::new(addr, 0)).await.map_err(|e| format!("ping {addr}: {e}"))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await.map_err(|e| format!("ping {addr}: {e}"))?;
        let got = &buf[..n];
        if from.ip() != addr {
            continue;
        }
        // IPv4 raw sockets hand over the IP header too.
        let icmp = if addr.is_ipv4() { got.get(usize::from(got.first().map_or(0, |b| b & 0xf)) * 4..).unwrap_or(&[]) } else { got };
        if icmp.len() >= 8 && icmp[0] == reply_type && icmp[4..6] == ident.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            return Ok(());
        }
    }
}

fn inet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_hex() {
        // keepalived.conf(5)'s own example.
        let (d, m) = parse_hex("Ab12f 3 456 546443123", false).expect("hex");
        assert_eq!(d, [0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03]);
        assert!(m.iter().all(|m| *m == 0));
        let (d, m) = parse_hex("4x x1", true).expect("wildcards");
        assert_eq!((d, m), (vec![0x40, 0x01], vec![0x0f, 0xf0]));
        assert!(parse_hex("4x", false).is_err(), "X only in require_reply");
        assert!(parse_hex("zz", true).is_err());
    }

    #[test]
    fn replies() {
        let want = UdpReply { data: vec![0x40, 0x01], mask: vec![0x0f, 0xf0], min_len: 2, max_len: 4 };
        assert!(reply_ok(&[0x4e, 0x71, 9], &want).is_ok());
        assert!(reply_ok(&[0x5e, 0x71], &want).is_err());
        assert!(reply_ok(&[0x40], &want).is_err(), "shorter than min_reply_length");
        assert!(reply_ok(&[0x40, 1, 2, 3, 4], &want).is_err(), "longer than max_reply_length");
    }

    #[test]
    fn checksum() {
        // An echo request with id 1, seq 1 and no data: 0xf7fd.
        assert_eq!(inet_checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
    }
}
