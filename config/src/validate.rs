//! From the YAML tree to a [`Config`]: every check, every problem with its path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_norway::Value;

use crate::glob::Glob;
use crate::model::*;
use crate::problem::suggest;
use crate::reader::{secret_keys, Obj, Reader};
use crate::secret::Secret;

/// Default plain listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default data-key cache lifetime (the original design's example value).
pub const DEFAULT_DATA_KEY_CACHE_TTL: Duration = Duration::from_secs(300);
/// S3 refuses requests whose clock is more than 15 minutes off; so do we.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// Region assumed when none is configured (as the AWS SDKs do for S3).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default Azure key name when a vault block names none.
pub const DEFAULT_AZURE_KEY_NAME: &str = "sealgate";
/// Master key length for the `custom` provider: AES-256.
pub const CUSTOM_MASTER_KEY_LEN: usize = 32;
/// Clock skew above this is a typo, not a policy.
pub const MAX_CLOCK_SKEW_LIMIT: Duration = Duration::from_secs(60 * 60);
/// Upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstream read timeout (between bytes, not for the whole body).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Where an old process hands its listening sockets to the new one during
/// a zero-downtime upgrade: a private runtime directory (systemd's
/// `RuntimeDirectory=sealgate`), not a world-writable one where another
/// local user could bind the socket first and receive the listeners.
pub const DEFAULT_UPGRADE_SOCK: &str = "/run/sealgate/upgrade.sock";
/// How often the upstream host name is resolved again.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(60);
/// S3's single-PUT limit.
pub const DEFAULT_MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Time given to in-flight requests at shutdown.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// How long a whole request header may take (nginx allows 60 s per header;
/// any client on a working network needs well under a second).
pub const DEFAULT_REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests one instance serves at once before it answers `503 SlowDown`:
/// memory grows with concurrency (about 164 MiB at 256 streams, measured
/// in bench/RESULTS.md), so 512 keeps a pod near 300 MiB.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 512;
/// Log lines held for a slow log consumer: about 4 MiB of access lines.
pub const DEFAULT_LOG_BUFFER_LINES: usize = 8_192;
/// The most log lines held: each may be a few KiB, and a full buffer is
/// memory the request path does not have.
pub const MAX_LOG_BUFFER_LINES: u64 = 65_536;
/// Shorter would cut clients on slow links mid-header.
const MIN_REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

const PROVIDER_TYPES: [&str; 4] = ["aws-kms", "azure-keyvault", "custom", "local"];

pub(crate) fn build(r: &mut Reader, root: &Value) -> Option<Config> {
    let top = r.obj(
        "",
        Some(root),
        &["server", "storage", "auth", "encryption", "logging"],
    )?;
    let server = server(r, &top);
    let storage = r.obj("storage", top.get("storage"), &["s3"]);
    let s3 = storage
        .as_ref()
        .and_then(|s| r.obj("storage.s3", s.get("s3"), S3_KEYS));
    let s3 = s3.unwrap_or_else(|| Obj::empty("storage.s3"));
    let upstream = upstream(r, &s3);
    let buckets = bucket_configs(r, &s3, upstream.as_ref());
    let auth = auth(r, &top);
    let encryption = encryption(r, &top, &buckets);
    let logging = logging(r, &top);
    if !r.problems.is_empty() {
        return None;
    }
    Some(Config {
        server: server?,
        upstream: upstream?,
        auth: auth?,
        encryption: encryption?,
        buckets,
        logging: logging?,
        secret_files: std::mem::take(&mut r.secret_files),
    })
}

fn socket_addr(r: &mut Reader, o: &Obj, key: &str) -> Option<SocketAddr> {
    let text = r.string(o, key)?;
    match text.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            r.problem(
                &o.child(key),
                format!("`{text}` is not an address"),
                Some("write IP:PORT, e.g. `0.0.0.0:8080` or `[::]:8443`".into()),
            );
            None
        }
    }
}

