//! HTTP and HTTPS checks (ldirectord `service = http|https`, keepalived HTTP_GET/SSL_GET) on
//! reqwest with rustls: the request goes to the real server's address while the Host header
//! and SNI carry the virtualhost.

use std::net::SocketAddr;

use md5::{Digest, Md5};

use crate::config::{Check, HttpCheck};

/// Most of a body a check reads (and hashes for `digest`).
const MAX_BODY: usize = 1 << 20;

/// Runs one HTTP(S) check: Ok, or why it failed.
pub async fn check(c: &Check, h: &HttpCheck) -> Result<(), String> {
    let (client, url) = request_target(c, h)?;
    let method = reqwest::Method::from_bytes(h.method.as_bytes()).map_err(|e| format!("method {}: {e}", h.method))?;
    let mut req = client
        .request(method, url)
        .version(if h.http10 { reqwest::Version::HTTP_10 } else { reqwest::Version::HTTP_11 })
        .header(reqwest::header::HOST, &h.host)
        .header(reqwest::header::USER_AGENT, "lbd (xlb health check)");
    if h.connection_close {
        req = req.header(reqwest::header::CONNECTION, "close");
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| format!("{} {}: {}", h.method, h.path, error_chain(&e)))?;
    let code = resp.status().as_u16();
    if !h.status.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code)) {
        return Err(format!("HTTP status {code} for {}", h.path));
    }
    if h.regex.is_none() && h.digest.is_none() {
        return Ok(());
    }
    // The digest covers the whole body (as keepalived's); the regex sees its first MiB.
    let mut body = Vec::new();
    let mut md5 = Md5::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{}: reading the body: {}", h.path, error_chain(&e)))? {
        md5.update(&chunk);
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY && h.digest.is_none() {
            break;
        }
    }
    judge_body(h, &body, &hex(&md5.finalize()))
}

/// The regex verdict on a body (its first MiB) and the digest verdict on its MD5.
pub fn judge_body(h: &HttpCheck, body: &[u8], body_md5: &str) -> Result<(), String> {
    if let Some(re) = &h.regex {
        let compiled = regex_lite::Regex::new(re).map_err(|e| format!("regex {re:?}: {e}"))?;
        let matched = compiled.is_match(&String::from_utf8_lossy(body));
        if matched == h.regex_no_match {
            let how = if h.regex_no_match { "matches" } else { "does not match" };
            return Err(format!("{}: body {how} {re:?}", h.path));
        }
    }
    if let Some(want) = &h.digest
        && !body_md5.eq_ignore_ascii_case(want)
    {
        return Err(format!("{}: body digest {body_md5}, expected {want}", h.path));
    }
    Ok(())
}

/// MD5 of `bytes` as lowercase hex (keepalived's `digest`, genhash's output).
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client for one attempt and the URL it asks. With a server name, the URL names it and
/// the client resolves it to the real server, so TLS verifies that name (and sends it as SNI
/// when asked); otherwise the URL holds the address itself.
fn request_target(c: &Check, h: &HttpCheck) -> Result<(reqwest::Client, reqwest::Url), String> {
    let mut b = reqwest::Client::builder()
        // The whole check's time limit is `check_once`'s (ldirectord's alarm, keepalived's
        // connect_timeout); the connect gets no more.
        .connect_timeout(c.timeout)
        // Every check opens its own connection: a pooled one would not test the server's accept.
        .pool_max_idle_per_host(0)
        .no_proxy()
        .redirect(if h.follow_redirects { reqwest::redirect::Policy::limited(7) } else { reqwest::redirect::Policy::none() });
    let authority = match (&h.tls, c.target) {
        (Some(t), target) if t.server_name.is_some() => {
            let name = t.server_name.as_deref().unwrap_or_default();
            b = b.resolve(name, target);
            format!("{name}:{}", target.port())
        }
        (_, SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
        (_, a) => a.to_string(),
    };
    let scheme = match &h.tls {
        None => "http",
        Some(t) => {
            b = b.use_rustls_tls().tls_built_in_root_certs(false).tls_sni(t.send_sni);
            if let Some(pem) = &t.client_pem {
                b = b.identity(reqwest::Identity::from_pem(pem).map_err(|e| format!("client certificate: {e}"))?);
            }
            match &t.ca_pem {
                None => b = b.danger_accept_invalid_certs(true),
                Some(pem) => {
                    let cas = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("CA certificates: {e}"))?;
                    for ca in cas {
                        b = b.add_root_certificate(ca);
                    }
                }
            }
            "https"
        }
    };
    let url = reqwest::Url::parse(&format!("{scheme}://{authority}{}", h.path)).map_err(|e| format!("url {}: {e}", h.path))?;
    let client = b.build().map_err(|e| format!("HTTP client: {}", error_chain(&e)))?;
    Ok((client, url))
}

