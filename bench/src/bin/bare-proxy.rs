//! `bare-proxy`: Pingora with nothing but an upstream peer, the floor of
//! what any Pingora-based proxy costs per request. The benchmark runs it
//! beside sealgate so the table separates the framework's per-request cost
//! from sealgate's own (authentication, re-signing, metrics).
//!
//! `bare-proxy <listen addr> <upstream addr> <threads>`

use async_trait::async_trait;

#[path = "../proxy_server.rs"]
mod proxy_server;

/// The same allocator as sealgate's binary: glibc malloc costs a Pingora
/// proxy up to 0.15 CPU-s/GB here, which would lower the floor it shows.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pingora::prelude::*;

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
    let bare = Bare {
        upstream: upstream.parse().expect("upstream is host:port"),
    };
    proxy_server::serve(listen, threads, bare)
}