fn server(r: &mut Reader, top: &Obj) -> Option<Server> {
    let o = r.obj(
        "server",
        top.get("server"),
        &[
            "listen",
            "admin_listen",
            "threads",
            "domains",
            "tls",
            "grace_period",
            "drain_delay",
            "proxy_protocol",
            "request_header_timeout",
            "upgrade_sock",
            "max_in_flight",
            "reload_on_change",
        ],
    )?;
    let listen = if o.has("listen") {
        socket_addr(r, &o, "listen")
    } else if o.has("tls") {
        None
    } else {
        DEFAULT_LISTEN.parse().ok()
    };
    let admin_listen = socket_addr(r, &o, "admin_listen");
    let threads = match r.unsigned(&o, "threads") {
        Some(0) => {
            r.problem(&o.child("threads"), "must be at least 1", None);
            1
        }
        Some(n) => n as usize,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let mut domains = Vec::new();
    for (i, d) in r
        .string_list(&o, "domains")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let d = d.trim_start_matches('.').to_ascii_lowercase();
        if d.is_empty() || d.contains('/') || d.contains(':') {
            r.problem(
                &format!("server.domains[{i}]"),
                format!("`{d}` is not a domain name"),
                Some(
                    "write the base domain only, e.g. `s3.example.com` (no scheme, port or path)"
                        .into(),
                ),
            );
        } else {
            domains.push(d);
        }
    }
    let tls = match r.obj(
        "server.tls",
        o.get("tls"),
        &["listen", "cert_file", "key_file"],
    ) {
        Some(t) if o.has("tls") => {
            let listen = if t.has("listen") {
                socket_addr(r, &t, "listen")
            } else {
                r.problem(
                    &t.child("listen"),
                    "missing",
                    Some("e.g. `0.0.0.0:8443`".into()),
                );
                None
            };
            let cert = existing_file(r, &t, "cert_file", "a PEM certificate chain");
            let key = existing_file(r, &t, "key_file", "a PEM private key");
            match (listen, cert, key) {
                (Some(listen), Some(cert_file), Some(key_file)) => Some(ServerTls {
                    listen,
                    cert_file,
                    key_file,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    let grace_period = r
        .duration(&o, "grace_period")
        .unwrap_or(DEFAULT_GRACE_PERIOD);
    let drain_delay = r.duration(&o, "drain_delay").unwrap_or_default();
    let proxy_protocol = r.boolean(&o, "proxy_protocol").unwrap_or(false);
    let request_header_timeout = match r.duration(&o, "request_header_timeout") {
        Some(d) if d < MIN_REQUEST_HEADER_TIMEOUT => {
            r.problem(
                &o.child("request_header_timeout"),
                "must be at least 1s",
                Some("a slow network needs seconds for a header; the default is 20s".into()),
            );
            DEFAULT_REQUEST_HEADER_TIMEOUT
        }
        Some(d) => d,
        None => DEFAULT_REQUEST_HEADER_TIMEOUT,
    };
    let max_in_flight = match r.unsigned(&o, "max_in_flight") {
        Some(0) => {
            r.problem(
                &o.child("max_in_flight"),
                "must be positive",
                Some(format!("the default is {DEFAULT_MAX_IN_FLIGHT}")),
            );
            DEFAULT_MAX_IN_FLIGHT
        }
        Some(n) => n,
        None => DEFAULT_MAX_IN_FLIGHT,
    };
    let upgrade_sock = r
        .string(&o, "upgrade_sock")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_UPGRADE_SOCK));
    let reload_on_change = r.boolean(&o, "reload_on_change").unwrap_or(true);
    Some(Server {
        max_in_flight,
        reload_on_change,
        upgrade_sock,
        drain_delay,
        proxy_protocol,
        request_header_timeout,
        listen,
        tls,
        admin_listen,
        threads,
        domains,
        grace_period,
    })
}

fn existing_file(r: &mut Reader, o: &Obj, key: &str, what: &str) -> Option<PathBuf> {
    let Some(path) = r.string(o, key) else {
        if !o.has(key) {
            r.problem(
                &o.child(key),
                "missing",
                Some(format!("the path of {what}")),
            );
        }
        return None;
    };
    let p = PathBuf::from(&path);
    if !p.is_file() {
        r.problem(
            &o.child(key),
            format!("`{path}` is not a readable file"),
            Some(format!("point it at {what}")),
        );
        return None;
    }
    Some(p)
}

const S3_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "addressing_style",
    "force_path_style",
    "ca_bundle",
    "credentials",
    "connect_timeout",
    "read_timeout",
    "dns_refresh",
    "max_put_size",
    "stored_checksum",
    "literal_keys",
    "bucket_configs",
];

fn upstream(r: &mut Reader, o: &Obj) -> Option<Upstream> {
    let region = r
        .string(o, "region")
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let endpoint_text = r
        .string(o, "endpoint")
        .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
    let endpoint = match parse_endpoint(&endpoint_text) {
        Ok(e) => Some(e),
        Err(e) => {
            r.problem(
                &o.child("endpoint"),
                e,
                Some("write a URL like `https://s3.us-east-1.amazonaws.com` or `http://127.0.0.1:9000`".into()),
            );
            None
        }
    };
    let force_path = r.boolean(o, "force_path_style");
    let addressing_style = addressing_style(r, o).unwrap_or(match force_path {
        Some(false) => AddressingStyle::Virtual,
        _ => AddressingStyle::Path,
    });
    if o.has("addressing_style") && force_path.is_some() {
        r.problem(
            &o.child("force_path_style"),
            "conflicts with addressing_style",
            Some("keep only addressing_style".into()),
        );
    }
    let ca_bundle = if o.has("ca_bundle") {
        existing_file(r, o, "ca_bundle", "a PEM file of CA certificates")
    } else {
        None
    };
    let credentials = upstream_credentials(r, o);
    let connect_timeout = r
        .duration(o, "connect_timeout")
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let read_timeout = r
        .duration(o, "read_timeout")
        .unwrap_or(DEFAULT_READ_TIMEOUT);
    let dns_refresh = r.duration(o, "dns_refresh").unwrap_or(DEFAULT_DNS_REFRESH);
    let max_put_size = match r.unsigned(o, "max_put_size") {
        Some(0) => {
            r.problem(
                &o.child("max_put_size"),
                "must be positive",
                Some("S3 takes up to 5368709120 bytes".into()),
            );
            DEFAULT_MAX_PUT_SIZE
        }
        Some(n) => n,
        None => DEFAULT_MAX_PUT_SIZE,
    };
    let stored_checksum = stored_checksum(r, o).unwrap_or(StoredChecksum::Auto);
    let literal_keys = r.boolean(o, "literal_keys").unwrap_or(false);
    Some(Upstream {
        endpoint: endpoint?,
        region,
        addressing_style,
        ca_bundle,
        credentials: credentials?,
        connect_timeout,
        read_timeout,
        dns_refresh,
        max_put_size,
        stored_checksum,
        literal_keys,
    })
}

/// `addressing_style`, if given.
fn addressing_style(r: &mut Reader, o: &Obj) -> Option<AddressingStyle> {
    match r.string(o, "addressing_style").as_deref() {
        None => None,
        Some("path") => Some(AddressingStyle::Path),
        Some("virtual") => Some(AddressingStyle::Virtual),
        Some(other) => {
            r.problem(
                &o.child("addressing_style"),
                format!("`{other}` is not an addressing style"),
                Some("use `path` or `virtual`".into()),
            );
            None
        }
    }
}

/// `stored_checksum`, if given.
fn stored_checksum(r: &mut Reader, o: &Obj) -> Option<StoredChecksum> {
    match r.string(o, "stored_checksum").as_deref() {
        None => None,
        Some("auto") => Some(StoredChecksum::Auto),
        Some("crc32c") => Some(StoredChecksum::Crc32c),
        Some("none") => Some(StoredChecksum::None),
        Some(other) => {
            r.problem(
                &o.child("stored_checksum"),
                format!("`{other}` is not a stored checksum"),
                Some("use `auto` (the default: found out from the backend), `crc32c` or `none` (for backends without aws-chunked trailers)".into()),
            );
            None
        }
    }
}

/// Settings of `bucket_configs.<alias>` that put the bucket on a backend
/// of its own; everything else of `storage.s3` (timeouts, DNS refresh,
/// `max_put_size`, `ca_bundle`, `literal_keys`) applies to it as well.
const BUCKET_BACKEND_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "credentials",
    "addressing_style",
    "stored_checksum",
];

/// The bucket's own backend: `storage.s3` with the bucket's endpoint,
/// region, credentials, addressing style and stored checksum. A region
/// alone moves an AWS bucket to that region's endpoint (when
/// `storage.s3.endpoint` is AWS's default) and is what its requests are
/// signed for. `None` when the bucket lives where `storage.s3` does.
fn bucket_backend(r: &mut Reader, s3: &Obj, b: &Obj, base: &Upstream) -> Option<Upstream> {
    if !BUCKET_BACKEND_KEYS.iter().any(|k| b.has(k)) {
        return None;
    }
    let mut up = base.clone();
    if let Some(region) = r.string(b, "region") {
        up.region = region;
    }
    match r.string(b, "endpoint") {
        Some(text) => match parse_endpoint(&text) {
            Ok(e) => up.endpoint = e,
            Err(e) => r.problem(
                &b.child("endpoint"),
                e,
                Some("write a URL like `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`".into()),
            ),
        },
        // AWS's regional endpoint of storage.s3's region (given or
        // defaulted): the bucket's region has its own.
        None if up.region != base.region
            && (!s3.has("endpoint")
                || base.endpoint.host == format!("s3.{}.amazonaws.com", base.region)) =>
        {
            match parse_endpoint(&format!("https://s3.{}.amazonaws.com", up.region)) {
                Ok(e) => up.endpoint = e,
                Err(e) => r.problem(&b.child("region"), e, Some("name an AWS region".into())),
            }
        }
        None => {}
    }
    if b.has("credentials") {
        up.credentials = upstream_credentials(r, b)?;
    } else if b.has("endpoint") && up.endpoint != base.endpoint {
        // storage.s3's credentials (its key id, a session token) are never
        // sent to another endpoint unless the configuration says so.
        r.problem(
            &b.child("credentials"),
            "missing: the bucket's endpoint differs from storage.s3.endpoint",
            Some("give the gateway's credentials at that backend (the same keys as storage.s3.credentials take; `source: chain` for the standard AWS chain)".into()),
        );
        return None;
    }
    if let Some(style) = addressing_style(r, b) {
        up.addressing_style = style;
    }
    if let Some(checksum) = stored_checksum(r, b) {
        up.stored_checksum = checksum;
    }
    (!up.same_backend(base)).then_some(up)
}

/// Parses `scheme://host[:port][/]`.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("`{text}` must start with http:// or https://"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(format!(
            "`{text}` must be scheme://host[:port] with no path"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: unclosed `[`"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("`{text}`: junk after the address")),
        };
        (format!("[{h}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("`{text}`: bad port `{p}`"))?,
        None if tls => 443,
        None => 80,
    };
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    Ok(Endpoint {
        tls,
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn upstream_credentials(r: &mut Reader, s3: &Obj) -> Option<UpstreamCredentials> {
    let [s, se, sf] = secret_keys("secret_access_key");
    let [t, te, tf] = secret_keys("session_token");
    let known = ["source", "access_key_id", &s, &se, &sf, &t, &te, &tf];
    let o = r.obj(&s3.child("credentials"), s3.get("credentials"), &known)?;
    let source = r.string(&o, "source");
    let has_static = o.has("access_key_id");
    match source
        .as_deref()
        .unwrap_or(if has_static { "static" } else { "chain" })
    {
        "static" => {
            let id = r.required_string(&o, "access_key_id", "the upstream access key id");
            let secret = r.secret(&o, "secret_access_key");
            if secret.is_none() && !o.has(&s) && !o.has(&se) && !o.has(&sf) {
                r.problem(
                    &o.child("secret_access_key"),
                    "missing",
                    Some(
                        "give secret_access_key_env (a variable name) or secret_access_key_file"
                            .into(),
                    ),
                );
            }
            let session_token = r.secret(&o, "session_token");
            Some(UpstreamCredentials::Static {
                access_key_id: id?,
                secret_access_key: secret?,
                session_token,
            })
        }
        "env" => {
            let id = (r.env)("AWS_ACCESS_KEY_ID");
            let secret = (r.env)("AWS_SECRET_ACCESS_KEY");
            match (id, secret) {
                (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                    Some(UpstreamCredentials::Static {
                        access_key_id: id,
                        secret_access_key: Secret::from_string(secret),
                        session_token: (r.env)("AWS_SESSION_TOKEN").map(Secret::from_string),
                    })
                }
                _ => {
                    r.problem(
                        &o.child("source"),
                        "source `env` needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                        Some("export both, or use source `chain`".into()),
                    );
                    None
                }
            }
        }
        "chain" => Some(UpstreamCredentials::DefaultChain),
        other => {
            r.problem(
                &o.child("source"),
                format!("`{other}` is not a credential source"),
                Some("use `static`, `env` or `chain` (the standard AWS credential chain)".into()),
            );
            None
        }
    }
}

fn bucket_configs(
    r: &mut Reader,
    s3: &Obj,
    upstream: Option<&Upstream>,
) -> BTreeMap<String, BucketConfig> {
    let mut out = BTreeMap::new();
    let path = s3.child("bucket_configs");
    let entries = r.dict(&path, s3.get("bucket_configs"));
    for (alias, v) in entries {
        let at = format!("{path}.{alias}");
        if let Err(e) = check_bucket_name(alias) {
            r.problem(
                &at,
                e,
                Some("bucket_configs keys are the bucket names clients use".into()),
            );
        }
        let Some(b) = r.obj(
            &at,
            Some(v),
            &[
                "real_name",
                "real_name_addressable",
                "region",
                "endpoint",
                "credentials",
                "addressing_style",
                "stored_checksum",
                "kms_key_id",
                "kms_encryption_context",
            ],
        ) else {
            continue;
        };
        let real_name = r.string(&b, "real_name");
        if let Some(n) = &real_name {
            if let Err(e) = check_bucket_name(n) {
                r.problem(&b.child("real_name"), e, None);
            }
        }
        let real_name_addressable = r.boolean(&b, "real_name_addressable").unwrap_or(false);
        if real_name_addressable && real_name.is_none() {
            r.problem(
                &b.child("real_name_addressable"),
                "set without real_name",
                Some("give real_name, or drop this setting".into()),
            );
        }
        let backend = upstream.and_then(|base| bucket_backend(r, s3, &b, base));
        let cfg = BucketConfig {
            real_name,
            real_name_addressable,
            region: r.string(&b, "region"),
            backend,
            kms_key_id: r.string(&b, "kms_key_id"),
            kms_encryption_context: r.string_map(&b, "kms_encryption_context"),
        };
        out.insert(alias.to_string(), cfg);
    }
    check_aliases(r, &path, &out);
    out
}

/// One upstream bucket has one set of rules: no two aliases share a real
/// name, and no alias's real name is another alias (a client typing it
/// would reach a different bucket than the name says).
fn check_aliases(r: &mut Reader, path: &str, buckets: &BTreeMap<String, BucketConfig>) {
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (alias, b) in buckets {
        let Some(real) = b.real_name.as_deref().filter(|n| n != alias) else {
            continue;
        };
        if let Some(first) = owner.insert(real, alias) {
            r.problem(
                &format!("{path}.{alias}.real_name"),
                format!("`{real}` is also the real_name of `{first}`"),
                Some(
                    "one upstream bucket takes one alias, so its rules cannot differ by name"
                        .into(),
                ),
            );
        }
        if buckets.contains_key(real) {
            r.problem(
                &format!("{path}.{alias}.real_name"),
                format!("`{real}` is itself an alias in bucket_configs"),
                Some("rename one of them: a name must mean one bucket".into()),
            );
        }
    }
}

/// S3's bucket naming rules (the ones that matter for routing).
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    let ok_ends = name
        .bytes()
        .next()
        .zip(name.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends && !name.contains("..") {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid bucket name (3-63 lowercase letters, digits, `-` or `.`, starting and ending with a letter or digit)"
        ))
    }
}

fn auth(r: &mut Reader, top: &Obj) -> Option<Auth> {
    let o = r.obj(
        "auth",
        top.get("auth"),
        &["clients", "max_clock_skew", "signature_v2"],
    )?;
    let signature_v2 = r.boolean(&o, "signature_v2").unwrap_or(true);
    let max_clock_skew = r
        .duration(&o, "max_clock_skew")
        .unwrap_or(DEFAULT_MAX_CLOCK_SKEW);
    if max_clock_skew > MAX_CLOCK_SKEW_LIMIT {
        r.problem(
            &o.child("max_clock_skew"),
            format!("more than {} minutes", MAX_CLOCK_SKEW_LIMIT.as_secs() / 60),
            Some("S3 uses 15m; a large skew widens the replay window of captured requests".into()),
        );
    }
    let [s, se, sf] = secret_keys("secret_access_key");
    let known = [
        "access_key_id",
        "buckets",
        "rate_limit",
        s.as_str(),
        se.as_str(),
        sf.as_str(),
    ];
    let mut clients: Vec<ClientCredential> = Vec::new();
    for (path, v) in r.list(&o, "clients") {
        let Some(c) = r.obj(&path, Some(v), &known) else {
            continue;
        };
        let id = r.required_string(
            &c,
            "access_key_id",
            "the key id clients put in their requests",
        );
        if let Some(id) = &id {
            if clients.iter().any(|x| &x.access_key_id == id) {
                r.problem(
                    &c.child("access_key_id"),
                    format!("`{id}` is listed twice"),
                    None,
                );
            }
            if id.contains('/') || id.contains(' ') {
                r.problem(
                    &c.child("access_key_id"),
                    "must not contain `/` or spaces",
                    None,
                );
            }
        }
        let secret = r.secret(&c, "secret_access_key");
        if secret.is_none() && !c.has(&s) && !c.has(&se) && !c.has(&sf) {
            r.problem(
                &c.child("secret_access_key"),
                "missing",
                Some(
                    "give secret_access_key_env (a variable name) or secret_access_key_file".into(),
                ),
            );
        }
        if c.has(&s) {
            r.warn(
                &c.child("secret_access_key"),
                "secret written inline in the config file",
                Some("prefer secret_access_key_env or secret_access_key_file".into()),
            );
        }
        let buckets = bucket_grants(r, &c);
        let rate_limit = rate_limit(r, &c);
        if let (Some(access_key_id), Some(secret_access_key)) = (id, secret) {
            clients.push(ClientCredential {
                access_key_id,
                secret_access_key,
                buckets,
                rate_limit,
            });
        }
    }
    if clients.is_empty() && r.problems.is_empty() {
        r.warn(
            "auth.clients",
            "no client credentials: every S3 request will be refused",
            Some(
                "add auth.clients entries with access_key_id, secret_access_key_env and buckets"
                    .into(),
            ),
        );
    }
    Some(Auth {
        clients,
        max_clock_skew,
        signature_v2,
    })
}

/// `auth.clients[].buckets`: each entry a bare pattern (the data
/// permissions) or `{pattern, permissions: [read, write, delete, admin]}`.
fn bucket_grants(r: &mut Reader, c: &Obj) -> Vec<BucketGrant> {
    let path = c.child("buckets");
    if !c.has("buckets") {
        r.problem(
            &path,
            "missing",
            Some("list the bucket patterns this key may use, or [\"*\"] for all".into()),
        );
        return Vec::new();
    }
    let entries = match c.get("buckets") {
        Some(Value::String(_)) => vec![(format!("{path}[0]"), c.get("buckets").expect("present"))],
        _ => r.list(c, "buckets"),
    };
    let mut grants = Vec::new();
    for (item, v) in entries {
        let (pattern, pattern_path, permissions) = match v {
            Value::String(p) => (Some(p.clone()), item.clone(), Some(Permissions::DATA)),
            other => {
                let Some(g) = r.obj(&item, Some(other), &["pattern", "permissions"]) else {
                    continue;
                };
                let pattern = r.required_string(&g, "pattern", "a bucket pattern such as logs-*");
                (pattern, g.child("pattern"), permission_set(r, &g))
            }
        };
        let pattern = pattern.and_then(|p| match Glob::new(&p) {
            Ok(g) => Some(g),
            Err(e) => {
                r.problem(&pattern_path, e, None);
                None
            }
        });
        if let (Some(pattern), Some(permissions)) = (pattern, permissions) {
            grants.push(BucketGrant {
                pattern,
                permissions,
            });
        }
    }
    grants
}

/// `permissions: [read, write, delete, admin]` of one bucket grant.
fn permission_set(r: &mut Reader, g: &Obj) -> Option<Permissions> {
    let hint = || {
        Some(format!(
            "list some of {}",
            Permission::ALL.map(Permission::as_str).join(", ")
        ))
    };
    let Some(names) = r.string_list(g, "permissions") else {
        r.problem(&g.child("permissions"), "missing", hint());
        return None;
    };
    let mut set = Permissions::NONE;
    let mut ok = true;
    for (i, name) in names.iter().enumerate() {
        match Permission::parse(name) {
            Some(p) => set = set.with(p),
            None => {
                ok = false;
                r.problem(
                    &format!("{}[{i}]", g.child("permissions")),
                    format!("unknown permission `{name}`"),
                    hint(),
                );
            }
        }
    }
    if ok && set.is_empty() {
        r.problem(
            &g.child("permissions"),
            "empty: the grant would allow nothing",
            hint(),
        );
        return None;
    }
    ok.then_some(set)
}

/// Keys shared by the AWS KMS single block and named aws-kms configs.
const KMS_KEYS: &[&str] = &[
    "default_key_id",
    "region",
    "endpoint",
    "key_spec",
    "encryption_context",
    "data_key_cache_ttl",
    "validate_keys",
    "enable_key_rotation",
    "credentials",
];

fn encryption(
    r: &mut Reader,
    top: &Obj,
    buckets: &BTreeMap<String, BucketConfig>,
) -> Option<Encryption> {
    let o = r.obj(
        "encryption",
        top.get("encryption"),
        &[
            "key_provider",
            "key_providers",
            "policies",
            "kms",
            "azure_keyvault",
            "custom",
            "local",
        ],
    )?;
    let mut providers: BTreeMap<String, Provider> = BTreeMap::new();

    // Single-provider blocks, named by their type.
    let mut kms_disabled = false;
    if o.has("kms") {
        let mut known = KMS_KEYS.to_vec();
        known.push("enabled");
        if let Some(k) = r.obj("encryption.kms", o.get("kms"), &known) {
            let enabled = r.boolean(&k, "enabled").unwrap_or(true);
            kms_disabled = !enabled;
            if enabled {
                if let Some(kind) = aws_kms(r, &k) {
                    providers.insert(
                        "aws-kms".into(),
                        Provider {
                            name: "aws-kms".into(),
                            kind,
                        },
                    );
                }
            }
        }
    }
    for (block, ty) in [
        ("azure_keyvault", "azure-keyvault"),
        ("custom", "custom"),
        ("local", "local"),
    ] {
        if !o.has(block) {
            continue;
        }
        let path = format!("encryption.{block}");
        if let Some(kind) = provider_config(r, &path, ty, o.get(block)) {
            providers.insert(
                ty.into(),
                Provider {
                    name: ty.into(),
                    kind,
                },
            );
        }
    }

    // The single-provider blocks, before named providers join them.
    let singles: Vec<String> = providers.keys().cloned().collect();

    // Named providers.
    for (name, v) in r.dict("encryption.key_providers", o.get("key_providers")) {
        let at = format!("encryption.key_providers.{name}");
        let Some(p) = r.obj(&at, Some(v), &["type", "config"]) else {
            continue;
        };
        if providers.contains_key(name) {
            r.problem(
                &at,
                format!("`{name}` is also the name of a single-provider block"),
                Some("rename the named provider".into()),
            );
            continue;
        }
        let Some(ty) =
            r.required_string(&p, "type", "one of aws-kms, azure-keyvault, custom, local")
        else {
            continue;
        };
        if !PROVIDER_TYPES.contains(&ty.as_str()) {
            let hint = match suggest(&ty, PROVIDER_TYPES) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "use aws-kms, azure-keyvault, custom or local".to_string(),
            };
            r.problem(
                &p.child("type"),
                format!("unknown provider type `{ty}`"),
                Some(hint),
            );
            continue;
        }
        if let Some(kind) = provider_config(r, &p.child("config"), &ty, p.get("config")) {
            providers.insert(
                name.to_string(),
                Provider {
                    name: name.to_string(),
                    kind,
                },
            );
        }
    }

    // The default provider.
    let default_provider = match r.string(&o, "key_provider") {
        Some(name) => {
            let resolved = resolve_provider(&name, &providers);
            if resolved.is_none() {
                unknown_provider(
                    r,
                    "encryption.key_provider",
                    &name,
                    &providers,
                    kms_disabled,
                );
            }
            resolved
        }
        // One single-provider block (the legacy `kms` included) is the default.
        None if singles.len() == 1 => singles.first().cloned(),
        // Only named providers: policies alone decide which buckets are encrypted.
        None if singles.is_empty() => None,
        None => {
            r.problem(
                "encryption.key_provider",
                "missing: several single-provider blocks are configured and none is the default",
                Some(format!("set it to one of: {}", names(&providers))),
            );
            None
        }
    };

    // Policies.
    let mut policies = Vec::new();
    for (path, v) in r.list(&o, "policies") {
        let Some(p) = r.obj(
            &path,
            Some(v),
            &[
                "bucket_pattern",
                "key_provider",
                "mandatory",
                "allowed_key_ids",
                "readable_key_ids",
                "readable_providers",
                "readable_buckets",
            ],
        ) else {
            continue;
        };
        let pattern = r
            .required_string(
                &p,
                "bucket_pattern",
                "a bucket name or glob such as `prod-*`",
            )
            .and_then(|s| match Glob::new(&s) {
                Ok(g) => Some(g),
                Err(e) => {
                    r.problem(&p.child("bucket_pattern"), e, None);
                    None
                }
            });
        let provider = match r.string(&p, "key_provider") {
            Some(name) => {
                let resolved = resolve_provider(&name, &providers);
                if resolved.is_none() {
                    unknown_provider(r, &p.child("key_provider"), &name, &providers, kms_disabled);
                }
                resolved
            }
            None => match &default_provider {
                Some(d) => Some(d.clone()),
                None => {
                    r.problem(
                        &p.child("key_provider"),
                        "missing, and there is no default provider",
                        Some("name one of encryption.key_providers".into()),
                    );
                    None
                }
            },
        };
        let mandatory = r.boolean(&p, "mandatory").unwrap_or(true);
        let allowed_key_ids = r.string_list(&p, "allowed_key_ids").unwrap_or_default();
        let readable_key_ids = r.string_list(&p, "readable_key_ids").unwrap_or_default();
        let readable_providers = r.string_list(&p, "readable_providers").unwrap_or_default();
        for (i, name) in readable_providers.iter().enumerate() {
            if resolve_provider(name, &providers).is_none() {
                let path = format!("{}[{i}]", p.child("readable_providers"));
                unknown_provider(r, &path, name, &providers, kms_disabled);
            }
        }
        let readable_buckets = r.string_list(&p, "readable_buckets").unwrap_or_default();
        if let (Some(bucket_pattern), Some(key_provider)) = (pattern, provider) {
            policies.push(Policy {
                bucket_pattern,
                key_provider,
                mandatory,
                allowed_key_ids,
                readable_key_ids,
                readable_providers,
                readable_buckets,
            });
        }
    }

    // Per-bucket KMS settings need a KMS provider to mean anything.
    for (alias, b) in buckets {
        if b.kms_key_id.is_none() && b.kms_encryption_context.is_empty() {
            continue;
        }
        let provider = policies
            .iter()
            .find(|p| p.bucket_pattern.matches(alias))
            .map(|p| p.key_provider.as_str())
            .or(default_provider.as_deref());
        if provider.is_none() && r.problems.is_empty() {
            r.warn(
                &format!("storage.s3.bucket_configs.{alias}.kms_key_id"),
                "this bucket has KMS settings but no key provider applies to it",
                Some("configure encryption.kms or a policy matching the bucket".into()),
            );
        }
        // Only an aws-kms provider reads them: with any other they would
        // be silently ignored.
        if let Some(name) = provider {
            let kind = providers.get(name).map(|p| &p.kind);
            if kind.is_some_and(|k| !matches!(k, ProviderKind::AwsKms(_))) {
                r.warn(
                    &format!("storage.s3.bucket_configs.{alias}.kms_key_id"),
                    format!("ignored: the bucket's key provider {name} is not aws-kms"),
                    Some("name the key in the bucket's policy (key_id) instead".into()),
                );
            }
        }
    }

    if providers
        .values()
        .any(|p| matches!(p.kind, ProviderKind::Local(_)))
    {
        r.warn(
            "encryption",
            "a `local` key provider is configured: its key lives in the config file",
            Some(
                "use it for development only; use aws-kms, azure-keyvault or custom in production"
                    .into(),
            ),
        );
    }

    Some(Encryption {
        default_provider,
        providers,
        policies,
    })
}

