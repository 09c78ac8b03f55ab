//! `sealgate encrypt`: a file stored under the bucket's encryption as one
//! PUT, as the gateway would store it.

use std::path::PathBuf;

use http::HeaderMap;
use pingora::http::RequestHeader;
use sealgate_config::Config;
use sealgate_filters::plan::UploadBody;
use sealgate_filters::policy;
use sealgate_filters::s3::auth::sigv4::UNSIGNED_PAYLOAD;
use sealgate_filters::s3::body::chunked::encode::UNSIGNED_TRAILER;

use super::{audit_event, audit_format, io, object, READ_PIECE};
use crate::keys::Providers;
use crate::proxy::UploadPlan;

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
        UploadBody::plain(len),
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
