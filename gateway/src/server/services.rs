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
use crate::server::readiness::{
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

/// How often the watched files are looked at for a change. A change is
/// acted on once the files held still for one more look (a file written in
/// place is not read half-way), so 5 to 10 s after it.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// A reload a file change started and that failed is tried again after
/// this, changed or not (a half-updated set of files, a key provider that
/// was down), until one takes.
pub const RETRY_FAILED_RELOAD: Duration = Duration::from_secs(60);

/// Reloads the configuration file on every SIGHUP (`live.rs`), and, with
/// `server.reload_on_change`, when it, the TLS certificate or key, or a
/// secret file changes: a mounted ConfigMap or Secret changes in place and
/// nothing signals the process.
pub struct Reloader {
    pub path: std::path::PathBuf,
    pub live: Arc<LiveState>,
    pub metrics: Arc<Metrics>,
    /// The HTTPS listener's certificate, read again with the file.
    pub cert: Option<Arc<crate::server::tls::ReloadableCert>>,
}

/// What tells a file changed without reading it (secrets are not read
/// to be compared): a replaced file (a Secret's new symlink target, an
/// editor's rename) has another inode; one written in place another
/// modification time or length. `None`: not there or not readable.
type Stamp = Option<(u64, u64, u64, Option<std::time::SystemTime>)>;

fn stamp(path: &std::path::Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    // Follows symlinks: a Secret's file is a link into its current data.
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.modified().ok()))
}

/// The files a running configuration was read from: the file itself, the
/// certificate and key, and every secret file.
fn watched(path: &std::path::Path, config: &sealgate_config::Config) -> Vec<std::path::PathBuf> {
    let mut files = vec![path.to_path_buf()];
    if let Some(tls) = &config.server.tls {
        files.push(tls.cert_file.clone());
        files.push(tls.key_file.clone());
    }
    files.extend(config.secret_files.iter().cloned());
    files
}

fn stamps(files: &[std::path::PathBuf]) -> Vec<Stamp> {
    files.iter().map(|f| stamp(f)).collect()
}

/// The watch's state between looks.
struct Watch {
    files: Vec<std::path::PathBuf>,
    /// What the files were when the configuration in force was read.
    stamps: Vec<Stamp>,
    /// A change seen at the last look, acted on if the next sees the same.
    pending: Option<Vec<Stamp>>,
    /// When to try again a reload that failed.
    retry_at: Option<tokio::time::Instant>,
}

impl Reloader {
    /// Reloads everything; `true` when it took.
    async fn reload(&self) -> bool {
        let cert = self.cert.as_deref();
        crate::live::reload(&self.path, &self.live, &self.metrics, cert)
            .await
            .is_ok()
    }

    /// A watch over the files of the configuration in force, as they are.
    fn watch(&self) -> Watch {
        let files = watched(&self.path, &self.live.load().config);
        let stamps = stamps(&files);
        Watch {
            files,
            stamps,
            pending: None,
            retry_at: None,
        }
    }

    /// One look at the watched files, and the reload a change calls for.
    async fn look(&self, w: &mut Watch) {
        let now = stamps(&w.files);
        let retry = w.retry_at.is_some_and(|t| tokio::time::Instant::now() >= t);
        if now == w.stamps && !retry {
            w.pending = None;
            return;
        }
        if now != w.stamps && w.pending.as_ref() != Some(&now) {
            // Still changing, or just changed: look once more first.
            w.pending = Some(now);
            return;
        }
        w.pending = None;
        let changed: Vec<&std::path::PathBuf> = w
            .files
            .iter()
            .zip(now.iter().zip(&w.stamps))
            .filter(|(_, (a, b))| a != b)
            .map(|(f, _)| f)
            .collect();
        let tls = self.live.load().config.server.tls.clone();
        let only_certificate = !changed.is_empty()
            && tls.as_ref().is_some_and(|t| {
                changed
                    .iter()
                    .all(|f| **f == t.cert_file || **f == t.key_file)
            });
        tracing::info!(files = ?changed, retry, "watched files changed: reloading");
        let ok = match (&self.cert, only_certificate) {
            (Some(cert), true) => {
                crate::live::reload_certificate(&self.live, &self.metrics, cert).is_ok()
            }
            _ => self.reload().await,
        };
        if ok {
            // The new configuration's files; those watched before keep the
            // stamps seen before the reload, so a change made while it ran
            // is seen at the next look.
            let files = watched(&self.path, &self.live.load().config);
            w.stamps = files
                .iter()
                .map(|f| match w.files.iter().position(|g| g == f) {
                    Some(i) => now[i],
                    None => stamp(f),
                })
                .collect();
            w.files = files;
            w.retry_at = None;
        } else {
            w.stamps = now;
            w.retry_at = Some(tokio::time::Instant::now() + RETRY_FAILED_RELOAD);
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP: configuration reload is off");
            return;
        };
        let mut w = self.watch();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let watching = self.live.load().config.server.reload_on_change;
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = hangups.recv() => {
                    self.reload().await;
                    w = self.watch();
                }
                _ = tick.tick(), if watching => self.look(&mut w).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_changes_when_a_file_is_replaced_or_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        assert_eq!(stamp(&file), None);
        std::fs::write(&file, "one").unwrap();
        let first = stamp(&file);
        assert!(first.is_some());
        assert_eq!(stamp(&file), first);
        // Replaced the way a Secret volume does it: a new file, renamed
        // over (same length, maybe the same modification time).
        let next = dir.path().join("next");
        std::fs::write(&next, "two").unwrap();
        std::fs::rename(&next, &file).unwrap();
        let second = stamp(&file);
        assert_ne!(second, first);
        // Written in place with another length.
        std::fs::write(&file, "three").unwrap();
        assert_ne!(stamp(&file), second);
    }
}
