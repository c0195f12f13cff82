//! lbd's HTTP and HTTPS checks against real servers: each web namespace runs a python server
//! on HTTP (8088) and HTTPS (8443, a certificate from a CA made here with openssl) that answers
//! with the status and body the test writes and records every request it sees (scheme,
//! method, path, Host header, SNI). lbd runs with ldirectord's and keepalived's configurations;
//! `ipvsadm -Ln` (lbadm) shows its verdicts, its log the reasons. No XDP: only the checks.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::bail;
use xlb_tests::lab::{Lab, Mode, VIP, WEB1, WEB2};
use xlb_tests::lab_health::Lbd;
use xlb_tests::netns::{Netns, Proc, sh};

const VHOST: &str = "www.example.test";

/// The real servers' HTTP/HTTPS server: `DIR/status` and `DIR/body` are its answer (read per
/// request; `/moved` redirects to `/health`; status `sleep`: 200 after 3 s), `DIR/seen` gets
/// one line per request.
const SERVER: &str = r#"
import http.server, os, socketserver, ssl, sys, threading, time
d, hport, sport, cert, key, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def answer(self, with_body):
        scheme = 'https' if isinstance(self.connection, ssl.SSLSocket) else 'http'
        sni = getattr(self.connection, 'sni', None) or '-'
        peer = self.connection.getpeercert() if scheme == 'https' else None
        client = dict(x[0] for x in peer['subject'])['commonName'] if peer else '-'
        with lock, open(os.path.join(d, 'seen'), 'a') as f:
            f.write('%s %s %s %s host=%s sni=%s client=%s connection=%s\n' % (scheme, self.request_version, self.command, self.path,
                    self.headers.get('Host'), sni, client, self.headers.get('Connection', '-')))
        if self.path == '/moved':
            self.send_response(302)
            self.send_header('Location', '/health')
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        status = open(os.path.join(d, 'status')).read()
        if status.startswith('sleep'):
            time.sleep(3)
            status = '200'
        status = int(status)
        body = open(os.path.join(d, 'body'), 'rb').read()
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)
    def do_GET(self):
        self.answer(True)
    def do_HEAD(self):
        self.answer(False)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
plain = S(('0.0.0.0', hport), H)
tls = S(('0.0.0.0', sport), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(cafile=ca)
ctx.verify_mode = ssl.CERT_OPTIONAL
def record_sni(sock, name, c):
    sock.sni = name
ctx.sni_callback = record_sni
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=plain.serve_forever, daemon=True).start()
tls.serve_forever()
"#;

/// One web namespace's server and its files.
struct Web {
    _proc: Proc,
    dir: PathBuf,
}

impl Web {
    fn start(ns: &Netns, dir: &Path, certs: &Path) -> anyhow::Result<Web> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("body"), "status: up\n")?;
        std::fs::write(dir.join("status"), "200")?;
        let stderr = std::fs::File::create(dir.join("stderr"))?;
        let child = ns
            .cmd("python3")
            .args(["-c", SERVER, &dir.to_string_lossy(), "8088", "8443"])
            .arg(certs.join("server.pem"))
            .arg(certs.join("server.key"))
            .arg(certs.join("ca.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        let web = Web { _proc: Proc::from_child(child), dir: dir.to_path_buf() };
        let listening = ns
            .wait_listening("tcp", 8088, Duration::from_secs(10))
            .and_then(|()| ns.wait_listening("tcp", 8443, Duration::from_secs(10)));
        if let Err(e) = listening {
            bail!("{e:#}: {}", std::fs::read_to_string(dir.join("stderr")).unwrap_or_default());
        }
        Ok(web)
    }

    fn answer(&self, status: u16, body: &str) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("body"), body)?;
        std::fs::write(self.dir.join("status"), status.to_string())?;
        Ok(())
    }

    fn answer_after_3s(&self) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("status"), "sleep")?;
        Ok(())
    }

    /// The requests seen so far (and forgets them).
    fn take_seen(&self) -> Vec<String> {
        let p = self.dir.join("seen");
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(&p);
        text.lines().map(str::to_string).collect()
    }
}