/// An error with its causes ("error sending request: ... : invalid peer certificate: ...").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(regex: Option<&str>, no_match: bool, digest: Option<&str>) -> HttpCheck {
        HttpCheck {
            method: "GET".into(),
            path: "/".into(),
            host: "h".into(),
            tls: None,
            status: vec![(200, 299)],
            regex: regex.map(str::to_string),
            regex_no_match: no_match,
            digest: digest.map(str::to_string),
            follow_redirects: false,
            http10: false,
            connection_close: false,
        }
    }

    /// MD5 as genhash prints it; regex anywhere in the body, inverted by regex_no_match.
    #[test]
    fn body_verdicts() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert!(judge_body(&check(Some("st[a-z]+us: up"), false, None), b"<p>status: up</p>", &md5_hex(b"<p>status: up</p>")).is_ok());
        assert!(judge_body(&check(Some("st[a-z]+us: up"), false, None), b"status: down", &md5_hex(b"status: down")).is_err());
        assert!(judge_body(&check(Some("error"), true, None), b"all fine", &md5_hex(b"all fine")).is_ok());
        assert!(judge_body(&check(Some("error"), true, None), b"an error", &md5_hex(b"an error")).is_err());
        assert!(judge_body(&check(None, false, Some("d41d8cd98f00b204e9800998ecf8427e")), b"", &md5_hex(b"")).is_ok());
        let e = judge_body(&check(None, false, Some("d41d8cd98f00b204e9800998ecf8427e")), b"x", &md5_hex(b"x")).expect_err("digest differs");
        assert!(e.contains(&md5_hex(b"x")), "{e}");
    }

    use crate::config::{CheckKind, Format, TlsCheck, parse};

    /// The URL asked: the address itself (IPv6 in brackets), or with SNI the virtualhost
    /// (resolved by the client to the real server's address).
    #[test]
    fn request_urls() {
        let text = "virtual_server 2001:db8::1 80 {\n  real_server 2001:db8::2 80 {\n    HTTP_GET {\n      url {\n        path /x?y=1\n      }\n    }\n  }\n}\n\
                    virtual_server 10.0.0.1 443 {\n  real_server 10.0.0.2 443 {\n    SSL_GET {\n      url {\n        path /h\n      }\n      \
                    enable_sni\n      virtualhost www.example.test\n      connect_port 8443\n    }\n    SSL_GET {\n      url {\n        path /n\n      }\n    }\n    \
                    SSL_GET {\n      url {\n        path /v\n      }\n      virtualhost v.test\n    }\n  }\n}\n";
        let cfg = parse(text, Format::Keepalived).unwrap_or_else(|e| panic!("{e:?}"));
        let urls: Vec<(String, String)> = cfg
            .services
            .iter()
            .flat_map(|s| s.reals.iter())
            .flat_map(|r| r.checks.iter())
            .map(|c| match &c.kind {
                CheckKind::Http(h) => (request_target(c, h).expect("client").1.to_string(), h.host.clone()),
                k => panic!("http check expected, got {k:?}"),
            })
            .collect();
        assert_eq!(urls, [
            ("http://[2001:db8::2]/x?y=1".to_string(), "[2001:db8::2]:80".to_string()),
            ("https://www.example.test:8443/h".to_string(), "www.example.test".to_string()),
            ("https://10.0.0.2/n".to_string(), "10.0.0.2:443".to_string()),
            ("https://v.test/v".to_string(), "v.test".to_string()),
        ]);
        let sni: Vec<bool> = cfg.services[1].reals[0].checks.iter().map(|c| matches!(&c.kind, CheckKind::Http(h) if h.tls.as_ref().is_some_and(|t| t.send_sni))).collect();
        assert_eq!(sni, [true, false, false], "SNI only with enable_sni (and a name)");
        let ld = "virtual6=[2001:db8::1]:80\n    real6=[2001:db8::2]:80 gate\n    service=http\n";
        let cfg = parse(ld, Format::Ldirectord).unwrap_or_else(|e| panic!("{e:?}"));
        let CheckKind::Http(h) = &cfg.services[0].reals[0].checks[0].kind else { panic!("http check expected") };
        assert_eq!(h.host, "[2001:db8::2]");
    }

    fn http_checks(text: &str, format: Format) -> Vec<(std::net::SocketAddr, HttpCheck, std::time::Duration, u32)> {
        let cfg = parse(text, format).unwrap_or_else(|e| panic!("{e:?}"));
        cfg.services
            .iter()
            .flat_map(|s| s.reals.iter())
            .flat_map(|r| r.checks.iter())
            .map(|c| match &c.kind {
                CheckKind::Http(h) => (c.target, h.clone(), c.timeout, c.fail_after),
                k => panic!("http check expected, got {k:?}"),
            })
            .collect()
    }

    fn errors(text: &str, format: Format) -> Vec<(usize, String)> {
        parse(text, format).expect_err("refused").into_iter().map(|d| (d.line, d.msg)).collect()
    }

    /// ldirectord: service http|https, request, receive (a regex), virtualhost, httpmethod,
    /// checkport, negotiatetimeout; https never verifies (LWP verify_hostname => 0).
    #[test]
    fn ldirectord_http_and_https() {
        let text = "virtual=10.0.0.1:80\n    real=10.0.0.2:80 gate\n    real=10.0.0.3:80 gate 1 \"/own\", \"^own$\"\n    \
                    service=http\n    request=\"health\"\n    receive=\"st.tus: (up|ok)\"\n    virtualhost=www.example.test\n    \
                    httpmethod=head\n    checkport=8080\n    negotiatetimeout=3\n\
                    virtual=10.0.0.1:443\n    real=10.0.0.2:443 gate\n    service=https\n    checktype=negotiate\n";
        let checks = http_checks(text, Format::Ldirectord);
        assert_eq!(checks.len(), 3);
        let (target, h, timeout, _) = &checks[0];
        assert_eq!(target.to_string(), "10.0.0.2:8080");
        assert_eq!(*timeout, std::time::Duration::from_secs(3));
        assert_eq!(
            h,
            &HttpCheck {
                method: "HEAD".into(),
                path: "/health".into(),
                host: "www.example.test".into(),
                tls: None,
                status: vec![(200, 299)],
                regex: Some("st.tus: (up|ok)".into()),
                regex_no_match: false,
                digest: None,
                follow_redirects: true,
                http10: false,
                connection_close: false,
            }
        );
        assert_eq!((checks[1].1.path.as_str(), checks[1].1.regex.as_deref()), ("/own", Some("^own$")));
        let (target, h, ..) = &checks[2];
        assert_eq!(target.to_string(), "10.0.0.2:443");
        assert_eq!((h.host.as_str(), h.path.as_str(), h.regex.as_deref()), ("10.0.0.2", "/", None), "Host: the address, no port");
        assert_eq!(h.tls, Some(TlsCheck { server_name: None, send_sni: false, ca_pem: None, client_pem: None }));
        // Port 443 without `service`: https, as ldirectord guesses it.
        let c = http_checks("virtual=10.0.0.1:443\n    real=10.0.0.2:443 gate\n    virtualhost=a.test\n", Format::Ldirectord);
        assert_eq!(c[0].1.tls, Some(TlsCheck { server_name: Some("a.test".into()), send_sni: true, ca_pem: None, client_pem: None }));
        // A receive that is no regular expression, a request that is a URL: refused by line.
        let e = errors("virtual=10.0.0.1:80\n    real=10.0.0.2:80 gate\n    service=http\n    receive=\"(open\"\n", Format::Ldirectord);
        assert_eq!(e.iter().map(|d| d.0).collect::<Vec<_>>(), [4], "{e:?}");
        let e = errors("virtual=10.0.0.1:80\n    real=10.0.0.2:80 gate\n    service=http\n    request=\"http://x/\"\n", Format::Ldirectord);
        assert_eq!(e.iter().map(|d| d.0).collect::<Vec<_>>(), [2], "{e:?}");
        assert!(e[0].1.contains("is a URL"), "{e:?}");
    }

    /// keepalived HTTP_GET/SSL_GET: url path/digest/status_code/virtualhost/regex*,
    /// connect_ip/port/timeout, retry, enable_sni, virtualhost at every level; SSL { ca }.
    #[test]
    fn keepalived_http_get_and_ssl_get() {
        let dir = std::env::temp_dir().join(format!("lbd-http-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        // A syntactically valid PEM certificate (rustls-pki-types only checks the PEM framing).
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").expect("write ca");
        let text = format!(
            "SSL {{\n  ca {}\n}}\nvirtual_server 10.0.0.1 443 {{\n  lb_kind DR\n  virtualhost vs.test\n  real_server 10.0.0.2 443 {{\n    \
             virtualhost rs.test\n    SSL_GET {{\n      url {{\n        path /a?x=1\n        digest 0123456789ABCDEF0123456789abcdef\n        \
             status_code 200 301-302\n      }}\n      url {{\n        path /b\n        virtualhost url.test\n        regex \"^ok\"\n        \
             regex_no_match\n        regex_options caseless multiline\n      }}\n      connect_ip 10.0.0.9\n      connect_port 8443\n      \
             connect_timeout 2\n      retry 2\n      enable_sni\n      http_protocol 1.1\n    }}\n    HTTP_GET {{\n      url {{\n        path /\n      }}\n      \
             virtualhost chk.test\n    }}\n  }}\n  real_server 10.0.0.3 443 {{\n    HTTP_GET {{\n      url {{\n        path /\n      }}\n    }}\n  }}\n}}\n",
            ca.display()
        );
        let checks = http_checks(&text, Format::Keepalived);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(checks.len(), 4);
        let pem = Some(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n".to_vec());
        let (target, a, timeout, fail_after) = &checks[0];
        assert_eq!((target.to_string(), *timeout, *fail_after), ("10.0.0.9:8443".into(), std::time::Duration::from_secs(2), 3));
        assert_eq!(
            a,
            &HttpCheck {
                method: "GET".into(),
                path: "/a?x=1".into(),
                host: "rs.test".into(),
                tls: Some(TlsCheck { server_name: Some("rs.test".into()), send_sni: true, ca_pem: pem.clone(), client_pem: None }),
                status: vec![(200, 200), (301, 302)],
                regex: None,
                regex_no_match: false,
                digest: Some("0123456789abcdef0123456789abcdef".into()),
                follow_redirects: false,
                http10: false,
                connection_close: true,
            }
        );
        let b = &checks[1].1;
        assert_eq!((b.host.as_str(), b.regex.as_deref(), b.regex_no_match), ("url.test", Some("(?im)^ok"), true));
        assert_eq!(b.tls.as_ref().map(|t| (t.server_name.as_deref(), t.send_sni)), Some((Some("url.test"), true)));
        assert_eq!((checks[2].1.host.as_str(), checks[2].1.tls.is_none()), ("chk.test", true));
        assert_eq!((checks[2].1.http10, checks[2].1.connection_close), (true, false), "keepalived's default: HTTP/1.0");
        // No virtualhost anywhere but the virtual server's.
        assert_eq!(checks[3].1.host, "vs.test");
        // Without a virtualhost: Host is address:port, as keepalived writes it.
        let plain = "virtual_server 10.0.0.1 443 {\n  real_server 10.0.0.2 443 {\n    SSL_GET {\n      url {\n        path /\n      }\n    }\n  }\n}\n";
        let c = http_checks(plain, Format::Keepalived);
        assert_eq!((c[0].1.host.as_str(), c[0].1.status.as_slice()), ("10.0.0.2:443", &[(200, 299)][..]));
        assert_eq!(c[0].1.tls, Some(TlsCheck { server_name: None, send_sni: false, ca_pem: None, client_pem: None }), "no SSL block: not verified, as keepalived");
    }

    /// What lbd does not honour in HTTP_GET/SSL_GET is refused with its line.
    #[test]
    fn keepalived_http_refusals() {
        let text = "SSL {\n  certificate /nonexistent/x.pem\n  ca /nonexistent/ca.pem\n  password secret\n}\nvirtual_server 10.0.0.1 80 {\n  real_server 10.0.0.2 80 {\n    \
                    HTTP_GET {\n      url {\n        path /\n        digest 1234\n        status_code 700\n        regex \"(\"\n      }\n      \
                    url {\n        path /x\n        regex_min_offset 3\n        regex_options utf\n      }\n      url {\n        status_code 200\n      }\n      \
                    fast_recovery\n      http_protocol 2\n    }\n  }\n}\n";
        let e = errors(text, Format::Keepalived);
        assert_eq!(e.iter().map(|d| d.0).collect::<Vec<_>>(), [2, 3, 4, 11, 12, 13, 17, 18, 20, 23, 24], "{e:#?}");
        assert!(e[2].1.contains("encrypted"), "{e:?}");
        assert!(e[3].1.contains("MD5"), "{e:?}");
        assert!(e[8].1.contains("url needs a `path`"), "{e:?}");
        // A certificate without its key.
        let dir = std::env::temp_dir().join(format!("lbd-http-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        std::fs::write(dir.join("c.pem"), "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").expect("write");
        let e = errors(&format!("SSL {{\n  certificate {}\n}}\n", dir.join("c.pem").display()), Format::Keepalived);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(e, [(2, "SSL `certificate` needs its `key`".to_string())]);
    }
}
