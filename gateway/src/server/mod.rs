//! Building and running the Pingora server: the S3 proxy service (plain
//! and/or TLS listeners), the admin service, and a handle that stops it.

pub(crate) mod admin;
pub(crate) mod header_deadline;
pub(crate) mod proxy_protocol;
pub(crate) mod readiness;
pub(crate) mod services;
pub(crate) mod tls;

use std::sync::Arc;
use std::time::Duration;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use sealgate_config::Config;
use tokio::sync::watch;

use crate::live::{Live, LiveState};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::server::admin::AdminApp;
use crate::server::readiness::Readiness;
use crate::server::services::{DnsRefresh, ReadyProbe, Reloader, Shutdown};
use crate::upstream::{UpstreamTarget, Upstreams};

/// What the runtimes get to stop once the grace period is over.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the configuration has no listener: set server.listen or server.tls")]
    NoListener,
    #[error("{0}")]
    Pingora(String),
    #[error("{0}")]
    Providers(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Upstream(crate::upstream::UpstreamError),
}

/// A running gateway; dropping it stops the server and waits for it.
pub struct GatewayHandle {
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

impl GatewayHandle {
    /// True once the S3 listener accepts connections.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_listening()
    }

    /// Stops the server (graceful, bounded by the configured grace period).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Options that differ between the binary and in-process tests.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Also stop on SIGTERM / SIGINT (the binary); tests use the handle only.
    pub unix_signals: bool,
    /// The file to load again on SIGHUP (the binary).
    pub config_path: Option<std::path::PathBuf>,
    /// Take the listening sockets over from a running process
    /// (`server.upgrade_sock`) instead of binding them.
    pub upgrade: bool,
}

/// Starts the gateway on its own thread and returns at once.
pub fn start(config: Config, options: RunOptions) -> Result<GatewayHandle, StartError> {
    let probe_addr = config
        .server
        .listen
        .or(config.server.tls.as_ref().map(|t| t.listen))
        .ok_or(StartError::NoListener)?;
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::register(prometheus::Registry::new())?);
    let readiness = Arc::new(Readiness::default());

    let conf = ServerConf {
        threads: config.server.threads,
        // The listeners close when shutdown begins (after the drain delay);
        // in-flight requests then have the grace period.
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(RUNTIME_SHUTDOWN_TIMEOUT.as_secs()),
        upgrade_sock: config.server.upgrade_sock.display().to_string(),
        ca_file: config
            .upstream
            .ca_bundle
            .as_ref()
            .map(|p| p.display().to_string()),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade: options.upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    // Resolving the credential chain is async; do it on a short-lived runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Pingora(e.to_string()))?;
    let upstreams = Arc::new(
        rt.block_on(Upstreams::new(&config))
            .map_err(StartError::Upstream)?,
    );
    for (bucket, target) in upstreams.distinct() {
        check_stored_checksum(&rt, target, bucket)?;
    }
    rt.block_on(crate::keys::check_at_start(&config))
        .map_err(StartError::Providers)?;
    let providers = rt
        .block_on(crate::keys::Providers::from_config(
            &config,
            Some(crate::keys::cache::KeyMetrics::from(&metrics)),
        ))
        .map_err(StartError::Providers)?;
    drop(rt);

    let live = Arc::new(LiveState::from_pointee(Live::new(
        config.clone(),
        providers,
    )));
    let cert = match &config.server.tls {
        Some(t) => Some(Arc::new(
            crate::server::tls::ReloadableCert::load(&t.cert_file, &t.key_file)
                .map_err(StartError::Pingora)?,
        )),
        None => None,
    };
    add_s3_service(
        &mut server,
        &config,
        upstreams.clone(),
        live.clone(),
        metrics.clone(),
        cert.clone(),
    )?;
    let every = config.upstream.dns_refresh;
    if !every.is_zero() {
        for (_, target) in upstreams.distinct() {
            server.add_service(background_service(
                "sealgate-dns-refresh",
                DnsRefresh {
                    upstream: target.clone(),
                    every,
                },
            ));
        }
    }
    if let Some(path) = options.config_path.clone() {
        server.add_service(background_service(
            "sealgate-reload",
            Reloader {
                path,
                live,
                metrics: metrics.clone(),
                cert: cert.clone(),
            },
        ));
    }

    if let Some(admin_addr) = config.server.admin_listen {
        let app = AdminApp {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            upstreams: upstreams.clone(),
            cert: cert.clone(),
        };
        let name = "sealgate-admin".to_string();
        let addr = admin_addr.to_string();
        // Behind an NLB with PROXY protocol its health checks carry a
        // header on the admin port too; probes from inside the cluster
        // do not.
        if config.server.proxy_protocol {
            let mut admin = Service::new(
                name,
                crate::server::proxy_protocol::ProxyProtocolApp {
                    inner: Arc::new(app),
                    refusals: metrics.proxy_protocol_refusals_total.clone(),
                    optional: true,
                },
            );
            admin.add_tcp(&addr);
            server.add_service(admin);
        } else {
            let mut admin = Service::new(name, app);
            admin.add_tcp(&addr);
            server.add_service(admin);
        }
    }
    server.add_service(background_service(
        "sealgate-ready-probe",
        ReadyProbe {
            addr: probe_addr,
            readiness: readiness.clone(),
            upstream: upstreams.default_target().clone(),
            metrics: metrics.clone(),
            exit_when_idle: options.unix_signals,
        },
    ));

    let (tx, rx) = watch::channel(false);
    let unix_signals = options.unix_signals;
    let shutdown_readiness = readiness.clone();
    let drain_delay = config.server.drain_delay;
    let thread = std::thread::Builder::new()
        .name("sealgate-server".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(Shutdown {
                    rx,
                    unix_signals,
                    readiness: shutdown_readiness,
                    drain_delay,
                }),
            })
        })
        .map_err(|e| StartError::Pingora(e.to_string()))?;
    Ok(GatewayHandle {
        shutdown: tx,
        thread: Some(thread),
        metrics,
        readiness,
    })
}

