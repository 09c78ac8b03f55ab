//! `sealgate decrypt`: one object's plaintext (or a range of it) to a new
//! file or stdout, every frame opened and checked.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pingora::http::RequestHeader;
use sealgate_config::Config;
use sealgate_envelope::multipart::{PartHeader, PartsDecryptor, PART_HEADER_LEN};
use sealgate_envelope::{plaintext_len, Decryptor, EnvelopeMeta};
use sealgate_filters::s3::auth::sigv4::EMPTY_SHA256;

use super::{audit_event, audit_format, io, object, MAX_ANSWER};
use crate::keys::Providers;

/// Opens the stored stream piece by piece (`true`: the last piece).
type Opener = Box<dyn FnMut(&[u8], bool) -> Result<Bytes, String>>;

/// Runs `sealgate decrypt`: the plaintext of `bucket`/`key` (bytes
/// `range` of it) to `output` (created, readable by its owner only) or
/// stdout. Returns the bytes written.
pub fn decrypt(
    config: &Config,
    bucket: &str,
    key: &str,
    output: Option<&Path>,
    range: Option<(u64, Option<u64>)>,
) -> Result<u64, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    // Never overwritten, and never removed below: only a file this run
    // made is.
    if let Some(p) = output.filter(|p| p.symlink_metadata().is_ok()) {
        return Err(format!("{} exists: name a new file", p.display()));
    }
    audit_format(config);
    audit_event("decrypt", bucket, key, "started", "");
    // The plaintext goes to a new file of its own first, and takes the
    // name asked for only once every frame was opened: a failure leaves
    // no plaintext behind, and no existing file is ever replaced.
    let partial = output.map(|p| {
        let mut name = p.as_os_str().to_owned();
        name.push(format!(
            ".partial-{}",
            hex::encode(sealgate_filters::keys::random_bytes::<8>())
        ));
        PathBuf::from(name)
    });
    let mut created = false;
    // Interrupted (Ctrl-C, SIGTERM), the partial plaintext is removed
    // below and the failure audited like any other.
    let mut result = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(io)?;
        tokio::select! {
            r = decrypt_run(config, bucket, key, partial.as_deref(), range, &mut created) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            _ = term.recv() => Err("terminated".to_string()),
        }
    });
    if let (Ok(_), Some(p), Some(to)) = (&result, &partial, output) {
        // A hard link fails where the name exists (a file, a symlink).
        if let Err(e) = std::fs::hard_link(p, to) {
            result = Err(format!("{}: {e}", to.display()));
        }
    }
    if let Some(p) = partial.as_ref().filter(|_| created) {
        let _ = std::fs::remove_file(p);
    }
    match &result {
        Ok(n) => audit_event("decrypt", bucket, key, "done", &format!("{n} bytes")),
        Err(e) => audit_event("decrypt", bucket, key, "failed", e),
    }
    result
}