fn names(providers: &BTreeMap<String, Provider>) -> String {
    providers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `key_provider` value names a named provider, or the type of a single-provider block.
fn resolve_provider(name: &str, providers: &BTreeMap<String, Provider>) -> Option<String> {
    providers.contains_key(name).then(|| name.to_string())
}

fn unknown_provider(
    r: &mut Reader,
    path: &str,
    name: &str,
    providers: &BTreeMap<String, Provider>,
    kms_disabled: bool,
) {
    let hint = if name == "aws-kms" && kms_disabled {
        "encryption.kms.enabled is false".to_string()
    } else if PROVIDER_TYPES.contains(&name) {
        let block = match name {
            "aws-kms" => "kms",
            "azure-keyvault" => "azure_keyvault",
            other => other,
        };
        format!(
            "add an encryption.{block} block, or name one of: {}",
            names(providers)
        )
    } else {
        match suggest(name, providers.keys().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if providers.is_empty() => "no key providers are configured".to_string(),
            None => format!("configured providers: {}", names(providers)),
        }
    };
    r.problem(path, format!("unknown key provider `{name}`"), Some(hint));
}

fn provider_config(
    r: &mut Reader,
    path: &str,
    ty: &str,
    v: Option<&Value>,
) -> Option<ProviderKind> {
    match ty {
        "aws-kms" => {
            let o = r.obj(path, v, KMS_KEYS)?;
            aws_kms(r, &o)
        }
        "azure-keyvault" => {
            let [s, se, sf] = secret_keys("client_secret");
            let known = [
                "vault_url",
                "key_name",
                "key_version",
                "tenant_id",
                "client_id",
                s.as_str(),
                se.as_str(),
                sf.as_str(),
                "key_size",
                "data_key_cache_ttl",
                "authority_host",
                "ca_file",
                "verify_challenge_resource",
                "validate_keys",
            ];
            let o = r.obj(path, v, &known)?;
            azure(r, &o)
        }
        "custom" => {
            let [m, me, mf] = secret_keys("master_key");
            let known = [
                m.as_str(),
                me.as_str(),
                mf.as_str(),
                "key_derivation_salt",
                "data_key_cache_ttl",
                "previous_master_keys",
            ];
            let o = r.obj(path, v, &known)?;
            let master_key = master_key(r, &o, "master_key", Some(CUSTOM_MASTER_KEY_LEN));
            let previous_master_keys = previous_master_keys(r, &o, Some(CUSTOM_MASTER_KEY_LEN));
            let salt = r.string(&o, "key_derivation_salt").and_then(|s| {
                match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
                    Ok(b) => Some(b),
                    Err(_) => {
                        r.problem(&o.child("key_derivation_salt"), "not valid base64", None);
                        None
                    }
                }
            });
            let data_key_cache_ttl = r
                .duration(&o, "data_key_cache_ttl")
                .unwrap_or(DEFAULT_DATA_KEY_CACHE_TTL);
            Some(ProviderKind::Custom(Custom {
                master_key: master_key?,
                previous_master_keys,
                key_derivation_salt: salt,
                data_key_cache_ttl,
            }))
        }
        "local" => {
            let [m, me, mf] = secret_keys("master_key");
            let known = [
                m.as_str(),
                me.as_str(),
                mf.as_str(),
                "data_key_cache_ttl",
                "previous_master_keys",
            ];
            let o = r.obj(path, v, &known)?;
            let master_key = master_key(r, &o, "master_key", None);
            let previous_master_keys = previous_master_keys(r, &o, None);
            let data_key_cache_ttl = r
                .duration(&o, "data_key_cache_ttl")
                .unwrap_or(DEFAULT_DATA_KEY_CACHE_TTL);
            Some(ProviderKind::Local(Local {
                master_key: master_key?,
                previous_master_keys,
                data_key_cache_ttl,
            }))
        }
        _ => None,
    }
}

