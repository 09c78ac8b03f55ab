//! The upstream S3 endpoint: one prototype peer (so Pingora's pool reuses
//! connections), how requests are addressed there, and SigV4 re-signing with
//! the gateway's own credentials.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::RequestHeader;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;
use sealgate_config::{AddressingStyle, Upstream, UpstreamCredentials};
use sealgate_filters::s3::auth::sigv4::{format_amz_date, ScopedKey};
use sealgate_filters::s3::uri;
use tokio::sync::RwLock;

mod exchange;
mod set;
mod trailers;
pub use set::Upstreams;
pub use trailers::StoredChecksumState;

/// Refresh chain credentials this long before they expire.
const CREDENTIAL_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Errors preparing an upstream request; never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream credentials are unavailable: {0}")]
    Credentials(String),
    #[error("signing the upstream request failed: {0}")]
    Signing(String),
    #[error("probing the upstream object failed: {0}")]
    Probe(String),
    #[error("{setting}: cannot resolve `{host}`: {reason} (hint: check the host name and the machine's DNS)")]
    Resolve {
        setting: String,
        host: String,
        reason: String,
    },
}

/// Where and how to reach the upstream.
pub struct UpstreamTarget {
    cfg: Upstream,
    /// Where the configuration sets this backend (`storage.s3`, or
    /// `storage.s3.bucket_configs.<alias>`): named in logs and metrics.
    setting: String,
    /// The prototype peer; its address is the current one of `address`.
    peer: HttpPeer,
    /// The endpoint's address, resolved again every `dns_refresh`.
    address: arc_swap::ArcSwap<std::net::SocketAddr>,
    credentials: CredentialSource,
    /// The signing key of the current day and credentials (derived once a
    /// day, not once a request).
    signing_key: Mutex<Option<Arc<ScopedKey>>>,
    /// For the gateway's own small requests (envelope probes).
    connector: Connector,
    /// `host[:port]` of the endpoint (the configuration's, fixed).
    authority: String,
    /// Multipart layouts this instance has found.
    pub(crate) layouts: crate::part_layout::LayoutCache,
    /// Whether the backend verifies aws-chunked trailers (`auto`).
    trailers: trailers::TrailerSupport,
    /// Buckets of this backend's that the configuration puts on another
    /// backend: never chosen for a probe (a client naming them reaches
    /// the other backend's bucket).
    elsewhere: Vec<String>,
}

/// Longest one read or write of the gateway's own upstream exchanges
/// (probes, part lists, copies it makes) may wait: a backend that stalls
/// mid-exchange fails the request instead of holding it forever.
const OWN_EXCHANGE_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest body a probe reads (part headers are 48 bytes).
const MAX_PROBE_BODY: usize = 4096;

enum CredentialSource {
    Static(Credentials),
    Chain {
        provider: Box<dyn ProvideCredentials>,
        cached: RwLock<Option<Credentials>>,
    },
}

impl UpstreamTarget {
    /// Builds the prototype peer (resolving the endpoint's host now: the
    /// peer holds a socket address); resolves the credential chain lazily.
    pub async fn new(cfg: &Upstream) -> Result<Self, UpstreamError> {
        Self::named(cfg, "storage.s3").await
    }

