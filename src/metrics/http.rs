//! The HTTP endpoint: `GET /metrics`, `/healthz`, `/readyz` over HTTP/1.1
//! (hyper), with a cap on connections, header size and time, so a stuck or
//! hostile scraper cannot hold resources.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{ready, Metrics};
use crate::pooler::Control;

/// Scrapers and probers connected at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// A request's headers must arrive within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (keep-alive included) is closed after this long.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Read buffer per connection (hyper's minimum), which bounds the request head.
const MAX_BUF: usize = 8192;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn serve(metrics: Arc<Metrics>, control: Arc<Control>, listener: TcpListener) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropping the set (when the pooler stops) ends every connection.
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let (metrics, control) = (Arc::clone(&metrics), Arc::clone(&control));
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let (metrics, control) = (Arc::clone(&metrics), Arc::clone(&control));
                async move { Ok::<_, Infallible>(respond(&metrics, &control, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_BUF)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

async fn respond(
    metrics: &Metrics,
    control: &Control,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, metrics.render(control));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match ready::check(control).await {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(problems) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready:\n{}\n", problems.join("\n")),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
