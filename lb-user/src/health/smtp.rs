//! SMTP checks (ldirectord `service = smtp`, keepalived SMTP_CHECK): a 2xx greeting, `HELO`
//! answered 250, `QUIT`. Written on tokio: the SMTP crates (lettre) open a whole mail
//! transaction stack and answer "can I send?", not "does the greeting and HELO work?".

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The dialogue with the server at `target`.
pub async fn check(target: SocketAddr, helo: &str) -> Result<(), String> {
    let s = TcpStream::connect(target).await.map_err(|e| format!("connect to {target}: {e}"))?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let greeting = reply(&mut r).await.map_err(|e| format!("greeting: {e}"))?;
    if !(200..300).contains(&greeting.0) {
        return Err(format!("SMTP greeting {} {}", greeting.0, greeting.1));
    }
    w.write_all(format!("HELO {helo}\r\n").as_bytes()).await.map_err(|e| format!("send HELO: {e}"))?;
    let helo_reply = reply(&mut r).await.map_err(|e| format!("HELO: {e}"))?;
    if helo_reply.0 != 250 {
        return Err(format!("SMTP HELO answered {} {}", helo_reply.0, helo_reply.1));
    }
    // QUIT's answer does not change the verdict (keepalived reads a line, Net::SMTP ignores it).
    let _ = w.write_all(b"QUIT\r\n").await;
    let _ = reply(&mut r).await;
    Ok(())
}

/// Reads one (possibly multi-line, `250-...`) reply: its code and last line's text.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<(u16, String), String> {
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        if line.len() > 1000 {
            return Err("reply line too long".into());
        }
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| format!("not an SMTP reply: {:?}", line.trim_end()))?;
        // `250-` continues, `250 ` (or a bare code) ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line.get(4..).unwrap_or("").trim_end().to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reply;

    #[tokio::test]
    async fn replies() {
        let mut r: &[u8] = b"250-mail.example\r\n250-SIZE 10\r\n250 HELP\r\n";
        assert_eq!(reply(&mut r).await, Ok((250, "HELP".into())));
        let mut r: &[u8] = b"554 no service\r\n";
        assert_eq!(reply(&mut r).await, Ok((554, "no service".into())));
        let mut r: &[u8] = b"hello\r\n";
        assert!(reply(&mut r).await.is_err());
        let mut r: &[u8] = b"";
        assert!(reply(&mut r).await.is_err());
    }
}