/// A base64 master key under `name` (`name`, `name_env` or `name_file`);
/// `exact_len` for providers that use it as an AES key directly.
fn master_key(r: &mut Reader, o: &Obj, name: &str, exact_len: Option<usize>) -> Option<Secret> {
    let [plain, env, file] = secret_key_names(name);
    let present = [&plain, &env, &file].iter().any(|k| o.has(k));
    if !present {
        r.problem(
            &o.child(name),
            "missing",
            Some("give master_key_env or master_key_file holding a base64 key (e.g. `openssl rand -base64 32`)".into()),
        );
        return None;
    }
    let encoded = r.secret(o, name)?;
    let text = encoded.expose_str().unwrap_or("").trim().to_string();
    let decoded = base64::engine::general_purpose::STANDARD.decode(&text);
    drop(Secret::from_string(text));
    match decoded {
        Ok(bytes) => {
            let key = Secret::new(bytes);
            match exact_len {
                Some(n) if key.len() != n => {
                    r.problem(
                        &o.child(name),
                        format!(
                            "decodes to {} bytes; this provider needs exactly {n}",
                            key.len()
                        ),
                        Some("generate one with `openssl rand -base64 32`".into()),
                    );
                    None
                }
                _ if key.is_empty() => {
                    r.problem(&o.child(name), "decodes to nothing", None);
                    None
                }
                _ => Some(key),
            }
        }
        Err(_) => {
            r.problem(
                &o.child(name),
                "not valid base64",
                Some("generate one with `openssl rand -base64 32`".into()),
            );
            None
        }
    }
}

