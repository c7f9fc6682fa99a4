//! The daemon's HTTP endpoint (issue #6), off unless `metrics_listen` is set:
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | OpenMetrics text of [`Metrics::encode`] (Prometheus reads it) |
//! | `/healthz` | 200 while the supervisor's loop beats (the systemd watchdog's signal); 503 when it has not for three heartbeats |
//! | `/readyz` | 200 when every database this daemon leads ticked within its expected period, or it is a healthy standby; else 503, one line per reason ([`Metrics::readiness`]) |
//!
//! hyper 1 (HTTP/1.1 only) over tokio, one task per connection; no routing crate, since
//! three fixed paths do not need one and every dependency costs memory in a daemon meant
//! to stay small with 1000 databases. Started by `daemon::run_with`; it stops when the
//! daemon's token is cancelled.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::Config;
use crate::daemon::HEARTBEAT_INTERVAL;
use crate::daemon::metrics::Metrics;

/// OpenMetrics text, which Prometheus negotiates and understands.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A client that sends nothing for this long is dropped (slowloris on an open port).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct State {
    /// The registry of database slots.
    pub metrics: Arc<Metrics>,
    /// The supervisor's heartbeat.
    pub heartbeat: watch::Receiver<Instant>,
    /// The live config (`/readyz` needs `ticker_period`).
    pub cfg: watch::Receiver<Arc<Config>>,
}

/// Accepts connections on `listener` until `token` is cancelled.
pub async fn serve(listener: TcpListener, state: State, token: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                debug!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, &req)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "metrics endpoint: connection ended");
                    }
                }
                _ = token.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

/// Routes one request.
fn handle(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "only GET and HEAD\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, OPENMETRICS, state.metrics.encode()),
        "/healthz" => {
            let age = state.heartbeat.borrow().elapsed();
            if age <= HEARTBEAT_INTERVAL * 3 {
                text(StatusCode::OK, PLAIN, "ok\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    format!(
                        "daemon loop has not reported for {}\n",
                        humantime::format_duration(Duration::from_secs(age.as_secs()))
                    ),
                )
            }
        }
        "/readyz" => {
            let cfg = state.cfg.borrow().clone();
            let r = state.metrics.readiness(&cfg);
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, PLAIN, r.text)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found; try /metrics, /healthz, /readyz\n".into(),
        ),
    }
}