    /// [`Self::new`] for the backend the configuration sets at `setting`
    /// (`storage.s3`, or `storage.s3.bucket_configs.<alias>`).
    pub async fn named(cfg: &Upstream, setting: &str) -> Result<Self, UpstreamError> {
        let ca_file = cfg.ca_bundle.as_ref().map(|p| p.display().to_string());
        let ep = &cfg.endpoint;
        let sni = ep
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let unresolved = |reason: String| UpstreamError::Resolve {
            setting: format!("{setting}.endpoint"),
            host: ep.host.clone(),
            reason,
        };
        let addr = resolve(&sni, ep.port)
            .await
            .map_err(|e| unresolved(e.to_string()))?;
        let mut peer = HttpPeer::new(addr, ep.tls, sni);
        peer.options.connection_timeout = Some(cfg.connect_timeout);
        peer.options.total_connection_timeout = Some(cfg.connect_timeout);
        peer.options.read_timeout = Some(cfg.read_timeout);
        peer.options.write_timeout = Some(cfg.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        let credentials = match &cfg.credentials {
            UpstreamCredentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => CredentialSource::Static(Credentials::new(
                access_key_id,
                secret_access_key.expose_str().unwrap_or_default(),
                session_token
                    .as_ref()
                    .and_then(|t| t.expose_str())
                    .map(str::to_string),
                None,
                "sealgate-config",
            )),
            UpstreamCredentials::DefaultChain => CredentialSource::Chain {
                provider: Box::new(
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .build()
                        .await,
                ),
                cached: RwLock::new(None),
            },
        };
        let connector_options = ca_file.map(|ca| {
            ConnectorOptions::from_server_conf(&ServerConf {
                ca_file: Some(ca),
                ..ServerConf::default()
            })
        });
        Ok(Self {
            setting: setting.to_string(),
            authority: cfg.endpoint.authority(),
            cfg: cfg.clone(),
            address: arc_swap::ArcSwap::from_pointee(addr),
            peer,
            credentials,
            signing_key: Mutex::new(None),
            connector: Connector::new(connector_options),
            layouts: Default::default(),
            trailers: Default::default(),
            elsewhere: Vec::new(),
        })
    }

    /// Names this backend's buckets that live elsewhere (see `elsewhere`).
    pub fn with_elsewhere(mut self, names: Vec<String>) -> Self {
        self.elsewhere = names;
        self
    }

    /// Buckets this backend holds that the configuration puts elsewhere.
    pub fn elsewhere(&self) -> &[String] {
        &self.elsewhere
    }

    /// The backend's settings.
    pub fn config(&self) -> &Upstream {
        &self.cfg
    }

    /// Where the configuration sets this backend.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// A peer for one request: a clone of the prototype, so the pool matches.
    pub fn peer(&self) -> Box<HttpPeer> {
        let mut peer = self.peer.clone();
        peer._address = (**self.address.load()).into();
        Box::new(peer)
    }

    /// Resolves the endpoint's host again; new connections go to the first
    /// address it now has (pooled ones to the old one finish and expire).
    /// A failed lookup keeps the address in use.
    pub async fn refresh_address(&self) {
        let found = resolve(&self.peer.sni, self.cfg.endpoint.port).await;
        self.use_address(found);
    }

    /// Takes a fresh lookup's result (see [`Self::refresh_address`]).
    fn use_address(&self, found: std::io::Result<std::net::SocketAddr>) {
        let host = self.peer.sni.as_str();
        match found {
            Ok(addr) if addr != **self.address.load() => {
                tracing::info!(host, address = %addr, "upstream address changed");
                self.address.store(std::sync::Arc::new(addr));
                self.trailers.forget();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(host, error = %e, "resolving the upstream again failed; keeping its address")
            }
        }
    }

    /// `Host` and the path prefix for a bucket, per the addressing style.
    pub fn address(
        &self,
        real_bucket: Option<&str>,
        encoded_key: Option<&str>,
    ) -> (String, String) {
        let authority = self.authority.as_str();
        let key = encoded_key.unwrap_or("");
        // Concatenated, not formatted: this runs per request.
        match (real_bucket, self.cfg.addressing_style) {
            (None, _) => (authority.into(), "/".into()),
            (Some(b), AddressingStyle::Virtual) if !b.contains('.') => {
                ([b, ".", authority].concat(), ["/", key].concat())
            }
            (Some(b), _) if key.is_empty() => (authority.into(), ["/", b].concat()),
            (Some(b), _) => (authority.into(), ["/", b, "/", key].concat()),
        }
    }

    async fn credentials(&self) -> Result<Credentials, UpstreamError> {
        match &self.credentials {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::Chain { provider, cached } => {
                let fresh = |c: &Credentials| {
                    c.expiry()
                        .is_none_or(|e| e > SystemTime::now() + CREDENTIAL_REFRESH_MARGIN)
                };
                if let Some(c) = cached.read().await.as_ref().filter(|c| fresh(c)) {
                    return Ok(c.clone());
                }
                let mut slot = cached.write().await;
                if let Some(c) = slot.as_ref().filter(|c| fresh(c)) {
                    return Ok(c.clone());
                }
                let c = provider
                    .provide_credentials()
                    .await
                    .map_err(|e| UpstreamError::Credentials(e.to_string()))?;
                *slot = Some(c.clone());
                Ok(c)
            }
        }
    }

    /// The signing key for `creds` on `date`, derived when the day or the
    /// credentials change.
    fn scoped_key(&self, creds: &Credentials, date: &str) -> Arc<ScopedKey> {
        let mut slot = self
            .signing_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match slot.as_ref() {
            Some(k)
                if k.fits(
                    creds.access_key_id(),
                    creds.secret_access_key().as_bytes(),
                    date,
                ) =>
            {
                k.clone()
            }
            _ => {
                let k = Arc::new(ScopedKey::new(
                    creds.access_key_id(),
                    creds.secret_access_key().as_bytes(),
                    date,
                    &self.cfg.region,
                ));
                *slot = Some(k.clone());
                k
            }
        }
    }

    /// Signs `req` for the upstream as the last edit: the Host header, all
    /// `x-amz-*` headers, `content-md5` and `content-type` are signed, with
    /// `payload_hash` as `x-amz-content-sha256`.
    pub async fn sign(
        &self,
        req: &mut RequestHeader,
        payload_hash: &str,
    ) -> Result<(), UpstreamError> {
        let creds = self.credentials().await?;
        let signing = |e: Box<pingora::Error>| UpstreamError::Signing(e.etype().as_str().into());
        for h in ["authorization", "x-amz-date", "x-amz-security-token"] {
            req.remove_header(h);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let amz_date = format_amz_date(now);
        req.insert_header("x-amz-content-sha256", payload_hash)
            .map_err(signing)?;
        req.insert_header("x-amz-date", amz_date.as_str())
            .map_err(signing)?;
        if let Some(token) = creds.session_token() {
            req.insert_header("x-amz-security-token", token)
                .map_err(signing)?;
        }
        let key = self.scoped_key(&creds, &amz_date[..8]);
        let authorization = key.authorize_request(
            req.method.as_str(),
            &req.uri,
            &req.headers,
            payload_hash,
            &amz_date,
        );
        req.insert_header(http::header::AUTHORIZATION, authorization)
            .map_err(signing)?;
        Ok(())
    }
}

/// The first address `host` resolves to (the system resolver).
async fn resolve(host: &str, port: u16) -> std::io::Result<std::net::SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no addresses"))
}

/// Encodes a decoded key for an upstream path.
pub fn encode_key(key: &str) -> String {
    // `.` and `..` segments reach here only with `storage.s3.literal_keys`
    // (every key a client sends is checked first, `check_key`): they go as
    // they are, since S3 and Garage take them literally and sign over the
    // decoded path (encoding the dots would break the signature); nothing
    // that normalises paths may sit between the gateway and such a
    // backend (docs/DECISIONS.md).
    uri::encode_path(key)
}

#[cfg(test)]
mod tests {