/// A CA, a server certificate it signed for `www.example.test` (and the web servers'
/// addresses), and a second CA that signed nothing.
fn make_certs(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh(&format!(
        "cd {d}\n\
         openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=xlb-test-ca 2>/dev/null\n\
         openssl req -x509 {ec} -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=xlb-other-ca 2>/dev/null\n\
         openssl req {ec} -keyout server.key -out server.csr -subj /CN={VHOST} 2>/dev/null\n\
         printf 'subjectAltName=DNS:{VHOST},IP:{WEB1},IP:{WEB2}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext\n\
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null\n\
         openssl req {ec} -keyout client.key -out client.csr -subj /CN=lbd-client 2>/dev/null\n\
         printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > ext-client\n\
         openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile ext-client 2>/dev/null\n",
        d = dir.display()
    ))?;
    Ok(())
}

struct HttpLab {
    lab: Lab,
    web: Vec<Web>,
    certs: PathBuf,
}

fn http_lab(tag: &str) -> HttpLab {
    let lab = Lab::new(tag, Mode::Dr).expect("lab");
    // The table's maps exist before lbd and lbadm both open them (no race to create them).
    lab.ipvsadm_ok(&["-Ln"]).expect("empty table");
    let certs = lab.dir.join("certs");
    make_certs(&certs).expect("certificates");
    let web = lab
        .web
        .iter()
        .enumerate()
        .map(|(i, w)| Web::start(&w.ns, &lab.dir.join(format!("web{}", i + 1)), &certs).expect("web server"))
        .collect();
    HttpLab { lab, web, certs }
}

/// `addr:port weight` of the real servers of the TCP service on VIP:`port`, sorted.
fn reals(lab: &Lab, port: u16) -> Vec<String> {
    let ln = lab.ipvsadm_ok(&["-Ln"]).unwrap_or_default();
    let mut out = Vec::new();
    let mut inside = false;
    for l in ln.lines() {
        if l.starts_with("TCP") || l.starts_with("UDP") || l.starts_with("FWM") {
            inside = l.contains(&format!("{VIP}:{port} "));
        } else if inside && let Some(rest) = l.trim_start().strip_prefix("-> ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            if w.len() >= 3 && w[0].contains(':') {
                out.push(format!("{} {}", w[0], w[2]));
            }
        }
    }
    out.sort();
    out
}