async fn decrypt_run(
    config: &Config,
    bucket: &str,
    key: &str,
    output: Option<&Path>,
    range: Option<(u64, Option<u64>)>,
    created: &mut bool,
) -> Result<u64, String> {
    let o = object(config, bucket, key).await?;
    let (head, _) = o
        .upstream
        .request("HEAD", &o.host, &o.path, &[], Bytes::new(), MAX_ANSWER)
        .await
        .map_err(io)?;
    if head.status.as_u16() != 200 {
        return Err(format!("HEAD answered {}", head.status));
    }
    let get = |n: &str| head.headers.get(n).and_then(|v| v.to_str().ok());
    let meta = EnvelopeMeta::from_headers(get)
        .map_err(|e| format!("its envelope is unreadable: {e}"))?
        .ok_or("it is not encrypted by sealgate: read it with any S3 client")?;
    let etag = get("etag").ok_or("it has no ETag")?.to_string();
    let stored: u64 = get("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or("it has no length")?;
    audit_event(
        "decrypt",
        bucket,
        key,
        "unwrapping",
        &format!("provider {} key {}", meta.provider, meta.key_id),
    );
    let providers = Providers::from_config(config, None).await?;
    let provider = providers
        .get(&meta.provider)
        .ok_or_else(|| format!("its key provider {} is not configured", meta.provider))?;
    let (dek, object_key) = crate::ops::unwrap_checked(&**provider, &meta).await?;
    let (total, mut opener): (u64, Opener) = if meta.multipart {
        let (resp, first) = o
            .upstream
            .request(
                "GET",
                &o.host,
                &o.path,
                &[
                    ("range", &format!("bytes=0-{}", PART_HEADER_LEN - 1)),
                    ("if-match", &etag),
                ],
                Bytes::new(),
                MAX_ANSWER,
            )
            .await
            .map_err(io)?;
        if resp.status.as_u16() != 206 {
            return Err(format!(
                "reading its first part header answered {}",
                resp.status
            ));
        }
        let first = PartHeader::decode(&first)
            .filter(|h| h.number == 1)
            .ok_or("its first part header is unreadable")?;
        let layout = o
            .upstream
            .part_layout(&o.host, &o.path, &first, stored, Some(&etag))
            .await
            .map_err(|e| format!("its parts: {e:?}"))?;
        let total = layout.plaintext_total();
        let mut d = PartsDecryptor::from_part_start(
            &dek,
            meta.context_hash(),
            layout,
            0,
            total.saturating_sub(1),
        );
        (total, Box::new(move |b, end| d.push(b, end).map_err(io)))
    } else {
        let total = plaintext_len(stored).ok_or("its length is no encrypted body's")?;
        let mut d = Decryptor::new(object_key.cipher, 0, total);
        (total, Box::new(move |b, end| d.push(b, end).map_err(io)))
    };
    let (first, last) = match range {
        None => (0, total.saturating_sub(1)),
        Some((a, b)) if a < total => (a, b.unwrap_or(u64::MAX).min(total - 1)),
        Some(_) => return Err(format!("the range starts past its end ({total} bytes)")),
    };
    let mut out: Box<dyn Write> = match output {
        Some(p) => {
            let file = create_private(p)?;
            *created = true;
            Box::new(SyncedFile(file))
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut req = RequestHeader::build("GET", o.path.as_bytes(), None).map_err(io)?;
    req.insert_header(http::header::HOST, o.host.as_str())
        .map_err(io)?;
    req.insert_header(http::header::IF_MATCH, etag.as_str())
        .map_err(io)?;
    o.upstream.sign(&mut req, EMPTY_SHA256).await.map_err(io)?;
    let mut s = o.upstream.session().await.map_err(io)?;
    s.write_request_header(Box::new(req)).await.map_err(io)?;
    s.finish_request_body().await.map_err(io)?;
    s.read_response_header().await.map_err(io)?;
    let status = s.response_header().map_or(0, |r| r.status.as_u16());
    if status != 200 {
        return Err(format!("reading it answered {status}"));
    }
    // Every frame is opened (and checked); only the range is written.
    let (mut at, mut written) = (0u64, 0u64);
    let mut emit = |plain: Bytes, out: &mut dyn Write| -> Result<(), String> {
        let (start, end) = (at, at + plain.len() as u64);
        at = end;
        let (a, b) = (start.max(first), end.min(last.saturating_add(1)));
        if a < b && total > 0 {
            out.write_all(&plain[(a - start) as usize..(b - start) as usize])
                .map_err(io)?;
            written += b - a;
        }
        Ok(())
    };
    while let Some(chunk) = s.read_response_body().await.map_err(io)? {
        emit(opener(&chunk, false)?, &mut out)?;
    }
    emit(opener(&[], true)?, &mut out)?;
    out.flush().map_err(io)?;
    Ok(written)
}

/// A file whose `flush` reaches the disk: the plaintext is complete under
/// its final name or not there at all.
struct SyncedFile(std::fs::File);

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.sync_all()
    }
}

/// A new file only its owner can read (plaintext must not leak through
/// the directory's other users); an existing one is not overwritten.
fn create_private(p: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| format!("{}: {e}", p.display()))
}
