//! PROXY protocol v2 on the S3 listeners (`server.proxy_protocol`): behind
//! an NLB the gateway's peer is the balancer; the header it sends first
//! names the real client, which then is the connection's peer address for
//! everything after (access lines, logs). There, a connection without a
//! valid header is refused: anyone reaching the port directly could
//! otherwise claim any address. The header is read before TLS on the TLS
//! listener (a pre-TLS callback) and before HTTP on the plain one (this
//! app around the proxy).
//!
//! The admin listener takes a header where one is sent and serves plain
//! connections as well: an NLB with proxy protocol sends one on every
//! health-check connection (the LOCAL command), while kubelet probes and
//! Prometheus connect directly. Its endpoints answer without credentials
//! and it logs no client address, so a claimed one changes nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use sealgate_filters::proxy_protocol::{
    parse_v2, v2_payload_len, ProxyError, ProxyHeader, V2_FIXED_LEN, V2_SIGNATURE,
};
use tokio::io::AsyncReadExt;

/// Longest a new connection may take to send its header (a slow or silent
/// connection holds nothing for long).
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The log budgets of refused headers, one per listener kind (scanners
/// on the S3 port must not hide a misconfigured health check on the admin
/// port): anyone who can connect can repeat them (every one is still
/// counted in the metric).
static REFUSAL_LOG: crate::logging::Throttle = crate::logging::Throttle::new();
static ADMIN_REFUSAL_LOG: crate::logging::Throttle = crate::logging::Throttle::new();

/// Reads the header at the start of `stream` and makes its client the
/// stream's peer; counts and refuses anything else.
async fn accept(
    stream: &mut L4Stream,
    refusals: &prometheus::IntCounterVec,
) -> pingora::Result<()> {
    let header = tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_header(stream)).await;
    let reason = match header {
        // Nothing sent: a TCP health check, not worth a warning.
        Ok(Err(Empty)) => return Err(pingora::Error::new(pingora::ErrorType::ConnectionClosed)),
        Ok(Ok(Ok(ProxyHeader::Proxied { source, .. }))) => {
            use std::os::unix::io::AsRawFd;
            let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
            let _ = digest.peer_addr.set(Some(source.into()));
            stream.set_socket_digest(digest);
            return Ok(());
        }
        Ok(Ok(Ok(ProxyHeader::Local))) => return Ok(()),
        Ok(Ok(Err(e))) => refusal_reason(e),
        Err(_) => "timeout",
    };
    refusals.with_label_values(&[reason]).inc();
    if let Some(left_out) = REFUSAL_LOG.admit() {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().map(|a| a.to_string()));
        tracing::warn!(peer = ?peer, reason, left_out, "connection refused: no valid PROXY protocol v2 header");
    }
    Err(pingora::Error::new(pingora::ErrorType::InvalidHTTPHeader))
}

