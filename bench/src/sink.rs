//! A minimal in-process S3 sink and source, fast enough not to hide the
//! gateway's cost: PUT stores the body (or, under `discard/`, only counts
//! it), GET and HEAD serve stored bytes with single ranges and the user
//! metadata given at PUT; CopyObject, and multipart uploads (Create,
//! UploadPart, ListParts, Complete) for the copy measurements. No
//! authentication: every contender signs, and the sink ignores it.

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

/// Multipart uploads in progress: upload id -> (object path, metadata, parts).
type Uploads = Arc<
    Mutex<
        HashMap<
            String,
            (
                String,
                Vec<(String, String)>,
                std::collections::BTreeMap<u32, Bytes>,
            ),
        >,
    >,
>;

/// Upload ids handed out.
static UPLOAD_IDS: AtomicU64 = AtomicU64::new(1);

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
    let uploads: Uploads = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            CONNECTIONS.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let store = store.clone();
            let uploads = uploads.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, store.clone(), uploads.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The value of query parameter `name`.
fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k == name).then(|| v.to_string())
    })
}

fn meta_of(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-amz-meta-"))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

fn xml(status: StatusCode, body: String) -> http::Result<Response<Full<Bytes>>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(body)))
}

/// Multipart calls and copies (None: not one of them).
async fn handle_extra(
    req: Request<Incoming>,
    path: &str,
    store: &Store,
    uploads: &Uploads,
) -> Result<http::Result<Response<Full<Bytes>>>, Request<Incoming>> {
    let upload_id = query_param(&req, "uploadId");
    let copy_source = req
        .headers()
        .get("x-amz-copy-source")
        .and_then(|v| v.to_str().ok())
        .map(|s| format!("/{}", s.trim_start_matches('/')));
    if query_param(&req, "tagging").is_some() {
        return Ok(xml(
            StatusCode::NOT_IMPLEMENTED,
            "<Error><Code>NotImplemented</Code></Error>".into(),
        ));
    }
    match (req.method().clone(), upload_id, copy_source) {
        (http::Method::POST, None, None) if query_param(&req, "uploads").is_some() => {
            let id = UPLOAD_IDS.fetch_add(1, Ordering::Relaxed).to_string();
            let meta = meta_of(&req);
            uploads
                .lock()
                .expect("sink uploads")
                .insert(id.clone(), (path.to_string(), meta, Default::default()));
            Ok(xml(StatusCode::OK, format!("<InitiateMultipartUploadResult><UploadId>{id}</UploadId></InitiateMultipartUploadResult>")))
        }
        (http::Method::PUT, Some(id), None) => {
            let n: u32 = query_param(&req, "partNumber")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let body = read_body(req).await;
            let mut u = uploads.lock().expect("sink uploads");
            let Some(up) = u.get_mut(&id) else {
                return Ok(xml(
                    StatusCode::NOT_FOUND,
                    "<Error><Code>NoSuchUpload</Code></Error>".into(),
                ));
            };
            up.2.insert(n, body);
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header("etag", format!("\"{n:032}\""))
                .body(Full::new(Bytes::new())))
        }
        (http::Method::GET, Some(id), None) => {
            let u = uploads.lock().expect("sink uploads");
            let Some(up) = u.get(&id) else {
                return Ok(xml(
                    StatusCode::NOT_FOUND,
                    "<Error><Code>NoSuchUpload</Code></Error>".into(),
                ));
            };
            let parts: String = up
                .2
                .iter()
                .map(|(n, b)| format!("<Part><PartNumber>{n}</PartNumber><ETag>&quot;{n:032}&quot;</ETag><Size>{}</Size></Part>", b.len()))
                .collect();
            Ok(xml(
                StatusCode::OK,
                format!(
                    "<ListPartsResult><IsTruncated>false</IsTruncated>{parts}</ListPartsResult>"
                ),
            ))
        }
        (http::Method::POST, Some(id), None) => {
            let list = read_body(req).await;
            let list = String::from_utf8_lossy(&list);
            let Some((object, meta, parts)) = uploads.lock().expect("sink uploads").remove(&id)
            else {
                return Ok(xml(
                    StatusCode::NOT_FOUND,
                    "<Error><Code>NoSuchUpload</Code></Error>".into(),
                ));
            };
            let mut body = BytesMut::new();
            let mut count = 0;
            for n in list
                .split("<PartNumber>")
                .skip(1)
                .filter_map(|s| s.split('<').next()?.trim().parse::<u32>().ok())
            {
                let Some(p) = parts.get(&n) else {
                    return Ok(xml(
                        StatusCode::BAD_REQUEST,
                        "<Error><Code>InvalidPart</Code></Error>".into(),
                    ));
                };
                body.extend_from_slice(p);
                count += 1;
            }
            store.lock().expect("sink store").insert(
                object,
                Object {
                    body: body.freeze(),
                    meta,
                },
            );
            Ok(xml(StatusCode::OK, format!("<CompleteMultipartUploadResult><ETag>&quot;{:032}-{count}&quot;</ETag></CompleteMultipartUploadResult>", 0)))
        }
        (http::Method::PUT, None, Some(source)) => {
            let replace = req
                .headers()
                .get("x-amz-metadata-directive")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"REPLACE"));
            let new_meta = meta_of(&req);
            let mut s = store.lock().expect("sink store");
            let Some(src) = s.get(&source).cloned() else {
                return Ok(xml(
                    StatusCode::NOT_FOUND,
                    "<Error><Code>NoSuchKey</Code></Error>".into(),
                ));
            };
            let meta = if replace { new_meta } else { src.meta };
            s.insert(
                path.to_string(),
                Object {
                    body: src.body,
                    meta,
                },
            );
            Ok(xml(StatusCode::OK, "<CopyObjectResult><ETag>&quot;00000000000000000000000000000000&quot;</ETag></CopyObjectResult>".into()))
        }
        _ => Err(req),
    }
}

/// A request body, aws-chunked decoded when it is (as a backend would).
async fn read_body(req: Request<Incoming>) -> Bytes {
    let mut decoder = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.contains("aws-chunked"))
        .map(|_| sealgate_filters::s3::body::chunked::ChunkedDecoder::new(None));
    // Sized up front: growing a large buffer by doubling costs the sink
    // page faults and copies that would show as copy time.
    let len = ["x-amz-decoded-content-length", "content-length"]
        .iter()
        .find_map(|n| req.headers().get(*n)?.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = req.into_body();
    let mut buf = BytesMut::with_capacity(len);
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
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
    buf.freeze()
}

async fn handle(
    req: Request<Incoming>,
    store: Store,
    uploads: Uploads,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let discard = path.contains("/discard/");
    let req = match handle_extra(req, &path, &store, &uploads).await {
        Ok(resp) => return Ok(resp.expect("static response parts are valid")),
        Err(req) => req,
    };
    let resp = match *req.method() {
        http::Method::PUT => {
            let meta = meta_of(&req);
            if discard {
                // Counted, not kept: the large-object runs measure the proxy.
                let mut body = req.into_body();
                while let Some(Ok(_)) = body.frame().await {}
            } else {
                // aws-chunked bodies (the gateway's trailing checksums) are
                // decoded as a backend would; the trailer is not checked.
                let body = read_body(req).await;
                store
                    .lock()
                    .expect("sink store")
                    .insert(path, Object { body, meta });
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
