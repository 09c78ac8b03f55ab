//! Break-glass access: `sealgate decrypt` reads one object's plaintext and
//! `sealgate encrypt` writes one, straight to the backend with the
//! configured key provider, for when the gateway fleet is down or an
//! object must be read outside any client's grants. Each use is logged as
//! an audit event (target `sealgate::audit`, in the configured log format,
//! on stderr) when it starts and when it ends, naming the operator, the
//! object and the key, so it can be shipped and alerted on like the
//! gateway's own lines; a KMS key's own trail records the unwrap too.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::HeaderMap;
use pingora::http::RequestHeader;
use sealgate_config::Config;
use sealgate_envelope::multipart::{PartHeader, PartsDecryptor, PART_HEADER_LEN};
use sealgate_envelope::{plaintext_len, Decryptor, EnvelopeMeta};
use sealgate_filters::plan::{BodyEncoding, UploadBody};
use sealgate_filters::policy;
use sealgate_filters::s3::chunked::encode::UNSIGNED_TRAILER;
use sealgate_filters::s3::sigv4::{EMPTY_SHA256, UNSIGNED_PAYLOAD};

use crate::keys::Providers;
use crate::proxy::UploadPlan;
use crate::upstream::{encode_key, UpstreamTarget};

/// Largest answer read whole (a HEAD's, a PUT's).
const MAX_ANSWER: usize = 64 * 1024;
/// Bytes of a file read per piece by `encrypt`.
const READ_PIECE: usize = 1024 * 1024;

/// An `s3://bucket/key` address.
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url}: not an s3://bucket/key address"))?;
    match rest.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string())),
        _ => Err(format!("{url}: not an s3://bucket/key address")),
    }
}

/// An inclusive byte range `a-b` (`a-`: to the end).
pub fn parse_range(text: &str) -> Result<(u64, Option<u64>), String> {
    let bad = || format!("--range {text}: expected FIRST-LAST or FIRST- (bytes, inclusive)");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.parse().map_err(|_| bad())?;
    let b = match b {
        "" => None,
        b => Some(b.parse::<u64>().map_err(|_| bad())?),
    };
    if b.is_some_and(|b| b < a) {
        return Err(bad());
    }
    Ok((a, b))
}

/// Who ran the command, for the audit event: the process's user id
/// (which the caller cannot choose), and the name it gives (`SUDO_USER`,
/// else `USER`: informative only).
fn operator() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map_or_else(|_| "?".into(), |m| m.uid().to_string());
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("uid {uid} ({name})")
}

/// Whether audit events are JSON lines (`logging.format: json`).
static AUDIT_JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// One audit event of a break-glass command, written to stderr whatever
/// the log filter says (and not through the lossy log writer).
fn audit_event(action: &str, bucket: &str, key: &str, outcome: &str, detail: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let timestamp = sealgate_filters::s3::sigv4::format_iso8601(now);
    let line = if *AUDIT_JSON.get().unwrap_or(&false) {
        serde_json::json!({
            "timestamp": timestamp,
            "level": "WARN",
            "target": "sealgate::audit",
            "event": "break_glass",
            "action": action,
            "operator": operator(),
            "bucket": bucket,
            "key": key,
            "outcome": outcome,
            "detail": detail,
            "message": format!("break-glass {action}"),
        })
        .to_string()
    } else {
        format!(
            "{timestamp}  WARN sealgate::audit: break-glass {action} event=break_glass operator={:?} bucket={bucket:?} key={key:?} outcome={outcome} detail={detail:?}",
            operator()
        )
    };
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Audit events in the configured log format.
fn audit_format(config: &Config) {
    let _ = AUDIT_JSON.set(matches!(
        config.logging.format,
        sealgate_config::LogFormat::Json
    ));
}

/// Opens the stored stream piece by piece (`true`: the last piece).
type Opener = Box<dyn FnMut(&[u8], bool) -> Result<Bytes, String>>;

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct Object {
    upstream: UpstreamTarget,
    host: String,
    path: String,
}

async fn object(config: &Config, bucket: &str, key: &str) -> Result<Object, String> {
    let resolved = config
        .resolve_bucket(bucket)
        .ok_or_else(|| format!("{bucket} is an alias's real name: name the alias"))?;
    let (backend, setting) = config.upstream_for(&resolved.name);
    let upstream = UpstreamTarget::named(backend, &setting).await.map_err(io)?;
    let (host, path) = upstream.address(Some(&resolved.real), Some(&encode_key(key)));
    Ok(Object {
        upstream,
        host,
        path,
    })
}

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
    let (dek, object_key) = super::unwrap_checked(&**provider, &meta).await?;
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

/// Runs `sealgate encrypt`: `file` stored at `bucket`/`key` under the
/// bucket's encryption, as one PUT (as the gateway would store it).
pub fn encrypt(config: &Config, file: &PathBuf, bucket: &str, key: &str) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    audit_format(config);
    audit_event(
        "encrypt",
        bucket,
        key,
        "started",
        &file.display().to_string(),
    );
    let result = rt.block_on(encrypt_run(config, file, bucket, key));
    match &result {
        Ok(etag) => audit_event("encrypt", bucket, key, "done", etag),
        Err(e) => audit_event("encrypt", bucket, key, "failed", e),
    }
    result
}

