//! DNS checks: ldirectord's `service = dns` (a query for `request`, up when an A address or PTR
//! name of the answer matches `receive`) and keepalived's DNS_CHECK (a query of `type` for
//! `name`, up on any NOERROR answer). Messages are built and read with hickory-proto; the
//! exchange is one datagram (UDP) or one length-prefixed message (TCP), as a stub resolver does.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The query `name` of `qtype` as lbd sends it. An address as `name` with type PTR asks for its
/// reverse name (Net::DNS's search does that for ldirectord).
pub fn query(name: &str, qtype: &str, id: u16) -> Result<Message, String> {
    let rtype = RecordType::from_str(&qtype.to_ascii_uppercase()).map_err(|_| format!("unknown DNS query type `{qtype}`"))?;
    let qname = match name.parse::<IpAddr>() {
        Ok(ip) if rtype == RecordType::PTR => Name::from(ip),
        _ => Name::from_ascii(name).map_err(|e| format!("bad DNS name `{name}`: {e}"))?,
    };
    let mut m = Message::new();
    m.set_id(id).set_message_type(MessageType::Query).set_recursion_desired(true);
    m.add_query(Query::query(qname, rtype));
    Ok(m)
}

/// Checks `answer` (to the query of id `id`): NOERROR and, with `expect`, a matching A or PTR.
pub fn judge(answer: &[u8], id: u16, expect: Option<&str>) -> Result<(), String> {
    let m = Message::from_vec(answer).map_err(|e| format!("not a DNS answer: {e}"))?;
    if m.id() != id || m.message_type() != MessageType::Response {
        return Err(format!("not an answer to query {id}"));
    }
    if m.response_code() != ResponseCode::NoError {
        return Err(format!("DNS answer {}", m.response_code()));
    }
    let Some(want) = expect else { return Ok(()) };
    let re = regex_lite::Regex::new(want).map_err(|e| format!("receive: {e}"))?;
    let found: Vec<String> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0.to_string()),
            RData::PTR(p) => Some(p.0.to_string()),
            _ => None,
        })
        .collect();
    if found.iter().any(|f| re.is_match(f)) {
        Ok(())
    } else {
        Err(format!("DNS answer {found:?} does not match {want:?}"))
    }
}

/// One query to `target` and its judgement.
pub async fn check(target: SocketAddr, name: &str, qtype: &str, tcp: bool, expect: Option<&str>) -> Result<(), String> {
    let id = query_id();
    let bytes = query(name, qtype, id)?.to_vec().map_err(|e| format!("DNS query: {e}"))?;
    let answer = if tcp {
        let mut s = tokio::net::TcpStream::connect(target).await.map_err(|e| format!("connect to {target}: {e}"))?;
        let len = u16::try_from(bytes.len()).map_err(|_| "DNS query too long".to_string())?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        s.write_all(&framed).await.map_err(|e| format!("send: {e}"))?;
        let n = s.read_u16().await.map_err(|e| format!("receive: {e}"))?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        buf
    } else {
        let bind: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
        let s = tokio::net::UdpSocket::bind(bind).await.map_err(|e| format!("socket: {e}"))?;
        s.connect(target).await.map_err(|e| format!("connect to {target}: {e}"))?;
        s.send(&bytes).await.map_err(|e| format!("send: {e}"))?;
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        buf.truncate(n);
        buf
    };
    judge(&answer, id, expect)
}

/// A query id that differs from check to check (answers to an earlier query are not taken).
fn query_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::A;

    fn answer(id: u16, code: ResponseCode, a: Option<[u8; 4]>) -> Vec<u8> {
        let mut m = query("www.example.org", "A", id).expect("query");
        m.set_message_type(MessageType::Response).set_response_code(code);
        if let Some(a) = a {
            let name = Name::from_ascii("www.example.org").expect("name");
            m.add_answer(Record::from_rdata(name, 60, RData::A(A::from(std::net::Ipv4Addr::from(a)))));
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn judgements() {
        let ok = answer(7, ResponseCode::NoError, Some([192, 0, 2, 7]));
        assert_eq!(judge(&ok, 7, None), Ok(()));
        assert_eq!(judge(&ok, 7, Some("^192\\.0\\.2\\.7$")), Ok(()));
        assert!(judge(&ok, 7, Some("192.0.2.8")).expect_err("wrong address").contains("does not match"));
        assert!(judge(&ok, 8, None).is_err(), "another query's answer");
        assert!(judge(&answer(7, ResponseCode::NXDomain, None), 7, None).expect_err("nxdomain").contains("Non-Existent"));
        assert!(judge(b"\x00\x07junk", 7, None).is_err());
    }

    #[test]
    fn queries() {
        let q = query("192.0.2.7", "ptr", 1).expect("ptr");
        assert_eq!(q.queries()[0].name().to_ascii(), "7.2.0.192.in-addr.arpa.");
        let q = query(".", "SOA", 1).expect("root");
        assert_eq!(q.queries()[0].query_type(), RecordType::SOA);
        assert!(query("x", "BOGUS", 1).is_err());
    }
}