fn secret_key_names(name: &str) -> [String; 3] {
    [
        name.to_string(),
        format!("{name}_env"),
        format!("{name}_file"),
    ]
}

/// `previous_master_keys`: earlier master keys, each `{key | key_env |
/// key_file}`, kept to unwrap what they wrapped after a rotation.
fn previous_master_keys(r: &mut Reader, o: &Obj, exact_len: Option<usize>) -> Vec<Secret> {
    let mut keys = Vec::new();
    for (path, v) in r.list(o, "previous_master_keys") {
        let Some(item) = r.obj(&path, Some(v), &["key", "key_env", "key_file"]) else {
            continue;
        };
        if let Some(k) = master_key(r, &item, "key", exact_len) {
            keys.push(k);
        }
    }
    keys
}

fn aws_kms(r: &mut Reader, o: &Obj) -> Option<ProviderKind> {
    let default_key_id =
        r.required_string(o, "default_key_id", "a KMS key id, ARN or `alias/name`");
    let region = r.string(o, "region");
    let endpoint = r.string(o, "endpoint");
    if let Some(e) = &endpoint {
        if let Err(msg) = parse_endpoint(e) {
            r.problem(&o.child("endpoint"), msg, None);
        }
    }
    let key_spec = match r.string(o, "key_spec").as_deref() {
        None | Some("AES_256") => KeySpec::Aes256,
        Some(other) => {
            r.problem(
                &o.child("key_spec"),
                format!("`{other}` is not supported"),
                Some("sealgate's data keys are AES_256 (RSA_* specs belong to asymmetric KMS keys, which cannot generate data keys)".into()),
            );
            KeySpec::Aes256
        }
    };
    let encryption_context = r.string_map(o, "encryption_context");
    let data_key_cache_ttl = r
        .duration(o, "data_key_cache_ttl")
        .unwrap_or(DEFAULT_DATA_KEY_CACHE_TTL);
    let validate_keys = r.boolean(o, "validate_keys").unwrap_or(false);
    let enable_key_rotation = r.boolean(o, "enable_key_rotation").unwrap_or(false);
    let credentials = if o.has("credentials") {
        upstream_credentials(r, o)?
    } else {
        UpstreamCredentials::DefaultChain
    };
    Some(ProviderKind::AwsKms(AwsKms {
        default_key_id: default_key_id?,
        region,
        endpoint,
        key_spec,
        encryption_context,
        data_key_cache_ttl,
        validate_keys,
        enable_key_rotation,
        credentials,
    }))
}