async fn encrypt_run(
    config: &Config,
    file: &PathBuf,
    bucket: &str,
    key: &str,
) -> Result<String, String> {
    let resolved = config
        .resolve_bucket(bucket)
        .ok_or_else(|| format!("{bucket} is an alias's real name: name the alias"))?;
    let enc = policy::for_bucket(config, &resolved.name)
        .ok_or_else(|| format!("bucket {bucket} has no key provider: nothing to encrypt with"))?;
    let mut f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let len = f.metadata().map_err(io)?.len();
    let o = object(config, bucket, key).await?;
    let max = o.upstream.config().max_put_size;
    if sealgate_envelope::ciphertext_len(len) > max {
        return Err(format!(
            "{} is larger than one PUT takes ({max} bytes stored): upload it through the gateway",
            file.display()
        ));
    }
    let providers = Providers::from_config(config, None).await?;
    let provider = providers.get(&enc.provider).ok_or_else(|| {
        format!(
            "the bucket's key provider {} is not configured",
            enc.provider
        )
    })?;
    let key_id = enc
        .key_id
        .clone()
        .unwrap_or_else(|| provider.default_key_id().to_string());
    let data_key = provider
        .generate_data_key(&key_id, &enc.write_context)
        .await
        .map_err(|e| format!("a data key: {e}"))?;
    let plan = UploadPlan::new(
        UploadBody {
            plaintext_len: len,
            encoding: BodyEncoding::Plain,
            trailer_algorithm: None,
            payload_sha256: None,
        },
        &enc.provider,
        data_key,
        enc.write_context.clone(),
    )
    .map_err(io)?
    .with_stored_checksum(o.upstream.stored_checksum(&resolved.real).await);
    let mut req = RequestHeader::build("PUT", o.path.as_bytes(), None).map_err(io)?;
    req.insert_header(http::header::HOST, o.host.as_str())
        .map_err(io)?;
    plan.apply(&mut req).map_err(io)?;
    let payload = if plan.sends_trailer() {
        UNSIGNED_TRAILER
    } else {
        UNSIGNED_PAYLOAD
    };
    o.upstream.sign(&mut req, payload).await.map_err(io)?;
    let mut cipher = plan.body(&HeaderMap::new()).map_err(io)?;
    let mut s = o.upstream.session().await.map_err(io)?;
    s.write_request_header(Box::new(req)).await.map_err(io)?;
    let mut buf = vec![0u8; READ_PIECE];
    let mut read = 0u64;
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > len {
            return Err(format!("{} grew while it was read", file.display()));
        }
        let out = cipher.push(&buf[..n], false).map_err(io)?;
        if !out.is_empty() {
            s.write_request_body(out, false).await.map_err(io)?;
        }
    }
    // A short file leaves the PUT's body short: nothing is stored.
    let last = cipher.push(&[], true).map_err(io)?;
    s.write_request_body(last, true).await.map_err(io)?;
    s.finish_request_body().await.map_err(io)?;
    s.read_response_header().await.map_err(io)?;
    let resp = s.response_header().ok_or("no answer")?.clone();
    if resp.status.as_u16() != 200 {
        return Err(format!("the PUT answered {}", resp.status));
    }
    Ok(resp
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ranges_parse_strictly() {
        assert_eq!(
            parse_s3_url("s3://b/k/with/slashes").unwrap(),
            ("b".to_string(), "k/with/slashes".to_string())
        );
        for bad in ["b/k", "s3://b", "s3://b/", "s3:///k"] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_range("0-9").unwrap(), (0, Some(9)));
        assert_eq!(parse_range("100-").unwrap(), (100, None));
        for bad in ["9-0", "-5", "a-b", "5"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