fn wait_reals(lab: &Lab, lbd: &Lbd, port: u16, want: &[&str], timeout: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let got = reals(lab, port);
        if got == want {
            return t0.elapsed();
        }
        if t0.elapsed() > timeout {
            panic!("port {port}: {got:?}, wanted {want:?} after {timeout:?}\n{}", lbd.log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until lbd's log holds `what` (a check's reason).
fn wait_log(lbd: &Lbd, what: &str, timeout: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if lbd.log_text().contains(what) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("lbd never logged {what:?}:\n{}", lbd.log_text())
}

/// ldirectord: `service = http` with `request`, `receive` as a regular expression,
/// `virtualhost`, `checkport`, `negotiatetimeout`; `httpmethod = HEAD`; `service = https` (not
/// verified, as ldirectord's LWP with verify_hostname => 0, so the lab CA's certificate passes)
/// following a redirect as LWP does. Up when the answer fits; down with the reason on a bad
/// status and on a body the regex does not match; the servers saw the virtualhost as Host and
/// (HTTPS) SNI.
#[test]
fn ldirectord_http_https() {
    let HttpLab { lab, web, .. } = http_lab("hld");
    let cfg = lab.dir.join("ldirectord.cf");
    std::fs::write(
        &cfg,
        format!(
            "checkinterval=1\nnegotiatetimeout=1\nfailurecount=1\nquiescent=yes\n\
             virtual={VIP}:80\n    real={WEB1}:80 gate\n    real={WEB2}:80 gate\n    service=http\n    checkport=8088\n    \
             request=\"health\"\n    receive=\"st.tus: (up|ok)\"\n    virtualhost={VHOST}\n\
             virtual={VIP}:81\n    real={WEB1}:81 gate\n    service=http\n    checkport=8088\n    request=\"/health\"\n    httpmethod=HEAD\n\
             virtual={VIP}:443\n    real={WEB1}:443 gate\n    real={WEB2}:443 gate\n    service=https\n    checkport=8443\n    \
             request=\"/moved\"\n    receive=\"up\"\n    virtualhost={VHOST}\n    quiescent=no\n"
        ),
    )
    .expect("config");
    let lbd = Lbd::start(&lab, &cfg, &[], &lab.dir.join("lbd.log")).expect("lbd");
    let w1 = |p: u16, w: u8| format!("{WEB1}:{p} {w}");
    let w2 = |p: u16, w: u8| format!("{WEB2}:{p} {w}");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 1), &w2(80, 1)], Duration::from_secs(5));
    wait_reals(&lab, &lbd, 81, &[&w1(81, 1)], Duration::from_secs(5));
    wait_reals(&lab, &lbd, 443, &[&w1(443, 1), &w2(443, 1)], Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1200));
    let mut seen = web[0].take_seen();
    seen.sort();
    seen.dedup();
    // Host: the virtualhost (ldirectord sends no port); the section without one: the address.
    assert_eq!(seen, [
        format!("http HTTP/1.1 GET /health host={VHOST} sni=- client=- connection=-"),
        format!("http HTTP/1.1 HEAD /health host={WEB1} sni=- client=- connection=-"),
        format!("https HTTP/1.1 GET /health host={VHOST} sni={VHOST} client=- connection=-"),
        format!("https HTTP/1.1 GET /moved host={VHOST} sni={VHOST} client=- connection=-"),
    ]);

    // A bad status: web1 down (quiescent: weight 0; the https section, quiescent=no: removed).
    web[0].answer(503, "status: up\n").expect("answer");
    let took = wait_reals(&lab, &lbd, 80, &[&w1(80, 0), &w2(80, 1)], Duration::from_secs(4));
    wait_reals(&lab, &lbd, 443, &[&w2(443, 1)], Duration::from_secs(4));
    wait_log(&lbd, &format!("real server {WEB1}:80 is down (HTTP status 503 for /health)"), Duration::from_secs(2)).expect("reason");
    println!("ldirectord http: down {took:?} after answering 503");
    // Back, then a body the regex does not match.
    web[0].answer(200, "status: up\n").expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 1), &w2(80, 1)], Duration::from_secs(4));
    web[0].answer(200, "status: down\n").expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 0), &w2(80, 1)], Duration::from_secs(4));
    wait_log(&lbd, &format!("real server {WEB1}:80 is down (/health: body does not match \"st.tus: (up|ok)\")"), Duration::from_secs(2))
        .expect("reason");
    // HEAD reads no body: still up on port 81.
    assert_eq!(reals(&lab, 81), [w1(81, 1)]);
    // web2 answers after 3 s: past negotiatetimeout (1 s), down.
    web[1].answer_after_3s().expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 0), &w2(80, 0)], Duration::from_secs(4));
    wait_log(&lbd, &format!("real server {WEB2}:80 is down (no answer within 1s)"), Duration::from_secs(2)).expect("reason");
}