fn azure(r: &mut Reader, o: &Obj) -> Option<ProviderKind> {
    let vault_url = r.required_string(o, "vault_url", "e.g. `https://myvault.vault.azure.net`");
    if let Some(u) = &vault_url {
        if !u.starts_with("https://") {
            r.problem(
                &o.child("vault_url"),
                "must be an https:// URL",
                Some("Key Vault is only reachable over TLS".into()),
            );
        }
    }
    let key_name = r
        .string(o, "key_name")
        .unwrap_or_else(|| DEFAULT_AZURE_KEY_NAME.to_string());
    let key_version = r.string(o, "key_version");
    let tenant_id = r.string(o, "tenant_id");
    let client_id = r.string(o, "client_id");
    let client_secret = r.secret(o, "client_secret");
    if client_secret.is_some() && (tenant_id.is_none() || client_id.is_none()) {
        r.problem(
            &o.child("client_secret"),
            "a client secret needs tenant_id and client_id",
            Some("add both, or remove the secret to use managed identity".into()),
        );
    }
    let key_size = match r.unsigned(o, "key_size") {
        None | Some(256) => 256,
        Some(other) => {
            r.problem(
                &o.child("key_size"),
                format!("{other}-bit data keys are not supported"),
                Some("use 256".into()),
            );
            256
        }
    };
    let data_key_cache_ttl = r
        .duration(o, "data_key_cache_ttl")
        .unwrap_or(DEFAULT_DATA_KEY_CACHE_TTL);
    let authority_host = r.string(o, "authority_host");
    if let Some(h) = &authority_host {
        if !h.starts_with("https://") {
            r.problem(
                &o.child("authority_host"),
                "must be an https:// URL",
                Some(
                    "e.g. `https://login.microsoftonline.com`; tokens are only fetched over TLS"
                        .into(),
                ),
            );
        }
    }
    let ca_file = o
        .has("ca_file")
        .then(|| existing_file(r, o, "ca_file", "a PEM file of CA certificates"))
        .flatten();
    let verify_challenge_resource = r.boolean(o, "verify_challenge_resource").unwrap_or(true);
    let validate_keys = r.boolean(o, "validate_keys").unwrap_or(false);
    Some(ProviderKind::AzureKeyVault(AzureKeyVault {
        vault_url: vault_url?,
        key_name,
        key_version,
        tenant_id,
        client_id,
        client_secret,
        key_size,
        data_key_cache_ttl,
        authority_host,
        ca_file,
        verify_challenge_resource,
        validate_keys,
    }))
}

