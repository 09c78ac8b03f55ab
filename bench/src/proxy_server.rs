//! What the bench's own Pingora proxies (`bare-proxy`, `sigv4-proxy`) share:
//! a server with `threads` workers and no shutdown grace, serving `proxy`
//! on `listen` until killed. Included by each of them with `#[path]`.

use pingora::prelude::*;
use pingora::proxy::ProxyHttp;
use pingora::server::configuration::ServerConf;

/// Runs `proxy` on `listen` with `threads` worker threads; never returns.
pub fn serve<P>(listen: &str, threads: &str, proxy: P) -> !
where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    let conf = ServerConf {
        threads: threads.parse().expect("threads is a number"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever()
}
