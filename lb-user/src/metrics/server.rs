//! The HTTP side of `/metrics`: hyper's HTTP/1 server, one task per connection.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{Format, Shared};

/// How long a client may take to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` (and `/`) until the task is dropped.
pub async fn serve(listener: TcpListener, dir: PathBuf, shared: Arc<Mutex<Shared>>) {
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (dir, shared) = (dir.clone(), shared.clone());
        tokio::spawn(async move {
            let answer = service_fn(move |req| answer(req, dir.clone(), shared.clone()));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(conn), answer)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics: connection ended");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn answer(req: Request<Incoming>, dir: PathBuf, shared: Arc<Mutex<Shared>>) -> Result<Response<Full<Bytes>>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET and HEAD\n".into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    if req.uri().path() != "/metrics" && req.uri().path() != "/" {
        return Ok(reply(StatusCode::NOT_FOUND, PLAIN, "see /metrics\n".into()));
    }
    let format = Format::from_accept(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let snapshot = shared.lock().map(|s| s.clone()).unwrap_or_default();
    // The store is read on a blocking thread: its lock may make us wait for lbadm.
    let scraped = tokio::task::spawn_blocking(move || super::snapshot(&dir, Some(&snapshot)).map(|s| s.encode(format))).await;
    Ok(match scraped {
        Ok(Ok((body, content_type))) => reply(StatusCode::OK, content_type, body),
        Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e:#}\n")),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")),
    })
}