/// The highest `requests_per_second` or `burst` a client may be given:
/// beyond it a limit limits nothing a gateway instance can serve.
pub const MAX_CLIENT_RATE: u64 = 1_000_000;

/// `auth.clients[].rate_limit`: `requests_per_second` (required) and
/// `burst` (default: one second's worth).
fn rate_limit(r: &mut Reader, client: &Obj) -> Option<RateLimit> {
    if !client.has("rate_limit") {
        return None;
    }
    let o = r.obj(
        &client.child("rate_limit"),
        client.get("rate_limit"),
        &["requests_per_second", "burst"],
    )?;
    let positive = |r: &mut Reader, key: &str| -> Option<u32> {
        let n = r.unsigned(&o, key)?;
        if n == 0 || n > MAX_CLIENT_RATE {
            r.problem(
                &o.child(key),
                format!("{n} is not between 1 and {MAX_CLIENT_RATE}"),
                None,
            );
            return None;
        }
        Some(n as u32)
    };
    let per_second = positive(r, "requests_per_second");
    if per_second.is_none() && !o.has("requests_per_second") {
        r.problem(
            &o.child("requests_per_second"),
            "missing",
            Some("the requests a second this key may make to one instance".into()),
        );
    }
    let burst = if o.has("burst") {
        positive(r, "burst")?
    } else {
        per_second?
    };
    Some(RateLimit {
        per_second: per_second?,
        burst,
    })
}

