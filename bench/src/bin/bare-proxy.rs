//! `bare-proxy`: Pingora with nothing but an upstream peer, the floor of
//! what any Pingora-based proxy costs per request. The benchmark runs it
//! beside sealgate so the table separates the framework's per-request cost
//! from sealgate's own (authentication, re-signing, metrics).
//!
//! `bare-proxy <listen addr> <upstream addr> <threads>`

use async_trait::async_trait;

/// The same allocator as sealgate's binary: glibc malloc costs a Pingora
/// proxy up to 0.15 CPU-s/GB here, which would lower the floor it shows.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, threads] = &args[..] else {
        eprintln!("usage: bare-proxy <listen addr> <upstream addr> <threads>");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: threads.parse().expect("threads is a number"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let bare = Bare {
        upstream: upstream.parse().expect("upstream is host:port"),
    };
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, bare);
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
