//! `sigv4-proxy`: the bench's bare proxy plus what every gateway that
//! re-signs S3 requests must do, and nothing else: the upstream timeouts
//! sealgate sets (its defaults), the client's SigV4 signature checked, and
//! the request signed again with the backend's key, both with sealgate's
//! own SigV4 code and signing keys kept per day as sealgate keeps them.
//! It is the floor of a re-signing S3 proxy on Pingora: the bench puts
//! sealgate pass-through beside it, so what lies between the two is
//! sealgate's work beyond the protocol (classification, routing,
//! permissions, metrics, audit), and what lies between it and
//! `bare-proxy` is the protocol's and the timeouts'.
//!
//! `sigv4-proxy <listen> <upstream> <threads> <client key> <client secret> <backend key> <backend secret>`

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use sealgate_filters::s3::auth::sigv4::{self, RequestParts, ScopedKey};
use sealgate_filters::s3::uri;
use zeroize::Zeroizing;

#[path = "../proxy_server.rs"]
mod proxy_server;

/// The same allocator as sealgate's binary (see `bare-proxy`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sealgate's defaults for `storage.s3.connect_timeout` / `read_timeout`
/// and its pooled connections' idle timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Clock skew a signed request may have (sealgate's default).
const MAX_SKEW_SECS: i64 = 15 * 60;
const REGION: &str = "us-east-1";

/// A signing key and the (date, region) it signs for.
type DayKey = (String, String, Zeroizing<[u8; 32]>);

struct Resigning {
    upstream: SocketAddr,
    authority: String,
    client_key: String,
    client_secret: Vec<u8>,
    backend_key: String,
    backend_secret: Vec<u8>,
    /// The client's signing key for one (date, region), as sealgate keeps it.
    verify_key: Mutex<Option<DayKey>>,
    /// The backend's signing key for one date.
    sign_key: Mutex<Option<Arc<ScopedKey>>>,
}

impl Resigning {
    fn verify_key(&self, date: &str, region: &str) -> Zeroizing<[u8; 32]> {
        let mut slot = self.verify_key.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some((d, r, k)) if d == date && r == region => k.clone(),
            _ => {
                let k = sigv4::signing_key(&self.client_secret, date, region, "s3");
                *slot = Some((date.to_string(), region.to_string(), k.clone()));
                k
            }
        }
    }

    fn sign_key(&self, date: &str) -> Arc<ScopedKey> {
        let mut slot = self.sign_key.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(k) if k.fits(&self.backend_key, &self.backend_secret, date) => k.clone(),
            _ => {
                let k = Arc::new(ScopedKey::new(
                    &self.backend_key,
                    &self.backend_secret,
                    date,
                    REGION,
                ));
                *slot = Some(k.clone());
                k
            }
        }
    }

    fn verified(&self, req: &RequestHeader) -> bool {
        let Some(query) = uri::parse_query(req.uri.query().unwrap_or("")) else {
            return false;
        };
        let parts = RequestParts {
            method: req.method.as_str(),
            raw_path: req.uri.path(),
            query: &query,
            headers: &req.headers,
        };
        match sigv4::parse(&query, &req.headers) {
            Ok(Some(auth)) if auth.access_key_id == self.client_key => sigv4::verify_with(
                &auth,
                &parts,
                |d, r| self.verify_key(d, r),
                unix_now(),
                MAX_SKEW_SECS,
            )
            .is_ok(),
            _ => false,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[async_trait]
impl ProxyHttp for Resigning {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        if self.verified(session.req_header()) {
            return Ok(false);
        }
        session.respond_error(403).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.total_connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.read_timeout = Some(READ_TIMEOUT);
        peer.options.write_timeout = Some(READ_TIMEOUT);
        peer.options.idle_timeout = Some(IDLE_TIMEOUT);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        let payload_hash = req
            .headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("UNSIGNED-PAYLOAD")
            .to_string();
        req.remove_header("authorization");
        req.insert_header(http::header::HOST, self.authority.as_str())?;
        let amz_date = sigv4::format_amz_date(unix_now());
        req.insert_header("x-amz-date", amz_date.as_str())?;
        let key = self.sign_key(&amz_date[..8]);
        let authorization = key.authorize_request(
            req.method.as_str(),
            &req.uri,
            &req.headers,
            &payload_hash,
            &amz_date,
        );
        req.insert_header(http::header::AUTHORIZATION, authorization)?;
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, threads, client_key, client_secret, backend_key, backend_secret] =
        &args[..]
    else {
        eprintln!("usage: sigv4-proxy <listen> <upstream> <threads> <client key> <client secret> <backend key> <backend secret>");
        std::process::exit(2);
    };
    let proxy = Resigning {
        upstream: upstream.parse().expect("upstream is host:port"),
        authority: upstream.clone(),
        client_key: client_key.clone(),
        client_secret: client_secret.as_bytes().to_vec(),
        backend_key: backend_key.clone(),
        backend_secret: backend_secret.as_bytes().to_vec(),
        verify_key: Mutex::new(None),
        sign_key: Mutex::new(None),
    };
    proxy_server::serve(listen, threads, proxy)
}