    //! The gateway's own signer against the AWS SDK's (aws-sigv4) on the
    //! shapes of request it sends: queries out of order, empty values,
    //! encoded keys, padded and repeated headers, a session token.
    use super::*;

    #[tokio::test]
    async fn a_new_address_is_used_and_a_failed_lookup_keeps_the_old() {
        let target = target(None).await;
        let addr = |t: &UpstreamTarget| t.peer()._address.to_string();
        assert_eq!(addr(&target), "127.0.0.1:9000");
        target.use_address(Ok("127.0.0.2:9000".parse().unwrap()));
        assert_eq!(addr(&target), "127.0.0.2:9000");
        target.use_address(Err(std::io::Error::other("no answer")));
        assert_eq!(addr(&target), "127.0.0.2:9000", "kept");
    }

    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SigningSettings, UriPathNormalizationMode,
    };
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;
    use sealgate_config::{Endpoint, Secret};
    use sealgate_filters::s3::auth::sigv4::{parse_amz_date, UNSIGNED_PAYLOAD};

    async fn target(session_token: Option<&str>) -> UpstreamTarget {
        UpstreamTarget::new(&Upstream {
            endpoint: Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9000,
            },
            region: "eu-west-3".into(),
            addressing_style: AddressingStyle::Path,
            ca_bundle: None,
            credentials: UpstreamCredentials::Static {
                access_key_id: "AKIDUPSTREAM".into(),
                secret_access_key: Secret::from_string("upstream/secret+key".into()),
                session_token: session_token.map(|t| Secret::from_string(t.into())),
            },
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            dns_refresh: Duration::ZERO,
            max_put_size: 1 << 30,
            stored_checksum: sealgate_config::StoredChecksum::Crc32c,
            literal_keys: false,
        })
        .await
        .unwrap()
    }

    /// What aws-sigv4 would put in `Authorization` for `req` as signed.
    fn sdk_authorization(req: &RequestHeader, payload_hash: &str, token: Option<&str>) -> String {
        let header = |n: &str| req.headers.get(n).unwrap().to_str().unwrap().to_string();
        let amz_date = header("x-amz-date");
        let time = UNIX_EPOCH + Duration::from_secs(parse_amz_date(&amz_date).unwrap() as u64);
        let url = format!(
            "http://{}{}",
            header("host"),
            req.uri.path_and_query().unwrap().as_str()
        );
        let signed: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter(|(n, _)| {
                let n = n.as_str();
                (n == "host"
                    || n.starts_with("x-amz-")
                    || n == "content-md5"
                    || n == "content-type")
                    && n != "x-amz-date"
                    && n != "x-amz-security-token"
            })
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        let identity: Identity = Credentials::new(
            "AKIDUPSTREAM",
            "upstream/secret+key",
            token.map(str::to_string),
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-3")
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            req.method.as_str(),
            url,
            signed.into_iter(),
            SignableBody::Precomputed(payload_hash.to_string()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .iter()
            .find(|h| h.name() == "authorization")
            .unwrap()
            .value()
            .to_string()
    }

    #[tokio::test]
    async fn signatures_match_the_aws_sdk() {
        /// Method, path and query, extra headers, session token.
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            ("GET", "/bucket/a%20b/c%2Bd.txt", &[], None),
            (
                "GET",
                "/bucket?prefix=a%2Fb&list-type=2&delimiter=%2F&max-keys=10",
                &[("range", "bytes=0-9")],
                None,
            ),
            (
                "POST",
                "/bucket/key?uploads=",
                &[
                    ("content-type", "  text/plain;   charset=utf-8 "),
                    ("x-amz-meta-note", "two  spaces"),
                ],
                Some("session/token=="),
            ),
            (
                "PUT",
                "/bucket/key?uploadId=abc%2F12&partNumber=3",
                &[
                    ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
                    ("x-amz-meta-a", "1"),
                    ("x-amz-meta-a", "2"),
                ],
                None,
            ),
        ];
        for (method, path_and_query, headers, token) in cases {
            let upstream = target(*token).await;
            let mut req = RequestHeader::build(*method, path_and_query.as_bytes(), None).unwrap();
            req.insert_header("host", "s3.example.test:9000").unwrap();
            for (n, v) in *headers {
                req.append_header(*n, *v).unwrap();
            }
            upstream.sign(&mut req, UNSIGNED_PAYLOAD).await.unwrap();
            let ours = req.headers.get("authorization").unwrap().to_str().unwrap();
            assert_eq!(
                ours,
                sdk_authorization(&req, UNSIGNED_PAYLOAD, *token),
                "{method} {path_and_query}"
            );
            assert_eq!(
                req.headers
                    .get("x-amz-security-token")
                    .map(|v| v.to_str().unwrap()),
                *token
            );
        }
    }

    #[tokio::test]
    async fn the_signing_key_is_derived_once_a_day_per_credential() {
        let upstream = target(None).await;
        let creds = upstream.credentials().await.unwrap();
        let a = upstream.scoped_key(&creds, "20261126");
        assert!(Arc::ptr_eq(&a, &upstream.scoped_key(&creds, "20261126")));
        let b = upstream.scoped_key(&creds, "20261127");
        assert!(!Arc::ptr_eq(&a, &b));
        let other = Credentials::new("AKIDOTHER", "s", None, None, "test");
        let c = upstream.scoped_key(&other, "20261127");
        assert!(!Arc::ptr_eq(&b, &c));
        let rotated = Credentials::new("AKIDOTHER", "rotated", None, None, "test");
        assert!(!Arc::ptr_eq(&c, &upstream.scoped_key(&rotated, "20261127")));
    }

    #[tokio::test]
    async fn buckets_are_addressed_per_the_configured_style() {
        let mut target = target(None).await;
        let at = |t: &UpstreamTarget, b, k| {
            let (host, path) = t.address(b, k);
            format!("{host} {path}")
        };
        assert_eq!(at(&target, None, None), "127.0.0.1:9000 /");
        assert_eq!(at(&target, Some("b"), None), "127.0.0.1:9000 /b");
        assert_eq!(
            at(&target, Some("b"), Some("k/x%20y")),
            "127.0.0.1:9000 /b/k/x%20y"
        );
        target.cfg.addressing_style = AddressingStyle::Virtual;
        assert_eq!(at(&target, Some("b"), Some("k")), "b.127.0.0.1:9000 /k");
        assert_eq!(at(&target, Some("b"), None), "b.127.0.0.1:9000 /");
        // A dotted bucket cannot be a host label under TLS: path style.
        assert_eq!(at(&target, Some("a.b"), Some("k")), "127.0.0.1:9000 /a.b/k");
    }
}