/// A backend's `stored_checksum` against the backend: `auto` learns what
/// it takes now (or at the first encrypted write, when no bucket can be
/// probed yet); an explicit `crc32c` the backend does not verify refuses to
/// start. The probe runs on its own target, whose pooled connections end
/// with this short-lived runtime; a bucket's own backend is probed in that
/// bucket, `storage.s3`'s in a bucket it lists.
fn check_stored_checksum(
    rt: &tokio::runtime::Runtime,
    upstream: &UpstreamTarget,
    bucket: Option<&str>,
) -> Result<(), StartError> {
    use sealgate_config::StoredChecksum;
    let cfg = upstream.config();
    let configured = cfg.stored_checksum;
    if configured == StoredChecksum::None {
        return Ok(());
    }
    let checker = rt
        .block_on(UpstreamTarget::named(cfg, upstream.setting()))
        .map_err(StartError::Upstream)?
        .with_elsewhere(upstream.elsewhere().to_vec());
    let found = rt.block_on(checker.check_trailers(bucket));
    drop(checker);
    let setting = upstream.setting();
    match (configured, found) {
        (StoredChecksum::Crc32c, Some(false)) => Err(StartError::Pingora(format!(
            "{setting}.stored_checksum is crc32c, but the backend at {} does not verify \
             aws-chunked trailers (it refused or mishandled a probe under .sealgate/probe/): \
             set stored_checksum to auto (the default) or none",
            cfg.endpoint.authority()
        ))),
        (StoredChecksum::Auto, Some(found)) => {
            upstream.assume_trailers(found);
            tracing::info!(
                backend = setting,
                endpoint = %cfg.endpoint.authority(),
                stored_checksum = if found { "crc32c" } else { "none" },
                "stored_checksum auto: probed the backend"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The S3 proxy service on its plain and/or TLS listeners, behind a
/// PROXY protocol reader where configured.
fn add_s3_service(
    server: &mut Server,
    config: &Arc<Config>,
    upstreams: Arc<Upstreams>,
    live: Arc<LiveState>,
    metrics: Arc<Metrics>,
    cert: Option<Arc<crate::server::tls::ReloadableCert>>,
) -> Result<(), StartError> {
    let refusals = metrics.proxy_protocol_refusals_total.clone();
    let timeouts = metrics.request_header_timeouts_total.clone();
    let gateway = Gateway::new(live, upstreams, metrics);
    let watched = crate::server::header_deadline::HeaderDeadlineApp {
        inner: Arc::new(pingora::proxy::http_proxy(&server.configuration, gateway)),
        limit: config.server.request_header_timeout,
        timeouts,
    };
    if config.server.proxy_protocol {
        let mut service = Service::new(
            "sealgate-s3".to_string(),
            crate::server::proxy_protocol::ProxyProtocolApp {
                inner: Arc::new(watched),
                refusals: refusals.clone(),
                optional: false,
            },
        );
        service.endpoints().set_pre_tls_callback(Arc::new(
            crate::server::proxy_protocol::BeforeTls { refusals },
        ));
        add_listeners(&mut service, config, cert)?;
        server.add_service(service);
    } else {
        let mut service = Service::new("sealgate-s3".to_string(), watched);
        add_listeners(&mut service, config, cert)?;
        server.add_service(service);
    }
    Ok(())
}

fn add_listeners<A: pingora::apps::ServerApp + Send + Sync + 'static>(
    service: &mut Service<A>,
    config: &Config,
    cert: Option<Arc<crate::server::tls::ReloadableCert>>,
) -> Result<(), StartError> {
    if let Some(addr) = config.server.listen {
        service.add_tcp(&addr.to_string());
    }
    if let (Some(tls), Some(cert)) = (&config.server.tls, cert) {
        let mut settings = pingora::listeners::tls::TlsSettings::intermediate("", "")
            .map_err(|e| StartError::Pingora(format!("TLS listener: {e}")))?;
        settings.set_cert_resolver(cert);
        service.add_tls_with_settings(&tls.listen.to_string(), None, settings);
    }
    Ok(())
}

/// Runs until SIGTERM / SIGINT (or SIGQUIT, after handing the listeners
/// over); reloads `path` on SIGHUP; `upgrade`: takes the listeners over
/// from the running process first.
pub fn run_forever(
    config: Config,
    path: &std::path::Path,
    upgrade: bool,
) -> Result<(), StartError> {
    let handle = start(
        config,
        RunOptions {
            unix_signals: true,
            config_path: Some(path.to_path_buf()),
            upgrade,
        },
    )?;
    let mut handle = handle;
    if let Some(t) = handle.thread.take() {
        let _ = t.join();
    }
    Ok(())
}
