//! Copy rows: what a copy of a large encrypted object costs the gateway.
//! A server-side CopyObject (the envelope is the bucket's: the backend
//! copies, the gateway only probes), a multipart copy with UploadPartCopy
//! (the gateway reads, decrypts, encrypts and writes every byte), and the
//! client's alternative, a GET and a PUT of the object through the gateway.

use std::fmt::Write as _;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::load::{signed_request_with, Target};

/// Parts of the multipart copy, and how many go at once.
const COPY_PART: u64 = 64 << 20;
const COPY_CONCURRENCY: usize = 4;

/// One signed request on its own connection: status and body.
async fn call(
    t: &Target,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (u16, Bytes) {
    let stream = tokio::net::TcpStream::connect(t.addr)
        .await
        .expect("connect");
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = sender
        .send_request(signed_request_with(t, method, path, headers, body))
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, body)
}

fn between(text: &str, open: &str, close: &str) -> String {
    text.split_once(open)
        .and_then(|(_, r)| r.split_once(close))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

/// Measures the three ways to copy a `mib` MiB encrypted object through
/// the gateway at `t` (whose process ids are `pids`) and writes a table.
pub async fn report(out: &mut String, t: &Target, pids: &[u32], mib: u64) {
    let len = mib << 20;
    let data = Bytes::from(vec![0x42u8; len as usize]);
    let (status, _) = call(t, "PUT", "/bench/copy/src", &[], data.clone()).await;
    assert_eq!(status, 200, "upload the copy source");
    let cpu = || crate::cpu_seconds(pids);

    // Server-side: the backend copies the stored bytes.
    let (c0, t0) = (cpu(), Instant::now());
    let (status, _) = call(
        t,
        "PUT",
        "/bench/copy/server-side",
        &[("x-amz-copy-source", "/bench/copy/src")],
        Bytes::new(),
    )
    .await;
    let server = (t0.elapsed().as_secs_f64(), cpu() - c0, status);

    // UploadPartCopy: the gateway makes every part.
    let (c0, t0) = (cpu(), Instant::now());
    let (_, created) = call(t, "POST", "/bench/copy/parts?uploads", &[], Bytes::new()).await;
    let upload = between(
        &String::from_utf8_lossy(&created),
        "<UploadId>",
        "</UploadId>",
    );
    let parts = len.div_ceil(COPY_PART);
    let mut etags = vec![String::new(); parts as usize];
    let mut statuses = Vec::new();
    for batch in (0..parts).collect::<Vec<_>>().chunks(COPY_CONCURRENCY) {
        let calls = batch.iter().map(|&i| {
            let (a, b) = (i * COPY_PART, ((i + 1) * COPY_PART).min(len) - 1);
            let path = format!("/bench/copy/parts?partNumber={}&uploadId={upload}", i + 1);
            let range = format!("bytes={a}-{b}");
            let t = t.clone();
            async move {
                let (s, body) = call(
                    &t,
                    "PUT",
                    &path,
                    &[
                        ("x-amz-copy-source", "/bench/copy/src"),
                        ("x-amz-copy-source-range", &range),
                    ],
                    Bytes::new(),
                )
                .await;
                (
                    i,
                    s,
                    between(&String::from_utf8_lossy(&body), "<ETag>", "</ETag>"),
                )
            }
        });
        for (i, s, etag) in futures_join(calls).await {
            statuses.push(s);
            etags[i as usize] = etag.replace("&quot;", "\"");
        }
    }
    let list: String = etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                i + 1
            )
        })
        .collect();
    let (done, _) = call(
        t,
        "POST",
        &format!("/bench/copy/parts?uploadId={upload}"),
        &[],
        Bytes::from(format!(
            "<CompleteMultipartUpload>{list}</CompleteMultipartUpload>"
        )),
    )
    .await;
    let part_copy = (
        t0.elapsed().as_secs_f64(),
        cpu() - c0,
        statuses.iter().all(|s| *s == 200) && done == 200,
    );

    // The client's way: GET it through the gateway and PUT it back.
    let (c0, t0) = (cpu(), Instant::now());
    let (got, body) = call(t, "GET", "/bench/copy/src", &[], Bytes::new()).await;
    let (put, _) = call(t, "PUT", "/bench/copy/get-put", &[], body).await;
    let get_put = (
        t0.elapsed().as_secs_f64(),
        cpu() - c0,
        got == 200 && put == 200,
    );

    let gb = len as f64 / 1e9;
    let _ = writeln!(out, "\n| copy of a {mib} MiB encrypted object through the encrypting gateway | s | GB/s | gateway CPU-s | gateway CPU-s/GB | ok |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| CopyObject, kept as stored (the backend copies) | {:.3} | {:.2} | {:.3} | {:.3} | {} |",
        server.0,
        gb / server.0,
        server.1,
        server.1 / gb,
        server.2 == 200
    );
    let _ = writeln!(out, "| multipart copy, UploadPartCopy x {parts} (the gateway decrypts and encrypts) | {:.3} | {:.2} | {:.3} | {:.3} | {} |",
        part_copy.0, gb / part_copy.0, part_copy.1, part_copy.1 / gb, part_copy.2);
    let _ = writeln!(out, "| GET then PUT through the gateway (client-side copy) | {:.3} | {:.2} | {:.3} | {:.3} | {} |",
        get_put.0, gb / get_put.0, get_put.1, get_put.1 / gb, get_put.2);
}

/// Runs futures concurrently (a small join_all).
async fn futures_join<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("copy task"));
    }
    out
}
