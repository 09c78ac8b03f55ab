//! The gateway's own background work beside the proxy: the shutdown
//! signal (drain, then Pingora's graceful shutdown), the readiness probe,
//! the upstream's DNS refresh and the SIGHUP reload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::BackgroundService;
use tokio::sync::watch;

use crate::live::LiveState;
use crate::metrics::Metrics;
use crate::readiness::{
    Readiness, UpstreamHealth, UPSTREAM_CHECK_INTERVAL, UPSTREAM_CHECK_TIMEOUT,
};
use crate::upstream::UpstreamTarget;

/// How often the readiness probe retries connecting to our own listener
/// (and, shutting down, looks for requests still in flight).
pub const READY_PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Shutdown on our watch channel or on SIGTERM / SIGINT: readiness turns
/// to draining, the listeners serve on for the drain delay, then Pingora's
/// graceful shutdown closes them and gives in-flight requests the grace
/// period.
pub struct Shutdown {
    pub rx: watch::Receiver<bool>,
    pub unix_signals: bool,
    pub readiness: Arc<Readiness>,
    pub drain_delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Shutdown {
    async fn recv(&self) -> ShutdownSignal {
        let signal = self.signal().await;
        if matches!(signal, ShutdownSignal::GracefulUpgrade) {
            // The new process takes the listeners: nothing to drain.
            tracing::info!("upgrading: handing the listeners to the new process");
            return signal;
        }
        self.readiness.set_draining();
        tracing::info!(
            drain_delay_s = self.drain_delay.as_secs_f64(),
            "shutting down: not ready, draining"
        );
        tokio::time::sleep(self.drain_delay).await;
        signal
    }
}

impl Shutdown {
    async fn signal(&self) -> ShutdownSignal {
        let mut rx = self.rx.clone();
        let channel = async move {
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        if !self.unix_signals {
            channel.await;
            return ShutdownSignal::GracefulTerminate;
        }
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            channel.await;
            return ShutdownSignal::GracefulTerminate;
        };
        tokio::select! {
            _ = channel => ShutdownSignal::GracefulTerminate,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::GracefulTerminate,
            // Zero-downtime upgrade: a process started with --upgrade waits
            // on server.upgrade_sock for the listeners.
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}

/// Marks the gateway listening once its own S3 listener accepts a
/// connection, then checks the upstream while it serves; on shutdown, in
/// the binary, ends the process as soon as no request is in flight (the
/// grace period is the most it waits).
pub struct ReadyProbe {
    pub addr: SocketAddr,
    pub readiness: Arc<Readiness>,
    pub upstream: Arc<UpstreamTarget>,
    pub metrics: Arc<Metrics>,
    pub exit_when_idle: bool,
}

#[async_trait]
impl BackgroundService for ReadyProbe {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut target = self.addr;
        if target.ip().is_unspecified() {
            target.set_ip(if target.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        while !self.readiness.is_listening() {
            if tokio::net::TcpStream::connect(target).await.is_ok() {
                self.readiness.set_listening();
                break;
            }
            tokio::select! {
                _ = shutdown.changed() => return self.stopping().await,
                _ = tokio::time::sleep(READY_PROBE_INTERVAL) => {}
            }
        }
        let mut health = UpstreamHealth::default();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return self.stopping().await,
                _ = tokio::time::sleep(UPSTREAM_CHECK_INTERVAL) => {}
            }
            let up = health.observe(self.upstream_answers().await);
            self.metrics.upstream_up.set(i64::from(up));
        }
    }
}

impl ReadyProbe {
    /// Any HTTP answer (even a refusal) means the upstream is reachable.
    async fn upstream_answers(&self) -> bool {
        let (host, path) = self.upstream.address(None, None);
        let call = self
            .upstream
            .request("HEAD", &host, &path, &[], bytes::Bytes::new(), 0);
        matches!(
            tokio::time::timeout(UPSTREAM_CHECK_TIMEOUT, call).await,
            Ok(Ok(_))
        )
    }

    /// The listeners are closing: not ready; the binary exits once the
    /// last in-flight request is done.
    async fn stopping(&self) {
        self.readiness.set_draining();
        if !self.exit_when_idle {
            return;
        }
        while self.metrics.in_flight_requests.get() > 0 {
            tokio::time::sleep(READY_PROBE_INTERVAL).await;
        }
        tracing::info!("no request in flight: exiting");
        std::process::exit(0);
    }
}

/// Resolves the upstream's host name again every `storage.s3.dns_refresh`.
pub struct DnsRefresh {
    pub upstream: Arc<UpstreamTarget>,
    pub every: Duration,
}

#[async_trait]
impl BackgroundService for DnsRefresh {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.every) => self.upstream.refresh_address().await,
            }
        }
    }
}

/// Reloads the configuration file on every SIGHUP (`live.rs`).
pub struct Reloader {
    pub path: std::path::PathBuf,
    pub live: Arc<LiveState>,
    pub metrics: Arc<Metrics>,
    /// The HTTPS listener's certificate, read again with the file.
    pub cert: Option<Arc<crate::tls::ReloadableCert>>,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP: configuration reload is off");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = hangups.recv() => {
                    let cert = self.cert.as_deref();
                    let _ = crate::live::reload(&self.path, &self.live, &self.metrics, cert).await;
                }
            }
        }
    }
}
