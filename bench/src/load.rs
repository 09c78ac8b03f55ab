//! The load generator: workers on their own keep-alive HTTP/1.1
//! connections, each request signed with SigV4 (UNSIGNED-PAYLOAD, so
//! signing costs the same for every contender and never hashes the body).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Which S3 call to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    Head,
}

/// Where to send requests and as whom.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub access_key: String,
    pub secret_key: String,
}

/// What one load run measured.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub ops: u64,
    pub errors: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    /// Adds another run of the same measurement (rounds of one contender).
    pub fn merge(&mut self, other: Outcome) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }

    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of latencies (0.5, 0.99).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

fn signed_request(t: &Target, method: &str, path: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    signed_request_with(t, method, path, &[], body)
}

/// A signed request with `extra` headers (signed too).
pub fn signed_request_with(
    t: &Target,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    let host = t.addr.to_string();
    let url = format!("http://{host}{path}");
    let len = body.len().to_string();
    let mut headers = vec![
        ("host", host.as_str()),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ];
    if method == "PUT" || method == "POST" {
        headers.push(("content-length", len.as_str()));
    }
    headers.extend_from_slice(extra);
    let identity: Identity =
        Credentials::new(&t.access_key, &t.secret_key, None, None, "bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        method,
        url.clone(),
        headers.iter().copied(),
        SignableBody::UnsignedPayload,
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let mut req = http::Request::builder().method(method).uri(path);
    for (k, v) in &headers {
        req = req.header(*k, *v);
    }
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    req.body(Full::new(body)).expect("request parts")
}

/// Runs `count` operations spread over `concurrency` connections.
/// PUT bodies are `body`; keys are `{prefix}{i % keys}`.
pub async fn run(
    t: &Target,
    op: Op,
    path_prefix: &str,
    keys: usize,
    body: Bytes,
    concurrency: usize,
    count: usize,
) -> Outcome {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let t = t.clone();
        let body = body.clone();
        let prefix = path_prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            let stream = match tokio::net::TcpStream::connect(t.addr).await {
                Ok(s) => s,
                Err(_) => {
                    out.errors += 1;
                    return out;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                out.errors += 1;
                return out;
            };
            tokio::spawn(conn);
            let mut i = w;
            while i < count {
                let path = format!("{prefix}{}", i % keys.max(1));
                let (method, payload) = match op {
                    Op::Put => ("PUT", body.clone()),
                    Op::Get => ("GET", Bytes::new()),
                    Op::Head => ("HEAD", Bytes::new()),
                };
                let req = signed_request(&t, method, &path, payload);
                let began = Instant::now();
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let mut b = resp.into_body();
                        let mut n = 0u64;
                        while let Some(Ok(frame)) = b.frame().await {
                            if let Ok(d) = frame.into_data() {
                                n += d.len() as u64;
                            }
                        }
                        out.latencies.push(began.elapsed());
                        if ok {
                            out.ops += 1;
                            out.bytes += if op == Op::Put { body.len() as u64 } else { n };
                        } else {
                            out.errors += 1;
                        }
                    }
                    Err(_) => {
                        out.errors += 1;
                        break;
                    }
                }
                i += concurrency;
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for t in tasks {
        if let Ok(o) = t.await {
            total.ops += o.ops;
            total.errors += o.errors;
            total.bytes += o.bytes;
            total.latencies.extend(o.latencies);
        }
    }
    total.elapsed = started.elapsed();
    total
}