fn keepalived_conf(ssl: &str, web1_body_md5: &str) -> String {
    format!(
        "{ssl}virtual_server {VIP} 80 {{\n  delay_loop 1\n  lb_kind DR\n  inhibit_on_failure\n\
         \x20 real_server {WEB1} 80 {{\n    HTTP_GET {{\n      url {{\n        path /health\n        digest {web1_body_md5}\n        \
         status_code 200\n      }}\n      connect_port 8088\n      connect_timeout 1\n      retry 0\n      virtualhost {VHOST}\n      http_protocol 1.0C\n    }}\n  }}\n\
         \x20 real_server {WEB2} 80 {{\n    HTTP_GET {{\n      url {{\n        path /health\n        regex \"^status: UP\"\n        \
         regex_options caseless\n        status_code 200-204\n      }}\n      connect_port 8088\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n}}\n\
         virtual_server {VIP} 443 {{\n  delay_loop 1\n  lb_kind DR\n\
         \x20 real_server {WEB1} 443 {{\n    SSL_GET {{\n      url {{\n        path /health\n      }}\n      connect_port 8443\n      \
         connect_timeout 1\n      retry 0\n      enable_sni\n      virtualhost {VHOST}\n      http_protocol 1.1\n    }}\n  }}\n\
         \x20 real_server {WEB2} 443 {{\n    SSL_GET {{\n      url {{\n        path /health\n      }}\n      connect_port 8443\n      \
         connect_timeout 1\n      retry 0\n    }}\n  }}\n}}\n"
    )
}

/// keepalived HTTP_GET: `digest` (MD5 of a 2 MiB body) with `status_code`, `regex` with
/// `regex_options caseless` and a status range, `connect_port`, `connect_timeout`, `retry`,
/// `virtualhost`; down with the reason on a changed body (digest), a status outside the list
/// and a body the regex misses. SSL_GET without an `SSL` block does not verify (as keepalived):
/// up; `enable_sni` sends the virtualhost as SNI, without it no SNI and Host is address:port.
#[test]
fn keepalived_http_get_ssl_get() {
    let HttpLab { lab, web, .. } = http_lab("hka");
    // web1's page is 2 MiB: the digest is the whole body's.
    let page = format!("status: up\n{}", "x".repeat(2 << 20));
    web[0].answer(200, &page).expect("answer");
    let md5_up = lb_user::health::http::md5_hex(page.as_bytes());
    let cfg = lab.dir.join("keepalived.conf");
    std::fs::write(&cfg, keepalived_conf("", &md5_up)).expect("config");
    let lbd = Lbd::start(&lab, &cfg, &[], &lab.dir.join("lbd.log")).expect("lbd");
    let w1 = |p: u16, w: u8| format!("{WEB1}:{p} {w}");
    let w2 = |p: u16, w: u8| format!("{WEB2}:{p} {w}");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 1), &w2(80, 1)], Duration::from_secs(5));
    wait_reals(&lab, &lbd, 443, &[&w1(443, 1), &w2(443, 1)], Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1200));
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(sorted(web[0].take_seen()), [
        format!("http HTTP/1.0 GET /health host={VHOST} sni=- client=- connection=close"),
        format!("https HTTP/1.1 GET /health host={VHOST} sni={VHOST} client=- connection=close"),
    ]);
    assert_eq!(sorted(web[1].take_seen()), [
        format!("http HTTP/1.0 GET /health host={WEB2}:8088 sni=- client=- connection=-"),
        format!("https HTTP/1.0 GET /health host={WEB2}:8443 sni=- client=- connection=-"),
    ]);

    // Another body: the digest differs (inhibit_on_failure: weight 0).
    web[0].answer(200, "status: up!\n").expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 0), &w2(80, 1)], Duration::from_secs(4));
    let md5_new = lb_user::health::http::md5_hex(b"status: up!\n");
    wait_log(&lbd, &format!("is down (/health: body digest {md5_new}, expected {md5_up})"), Duration::from_secs(2)).expect("reason");
    web[0].answer(200, &page).expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 1), &w2(80, 1)], Duration::from_secs(4));
    // The body is right, the status is not in status_code.
    web[0].answer(201, &page).expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 0), &w2(80, 1)], Duration::from_secs(4));
    wait_log(&lbd, &format!("real server {WEB1}:80 is down (HTTP status 201 for /health)"), Duration::from_secs(2)).expect("reason");
    // web2: 204 is in its range 200-204 and "STATUS: UP" matches caseless; "status: down" not.
    web[1].answer(204, "").expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 0), &w2(80, 0)], Duration::from_secs(4));
    wait_log(&lbd, &format!("real server {WEB2}:80 is down (/health: body does not match \"(?i)^status: UP\")"), Duration::from_secs(2))
        .expect("reason");
    web[1].answer(202, "STATUS: UP\n").expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 0), &w2(80, 1)], Duration::from_secs(4));
    // An answer after 3 s: past connect_timeout (1 s), down.
    web[1].answer_after_3s().expect("answer");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 0), &w2(80, 0)], Duration::from_secs(4));
    wait_log(&lbd, &format!("real server {WEB2}:80 is down (no answer within 1s)"), Duration::from_secs(2)).expect("reason");
}