/// Reads a header if the connection starts with one; a connection that
/// starts otherwise is served as it is (its first bytes put back). A
/// header that starts but is not valid is refused, as on the S3 listeners.
async fn accept_optional(
    stream: &mut L4Stream,
    refusals: &prometheus::IntCounterVec,
) -> pingora::Result<()> {
    /// What the start of the connection turned out to be.
    enum Start {
        Plain(usize),
        Header(Result<ProxyHeader, ProxyError>),
    }
    let mut start = [0u8; V2_SIGNATURE.len()];
    // One deadline for all of it: a silent connection, or one stalled
    // within a signature or header, is closed after it.
    let read = async {
        let mut got = 0;
        // Never past the signature: an HTTP request differs from it in its
        // first byte, so at most what was read is put back.
        while got < start.len() {
            match stream.read(&mut start[got..]).await {
                Ok(0) | Err(_) if got == 0 => return Err(Empty),
                Ok(0) | Err(_) => return Ok(Start::Header(Err(ProxyError::NoHeader))),
                Ok(n) => got += n,
            }
            if start[..got] != V2_SIGNATURE[..got] {
                return Ok(Start::Plain(got));
            }
        }
        let mut fixed = [0u8; V2_FIXED_LEN];
        fixed[..start.len()].copy_from_slice(&start);
        if stream.read_exact(&mut fixed[start.len()..]).await.is_err() {
            return Ok(Start::Header(Err(ProxyError::Malformed)));
        }
        Ok(Start::Header(parse_rest(stream, &fixed).await))
    };
    let reason = match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read).await {
        Ok(Ok(Start::Plain(got))) => {
            stream.rewind(&start[..got]);
            return Ok(());
        }
        Ok(Ok(Start::Header(Ok(_)))) => return Ok(()),
        // Closed before a first byte (a TCP check).
        Ok(Err(Empty)) => return Err(pingora::Error::new(pingora::ErrorType::ConnectionClosed)),
        Ok(Ok(Start::Header(Err(e)))) => refusal_reason(e),
        Err(_) => "timeout",
    };
    refusals.with_label_values(&[reason]).inc();
    if let Some(left_out) = ADMIN_REFUSAL_LOG.admit() {
        tracing::warn!(
            reason,
            listener = "admin",
            left_out,
            "connection refused: a PROXY protocol v2 header that is not valid"
        );
    }
    Err(pingora::Error::new(pingora::ErrorType::InvalidHTTPHeader))
}

/// The `reason` label of a refused header.
fn refusal_reason(e: ProxyError) -> &'static str {
    match e {
        ProxyError::NoHeader => "no_header",
        ProxyError::Unsupported => "unsupported",
        ProxyError::TooLong => "too_long",
        ProxyError::Malformed => "malformed",
    }
}

/// A connection closed before sending anything (a TCP health check).
struct Empty;

async fn read_header(stream: &mut L4Stream) -> Result<Result<ProxyHeader, ProxyError>, Empty> {
    let mut fixed = [0u8; V2_FIXED_LEN];
    let mut got = 0;
    while got < V2_FIXED_LEN {
        match stream.read(&mut fixed[got..]).await {
            Ok(0) | Err(_) if got == 0 => return Err(Empty),
            Ok(0) | Err(_) => return Ok(Err(ProxyError::NoHeader)),
            Ok(n) => got += n,
        }
    }
    Ok(parse_rest(stream, &fixed).await)
}

async fn parse_rest(
    stream: &mut L4Stream,
    fixed: &[u8; V2_FIXED_LEN],
) -> Result<ProxyHeader, ProxyError> {
    let mut payload = vec![0u8; v2_payload_len(fixed)?];
    stream
        .read_exact(&mut payload)
        .await
        .map_err(|_| ProxyError::Malformed)?;
    parse_v2(fixed, &payload)
}

/// The pre-TLS callback of the TLS listener.
pub struct BeforeTls {
    pub refusals: prometheus::IntCounterVec,
}

#[async_trait]
impl PreTlsProcess for BeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        accept(stream, &self.refusals).await
    }
}

/// The plain listener's app: the header first, then the proxy serves the
/// connection (every request on it) as usual.
pub struct ProxyProtocolApp<A> {
    pub inner: Arc<A>,
    pub refusals: prometheus::IntCounterVec,
    /// A connection without a header is served too (the admin listener).
    pub optional: bool,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ProxyProtocolApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // TLS streams had their header read before the handshake.
        let mut next = if session.as_any().is::<L4Stream>() {
            let mut l4 = session.into_any().downcast::<L4Stream>().ok()?;
            if self.optional {
                accept_optional(&mut l4, &self.refusals).await.ok()?;
            } else {
                accept(&mut l4, &self.refusals).await.ok()?;
            }
            Some(l4 as Stream)
        } else {
            Some(session)
        };
        // The connection's later requests stay here: a reused stream handed
        // back to the service would be read for a header again.
        while let Some(s) = next {
            next = self.inner.process_new(s, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
