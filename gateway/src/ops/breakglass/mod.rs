//! Break-glass access: `sealgate decrypt` reads one object's plaintext and
//! `sealgate encrypt` writes one, straight to the backend with the
//! configured key provider, for when the gateway fleet is down or an
//! object must be read outside any client's grants. Each use is logged as
//! an audit event (target `sealgate::audit`, in the configured log format,
//! on stderr) when it starts and when it ends, naming the operator, the
//! object and the key, so it can be shipped and alerted on like the
//! gateway's own lines; a KMS key's own trail records the unwrap too.

use std::io::Write;

use sealgate_config::Config;

use crate::upstream::{encode_key, UpstreamTarget};

mod decrypt;
mod encrypt;

pub use decrypt::decrypt;
pub use encrypt::encrypt;

/// Largest answer read whole (a HEAD's, a PUT's).
pub(super) const MAX_ANSWER: usize = 64 * 1024;
/// Bytes of a file read per piece by `encrypt`.
pub(super) const READ_PIECE: usize = 1024 * 1024;

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
pub(super) fn audit_event(action: &str, bucket: &str, key: &str, outcome: &str, detail: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let timestamp = sealgate_filters::s3::auth::sigv4::format_iso8601(now);
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
pub(super) fn audit_format(config: &Config) {
    let _ = AUDIT_JSON.set(matches!(
        config.logging.format,
        sealgate_config::LogFormat::Json
    ));
}

pub(super) fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// An object's backend and its address there.
pub(super) struct Object {
    pub upstream: UpstreamTarget,
    pub host: String,
    pub path: String,
}

pub(super) async fn object(config: &Config, bucket: &str, key: &str) -> Result<Object, String> {
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
