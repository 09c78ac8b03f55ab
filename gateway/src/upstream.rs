//! The upstream S3 endpoint: one prototype peer (so Pingora's pool reuses
//! connections), how requests are addressed there, and SigV4 re-signing with
//! the gateway's own credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;
use sealgate_config::{AddressingStyle, Upstream, UpstreamCredentials};
use sealgate_filters::s3::uri;
use tokio::sync::RwLock;

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
}

/// Where and how to reach the upstream.
pub struct UpstreamTarget {
    cfg: Upstream,
    peer: HttpPeer,
    credentials: CredentialSource,
    /// For the gateway's own small requests (envelope probes).
    connector: Connector,
}

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
    /// Builds the prototype peer; resolves the credential chain lazily.
    pub async fn new(cfg: &Upstream) -> Self {
        let ca_file = cfg.ca_bundle.as_ref().map(|p| p.display().to_string());
        let ep = &cfg.endpoint;
        let sni = ep
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let addr = format!("{}:{}", ep.host, ep.port);
        let mut peer = HttpPeer::new(addr.as_str(), ep.tls, sni);
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
        Self {
            cfg: cfg.clone(),
            peer,
            credentials,
            connector: Connector::new(connector_options),
        }
    }

    /// A peer for one request: a clone of the prototype, so the pool matches.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }

    /// `Host` and the path prefix for a bucket, per the addressing style.
    pub fn address(
        &self,
        real_bucket: Option<&str>,
        encoded_key: Option<&str>,
    ) -> (String, String) {
        let authority = self.cfg.endpoint.authority();
        let key = encoded_key.unwrap_or("");
        match (real_bucket, self.cfg.addressing_style) {
            (None, _) => (authority, "/".to_string()),
            (Some(b), AddressingStyle::Virtual) if !b.contains('.') => {
                (format!("{b}.{authority}"), format!("/{key}"))
            }
            (Some(b), _) if key.is_empty() => (authority, format!("/{b}")),
            (Some(b), _) => (authority, format!("/{b}/{key}")),
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

    /// Signs `req` for the upstream as the last edit: the Host header, all
    /// `x-amz-*` headers, `content-md5` and `content-type` are signed, with
    /// `payload_hash` as `x-amz-content-sha256`.
    pub async fn sign(
        &self,
        req: &mut RequestHeader,
        payload_hash: &str,
    ) -> Result<(), UpstreamError> {
        let creds = self.credentials().await?;
        for h in ["authorization", "x-amz-date", "x-amz-security-token"] {
            req.remove_header(h);
        }
        req.insert_header("x-amz-content-sha256", payload_hash)
            .map_err(|e| UpstreamError::Signing(e.to_string()))?;
        let scheme = if self.cfg.endpoint.tls {
            "https"
        } else {
            "http"
        };
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let path_and_query = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let url = format!("{scheme}://{host}{path_and_query}");
        let signed: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter(|(n, _)| {
                let n = n.as_str();
                n == "host" || n.starts_with("x-amz-") || n == "content-md5" || n == "content-type"
            })
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
            .collect();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        let identity: Identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.cfg.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| UpstreamError::Signing(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            req.method.as_str(),
            url,
            signed.into_iter(),
            SignableBody::Precomputed(payload_hash.to_string()),
        )
        .map_err(|e| UpstreamError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| UpstreamError::Signing(e.to_string()))?
            .into_parts();
        let (headers, _) = instructions.into_parts();
        for h in headers {
            req.insert_header(h.name(), h.value())
                .map_err(|e| UpstreamError::Signing(e.to_string()))?;
        }
        Ok(())
    }
}

impl UpstreamTarget {
    /// GETs stored bytes `start..=end` of the object at `host` +
    /// `path_and_query`, signed with the gateway's credentials, over a pooled
    /// connection. Returns the response header and up to MAX_PROBE_BODY bytes.
    pub async fn probe(
        &self,
        host: &str,
        path_and_query: &str,
        start: u64,
        end: u64,
    ) -> Result<(ResponseHeader, Bytes), UpstreamError> {
        let io = |e: Box<pingora::Error>| UpstreamError::Probe(e.etype().as_str().to_string());
        let mut req = RequestHeader::build("GET", path_and_query.as_bytes(), None).map_err(io)?;
        req.insert_header(http::header::HOST, host).map_err(io)?;
        req.insert_header(http::header::RANGE, format!("bytes={start}-{end}"))
            .map_err(io)?;
        self.sign(&mut req, sealgate_filters::s3::sigv4::EMPTY_SHA256)
            .await?;
        let (mut session, _) = self
            .connector
            .get_http_session(&self.peer)
            .await
            .map_err(io)?;
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(io)?;
        session.finish_request_body().await.map_err(io)?;
        session.read_response_header().await.map_err(io)?;
        let header = session
            .response_header()
            .cloned()
            .ok_or_else(|| UpstreamError::Probe("no response header".into()))?;
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(io)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_PROBE_BODY {
                return Err(UpstreamError::Probe("probe body too large".into()));
            }
        }
        self.connector
            .release_http_session(session, &self.peer, self.peer.options.idle_timeout)
            .await;
        Ok((header, body.freeze()))
    }
}

/// Encodes a decoded key for an upstream path.
pub fn encode_key(key: &str) -> String {
    uri::encode_path(key)
}

/// Shared handle.
pub type SharedUpstream = Arc<UpstreamTarget>;