fn logging(r: &mut Reader, top: &Obj) -> Option<Logging> {
    let o = r.obj(
        "logging",
        top.get("logging"),
        &["level", "kms_operations", "format", "buffer_lines"],
    )?;
    let level = match r.string(&o, "level").as_deref() {
        None | Some("info") => LogLevel::Info,
        Some("error") => LogLevel::Error,
        Some("warn") | Some("warning") => LogLevel::Warn,
        Some("debug") => LogLevel::Debug,
        Some("trace") => LogLevel::Trace,
        Some(other) => {
            r.problem(
                &o.child("level"),
                format!("`{other}` is not a log level"),
                Some("use error, warn, info, debug or trace".into()),
            );
            LogLevel::Info
        }
    };
    let format = match r.string(&o, "format").as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            r.problem(
                &o.child("format"),
                format!("`{other}` is not a log format"),
                Some("use text or json".into()),
            );
            LogFormat::Text
        }
    };
    let kms_operations = r.boolean(&o, "kms_operations").unwrap_or(false);
    let buffer_lines = match r.unsigned(&o, "buffer_lines") {
        Some(0) => {
            r.problem(
                &o.child("buffer_lines"),
                "must be positive",
                Some(format!("the default is {DEFAULT_LOG_BUFFER_LINES}")),
            );
            DEFAULT_LOG_BUFFER_LINES
        }
        Some(n) if n > MAX_LOG_BUFFER_LINES => {
            r.problem(
                &o.child("buffer_lines"),
                format!("{n} lines could hold hundreds of MiB"),
                Some(format!("at most {MAX_LOG_BUFFER_LINES}")),
            );
            DEFAULT_LOG_BUFFER_LINES
        }
        Some(n) => n as usize,
        None => DEFAULT_LOG_BUFFER_LINES,
    };
    Some(Logging {
        level,
        kms_operations,
        format,
        buffer_lines,
    })
}