/// keepalived SSL_GET with `SSL { ca FILE }`: lbd verifies the server's certificate against
/// that CA (keepalived 2.2.7 loads the file but does not verify: lbd's choice). A CA that did
/// not sign the certificate: down with the TLS reason; the CA that did: up, by name (SNI
/// www.example.test) and, without SNI, by the address in the certificate; `certificate` and
/// `key` are presented to the server that asks.
#[test]
fn keepalived_ssl_get_verifies_with_ca() {
    let HttpLab { lab, web, certs } = http_lab("hkv");
    let md5_up = lb_user::health::http::md5_hex(b"status: up\n");
    let cfg = lab.dir.join("keepalived.conf");
    let w1 = |p: u16, w: u8| format!("{WEB1}:{p} {w}");
    let w2 = |p: u16, w: u8| format!("{WEB2}:{p} {w}");

    let wrong = format!("SSL {{\n  ca {}\n}}\n", certs.join("other-ca.pem").display());
    std::fs::write(&cfg, keepalived_conf(&wrong, &md5_up)).expect("config");
    let mut lbd = Lbd::start(&lab, &cfg, &[], &lab.dir.join("lbd-wrong.log")).expect("lbd");
    wait_reals(&lab, &lbd, 80, &[&w1(80, 1), &w2(80, 1)], Duration::from_secs(5));
    wait_log(&lbd, &format!("real server {WEB1}:443 is down ("), Duration::from_secs(4)).expect("web1 down");
    wait_log(&lbd, &format!("real server {WEB2}:443 is down ("), Duration::from_secs(4)).expect("web2 down");
    wait_reals(&lab, &lbd, 443, &[], Duration::from_secs(2));
    let log = lbd.log_text();
    assert!(log.contains("invalid peer certificate: UnknownIssuer"), "{log}");
    for l in log.lines().filter(|l| l.contains(":443 is down")) {
        println!("{l}");
    }
    lbd.proc.stop();
    // The servers saw the handshake fail: no request reached them over TLS.
    for w in &web {
        assert!(w.take_seen().iter().all(|l| l.starts_with("http ")), "a request got through an unverified TLS session");
    }

    // The right CA, and a client certificate the servers ask for (optionally) and record.
    let right = format!(
        "SSL {{\n  ca {}\n  certificate {}\n  key {}\n}}\n",
        certs.join("ca.pem").display(),
        certs.join("client.pem").display(),
        certs.join("client.key").display()
    );
    std::fs::write(&cfg, keepalived_conf(&right, &md5_up)).expect("config");
    let lbd = Lbd::start(&lab, &cfg, &[], &lab.dir.join("lbd-right.log")).expect("lbd");
    wait_reals(&lab, &lbd, 443, &[&w1(443, 1), &w2(443, 1)], Duration::from_secs(5));
    assert!(!lbd.log_text().contains("is down"), "{}", lbd.log_text());
    std::thread::sleep(Duration::from_millis(1200));
    assert!(web[0].take_seen().contains(&format!("https HTTP/1.1 GET /health host={VHOST} sni={VHOST} client=lbd-client connection=close")));
    assert!(web[1].take_seen().contains(&format!("https HTTP/1.0 GET /health host={WEB2}:8443 sni=- client=lbd-client connection=-")));
}
