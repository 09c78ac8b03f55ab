//! The admin listener: `/metrics` (Prometheus), `/healthz` (the process is
//! up) and `/readyz` (serving and not draining: `readiness.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;

/// Serves the admin endpoints.
pub struct AdminApp {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<crate::server::readiness::Readiness>,
    /// Every backend (for the stored-checksum gauge).
    pub upstreams: Arc<crate::upstream::Upstreams>,
    /// The HTTPS listener's certificate (for its expiry gauge).
    pub cert: Option<Arc<crate::server::tls::ReloadableCert>>,
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => {
                let ready = self.readiness.report().is_ok();
                self.metrics.ready.set(i64::from(ready));
                if let Some(cert) = &self.cert {
                    self.metrics
                        .tls_certificate_expiry
                        .with_label_values(&["https"])
                        .set(cert.not_after());
                }
                {
                    // One scrape at a time brings the counter up to the
                    // writer's count (two at once would both add the gap).
                    static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());
                    let _one = SYNC.lock().unwrap_or_else(|p| p.into_inner());
                    let dropped = &self.metrics.log_lines_dropped_total;
                    dropped.inc_by(crate::logging::dropped_lines().saturating_sub(dropped.get()));
                }
                for (_, target) in self.upstreams.distinct() {
                    let now = target.stored_checksum_state();
                    for state in crate::upstream::StoredChecksumState::ALL {
                        self.metrics
                            .backend_stored_checksum
                            .with_label_values(&[target.setting(), state.as_str()])
                            .set(i64::from(state == now));
                    }
                }
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                )
            }
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => match self.readiness.report() {
                Ok(()) => text(StatusCode::OK, "text/plain", "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{why}\n"),
                ),
            },
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}
