//! A minimal in-process S3 sink and source, fast enough not to hide the
//! gateway's cost: PUT stores the body (or, under `discard/`, only counts
//! it), GET and HEAD serve stored bytes with single ranges and the user
//! metadata given at PUT. No authentication: every contender signs, and the
//! sink ignores it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A stored object: its body and the `x-amz-meta-*` headers it came with.
#[derive(Clone)]
struct Object {
    body: Bytes,
    meta: Vec<(String, String)>,
}

type Store = Arc<Mutex<HashMap<String, Object>>>;

/// Connections the sink accepted: shows whether a proxy reuses its
/// upstream connections (a new one per request doubles the socket work).
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Connections accepted so far.
pub fn connections() -> u64 {
    CONNECTIONS.load(Ordering::Relaxed)
}

/// Starts the sink on 127.0.0.1:0; returns its address.
pub async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sink");
    let addr = listener.local_addr().expect("sink address");
    let store: Store = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            CONNECTIONS.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let store = store.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, store.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn handle(req: Request<Incoming>, store: Store) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let discard = path.contains("/discard/");
    let resp = match *req.method() {
        http::Method::PUT => {
            let meta: Vec<(String, String)> = req
                .headers()
                .iter()
                .filter(|(k, _)| k.as_str().starts_with("x-amz-meta-"))
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            // aws-chunked bodies (the gateway's trailing checksums) are
            // decoded as a backend would; the trailer is not checked.
            let mut decoder = req
                .headers()
                .get(http::header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.contains("aws-chunked"))
                .map(|_| sealgate_filters::s3::chunked::ChunkedDecoder::new(None));
            let mut body = req.into_body();
            let mut buf = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    if discard {
                        continue;
                    }
                    match &mut decoder {
                        Some(d) => {
                            if d.push(&data, |b| buf.extend_from_slice(b)).is_err() {
                                break;
                            }
                        }
                        None => buf.extend_from_slice(&data),
                    }
                }
            }
            if !discard {
                store.lock().expect("sink store").insert(
                    path,
                    Object {
                        body: buf.freeze(),
                        meta,
                    },
                );
            }
            Response::builder()
                .status(StatusCode::OK)
                .header("etag", "\"00000000000000000000000000000000\"")
                .body(Full::new(Bytes::new()))
        }
        http::Method::GET | http::Method::HEAD => {
            let head = req.method() == http::Method::HEAD;
            let obj = store.lock().expect("sink store").get(&path).cloned();
            match obj {
                None => Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Full::new(Bytes::new())),
                Some(obj) => {
                    let total = obj.body.len() as u64;
                    let range = req
                        .headers()
                        .get(http::header::RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_range(v, total));
                    let (status, body, first, last) = match range {
                        Some((a, b)) => (
                            StatusCode::PARTIAL_CONTENT,
                            obj.body.slice(a as usize..=b as usize),
                            a,
                            b,
                        ),
                        None => (StatusCode::OK, obj.body.clone(), 0, total.saturating_sub(1)),
                    };
                    let mut r = Response::builder()
                        .status(status)
                        .header("etag", "\"00000000000000000000000000000000\"")
                        .header("content-length", body.len());
                    if status == StatusCode::PARTIAL_CONTENT {
                        r = r.header("content-range", format!("bytes {first}-{last}/{total}"));
                    }
                    for (k, v) in &obj.meta {
                        r = r.header(k.as_str(), v.as_str());
                    }
                    r.body(Full::new(if head { Bytes::new() } else { body }))
                }
            }
        }
        _ => Response::builder()
            .status(StatusCode::NOT_IMPLEMENTED)
            .body(Full::new(Bytes::new())),
    };
    Ok(resp.expect("static response parts are valid"))
}

fn parse_range(v: &str, total: u64) -> Option<(u64, u64)> {
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        return (n > 0 && total > 0).then(|| (total.saturating_sub(n), total - 1));
    }
    let a: u64 = a.parse().ok()?;
    let b = if b.is_empty() {
        total.checked_sub(1)?
    } else {
        b.parse::<u64>().ok()?.min(total.checked_sub(1)?)
    };
    (a <= b).then_some((a, b))
}
