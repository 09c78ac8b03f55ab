//! A real KMS API for the `aws-kms` rows: moto's server (from PyPI) with a
//! counting front in this process, so KMS calls are counted where the KMS
//! sees them, not in the gateway's code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// KMS calls seen by the front, by operation (`X-Amz-Target`'s suffix).
#[derive(Clone, Default)]
pub struct Counts(Arc<Mutex<HashMap<String, u64>>>);

impl Counts {
    pub fn get(&self, op: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    fn add(&self, op: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_default() += 1;
    }
}

/// moto's server on a free port, the counting front before it, and one
/// symmetric key.
pub struct LocalKms {
    moto: Child,
    /// The front's URL: what the gateway is configured with.
    pub url: String,
    pub key_id: String,
    pub counts: Counts,
}

impl Drop for LocalKms {
    fn drop(&mut self) {
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

/// Starts moto (None when `moto_server` is not installed) and the front.
pub async fn start(port: u16) -> Option<LocalKms> {
    let moto = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let moto_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    crate::wait_for(moto_addr);
    let key_id = create_key(moto_addr).await?;
    let counts = Counts::default();
    let front = front(moto_addr, counts.clone()).await;
    Some(LocalKms {
        moto,
        url: format!("http://{front}"),
        key_id,
        counts,
    })
}

/// One forwarded request on a new connection to moto (the front's own
/// cost stays out of the gateway's CPU either way).
async fn forward(
    moto: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(moto)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// CreateKey, unsigned (moto does not check signatures); the key id.
async fn create_key(moto: SocketAddr) -> Option<String> {
    let req = Request::post("/")
        .header("host", moto.to_string())
        .header("x-amz-target", "TrentService.CreateKey")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
        )
        .body(Full::new(Bytes::from_static(b"{}")))
        .ok()?;
    let resp = forward(moto, req).await.ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    let (_, rest) = text.split_once("\"KeyId\": \"")?;
    Some(rest.split('"').next()?.to_string())
}

/// The counting front on 127.0.0.1:0.
async fn front(moto: SocketAddr, counts: Counts) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind KMS front");
    let addr = listener.local_addr().expect("front address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counts = counts.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let counts = counts.clone();
                    async move {
                        let op = req
                            .headers()
                            .get("x-amz-target")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.rsplit('.').next())
                            .unwrap_or("?")
                            .to_string();
                        counts.add(op);
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let resp = forward(moto, Request::from_parts(parts, Full::new(body)))
                            .await
                            .unwrap_or_else(|_| {
                                Response::builder()
                                    .status(502)
                                    .body(Full::new(Bytes::new()))
                                    .expect("response")
                            });
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// PUTs counted against the KMS (the "per 10,000 PUTs").
const COUNTED_PUTS: usize = 10_000;
/// First PUTs into new buckets (each a data-key cache miss: the real
/// bucket is part of the encryption context) and warm PUTs, one at a time.
const LATENCY_SAMPLES: usize = 20;
/// Connections for the counted PUTs.
const COUNTED_CONCURRENCY: usize = 16;

/// First PUTs into one new bucket at once: a cold cache must make one
/// GenerateDataKey for all of them (single flight).
const COLD_BURST: usize = 64;
/// PUTs measured on the short-TTL gateway (and on the warm one, alike):
/// enough to span several data-key TTLs at this rate.
const TURNOVER_PUTS: usize = 30_000;
/// Connections for the turnover PUTs (moderate load).
const TURNOVER_CONCURRENCY: usize = 4;
/// The short-TTL gateway's data_key_cache_ttl (see `TURNOVER_TTL_CONFIG`).
pub const TURNOVER_TTL_CONFIG: &str = "1s";

/// Small-PUT ops/s of the same run: aws-kms, pass-through, `local`.
pub struct PutRates {
    pub kms: Option<f64>,
    pub pass: Option<f64>,
    pub local: Option<f64>,
}

/// The `aws-kms` rows: KMS calls per 10,000 1 KiB PUTs with a 5-minute
/// data-key TTL (counted at the KMS), warm-cache small PUT ops/s against
/// pass-through and the `local` provider (from the same run's table), and
/// the latency of a first PUT that has to call GenerateDataKey.
pub async fn report(
    out: &mut String,
    kms: &LocalKms,
    t: &crate::Target,
    rates: PutRates,
    earlier_puts: usize,
    turnover: Option<&crate::Target>,
) {
    use crate::load::{run, Op};
    use std::fmt::Write as _;
    let body = Bytes::from(vec![0x5au8; 1024]);
    let (gdk, total) = (kms.counts.get("GenerateDataKey"), kms.counts.total());
    let (earlier_gdk, earlier_total) = (gdk, total);
    let counted = run(
        t,
        Op::Put,
        "/bench/kms-count/k",
        1000,
        body.clone(),
        COUNTED_CONCURRENCY,
        COUNTED_PUTS,
    )
    .await;
    let gdk = kms.counts.get("GenerateDataKey") - gdk;
    let total = kms.counts.total() - total;
    let pid = std::process::id();
    let mut cold = crate::Outcome::default();
    for i in 0..LATENCY_SAMPLES {
        let path = format!("/cold-{pid}-{i}/k");
        cold.merge(run(t, Op::Put, &path, 1, body.clone(), 1, 1).await);
    }
    let warm = run(
        t,
        Op::Put,
        "/bench/kms-warm/k",
        1,
        body.clone(),
        1,
        LATENCY_SAMPLES,
    )
    .await;
    let gdk_before_burst = kms.counts.get("GenerateDataKey");
    let burst_path = format!("/burst-{pid}/k");
    let burst = run(
        t,
        Op::Put,
        &burst_path,
        COLD_BURST,
        body.clone(),
        COLD_BURST,
        COLD_BURST,
    )
    .await;
    let burst_gdk = kms.counts.get("GenerateDataKey") - gdk_before_burst;
    // Keys expiring under a steady stream of PUTs (refresh ahead), against
    // the same stream on the 5-minute gateway.
    let steady = run(
        t,
        Op::Put,
        "/bench/kms-steady/k",
        1000,
        body.clone(),
        TURNOVER_CONCURRENCY,
        TURNOVER_PUTS,
    )
    .await;
    let turnover_row = match turnover {
        Some(short) => {
            let gdk = kms.counts.get("GenerateDataKey");
            let o = run(
                short,
                Op::Put,
                "/bench/kms-turnover/k",
                1000,
                body,
                TURNOVER_CONCURRENCY,
                TURNOVER_PUTS,
            )
            .await;
            let calls = kms.counts.get("GenerateDataKey") - gdk;
            Some((o, calls))
        }
        None => None,
    };
    let ms = |o: &crate::Outcome, q: f64| o.quantile(q).as_secs_f64() * 1e3;
    let _ = writeln!(
        out,
        "\n| aws-kms (moto's KMS server, counted at the KMS; data_key_cache_ttl 5m) | value |"
    );
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(
        out,
        "| KMS calls during the measurement rounds ({earlier_puts} or more PUTs into one bucket, the first with a cold cache) | {earlier_total} ({earlier_gdk} GenerateDataKey) |"
    );
    let _ = writeln!(
        out,
        "| KMS calls during {COUNTED_PUTS} more 1 KiB PUTs (16 connections, same bucket) | {total} ({gdk} GenerateDataKey); errors {} |",
        counted.errors
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let _ = writeln!(
        out,
        "| small PUT ops/s, aws-kms warm cache vs pass-through | {} |",
        ratio(rates.kms, rates.pass)
    );
    let _ = writeln!(
        out,
        "| small PUT ops/s, aws-kms warm cache vs `local` provider | {} |",
        ratio(rates.kms, rates.local)
    );
    let _ = writeln!(
        out,
        "| first PUT into a new bucket (cache miss: GenerateDataKey), one at a time: p50 / max ms | {:.2} / {:.2} (errors {}) |",
        ms(&cold, 0.5),
        ms(&cold, 1.0),
        cold.errors
    );
    let _ = writeln!(
        out,
        "| warm PUT, one at a time: p50 / max ms | {:.2} / {:.2} (errors {}) |",
        ms(&warm, 0.5),
        ms(&warm, 1.0),
        warm.errors
    );
    let _ = writeln!(
        out,
        "| {COLD_BURST} concurrent first PUTs into one new bucket: GenerateDataKey calls (single flight) | {burst_gdk} (errors {}; p50 / p99 / max ms {:.2} / {:.2} / {:.2}) |",
        burst.errors,
        ms(&burst, 0.5),
        ms(&burst, 0.99),
        ms(&burst, 1.0)
    );
    let _ = writeln!(
        out,
        "| {TURNOVER_PUTS} PUTs, {TURNOVER_CONCURRENCY} connections, data key cached (5m TTL): p50 / p99 / max ms | {:.2} / {:.2} / {:.2} (errors {}) |",
        ms(&steady, 0.5),
        ms(&steady, 0.99),
        ms(&steady, 1.0),
        steady.errors
    );
    if let Some((o, calls)) = &turnover_row {
        let _ = writeln!(
            out,
            "| the same PUTs with the data key expiring every {TURNOVER_TTL_CONFIG} ({:.1} s of PUTs): p50 / p99 / max ms, GenerateDataKey calls | {:.2} / {:.2} / {:.2}, {calls} calls (errors {}) |",
            o.elapsed.as_secs_f64(),
            ms(o, 0.5),
            ms(o, 0.99),
            ms(o, 1.0),
            o.errors
        );
        let _ = writeln!(
            out,
            "| p99 with keys expiring vs cached | {:.2}x |",
            ms(o, 0.99) / ms(&steady, 0.99).max(1e-9)
        );
    }
}
