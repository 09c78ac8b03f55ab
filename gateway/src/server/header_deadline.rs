//! A total deadline for every request header (`server.request_header_timeout`).
//!
//! Pingora bounds each read of a header, not the header: a client that
//! sends a byte a minute holds a connection and a task for as long as it
//! likes, before it ever has to authenticate. This app wraps each client
//! connection of the S3 listeners in a stream that watches the bytes
//! crossing it ([`HeaderWatch`]) and fails its reads once a request header
//! has been arriving for longer than the deadline; Pingora then drops the
//! connection. Bodies are never on the clock (they follow authentication),
//! and neither is an idle keep-alive connection (Pingora's keep-alive
//! timeout bounds that).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use sealgate_filters::header_watch::HeaderWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The log budget of header timeouts: a slowloris makes them at will
/// (every one is still counted in the metric).
static TIMEOUT_LOG: crate::logging::Throttle = crate::logging::Throttle::new();

/// A client stream whose request headers run on a clock.
struct Watched {
    inner: Stream,
    watch: HeaderWatch,
    limit: Duration,
    /// Set while a header is open: fires at its deadline.
    clock: Option<Pin<Box<Sleep>>>,
    timeouts: IntCounter,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Watched {
    /// Starts the clock when a header has begun, stops it when none is open.
    fn follow(&mut self) {
        match (self.watch.header_open(), self.clock.is_some()) {
            (true, false) => self.clock = Some(Box::pin(tokio::time::sleep(self.limit))),
            (false, true) => self.clock = None,
            _ => {}
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Polled before the read so that a stalled read wakes at the deadline.
        if let Some(clock) = this.clock.as_mut() {
            if clock.as_mut().poll(cx).is_ready() {
                this.timeouts.inc();
                if let Some(left_out) = TIMEOUT_LOG.admit() {
                    let peer = this
                        .inner
                        .get_socket_digest()
                        .and_then(|d| d.peer_addr().map(|a| a.to_string()));
                    tracing::warn!(
                        peer = ?peer,
                        limit_s = this.limit.as_secs_f64(),
                        left_out,
                        "connection closed: request header not complete within server.request_header_timeout"
                    );
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request header not complete in time",
                )));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.watch.on_read(&buf.filled()[before..]);
        this.follow();
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.watch.on_write(&buf[..n]);
        this.follow();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            this.watch.on_write(&b[..take]);
            left -= take;
        }
        this.follow();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Watched {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Watched {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Watched {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Watched {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Watched {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Watched {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Watched {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// The S3 listeners' app: each HTTP/1 connection watched, then served by
/// `inner` as usual. (HTTP/2 frames its headers itself and is not watched.)
pub struct HeaderDeadlineApp<A> {
    pub inner: Arc<A>,
    pub limit: Duration,
    pub timeouts: IntCounter,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderDeadlineApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let session: Stream = if matches!(session.selected_alpn_proto(), Some(ALPN::H2)) {
            session
        } else {
            Box::new(Watched {
                inner: session,
                watch: HeaderWatch::new(),
                limit: self.limit,
                clock: None,
                timeouts: self.timeouts.clone(),
            })
        };
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
