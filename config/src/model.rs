//! The validated, typed configuration the gateway runs on.
//!
//! Everything here has been checked: names resolve, addresses parse, secrets
//! were read. The gateway never sees the YAML tree.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::glob::Glob;
use crate::secret::Secret;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub upstream: Upstream,
    pub auth: Auth,
    pub encryption: Encryption,
    /// Client-visible bucket name -> per-bucket settings (`storage.s3.bucket_configs`).
    pub buckets: BTreeMap<String, BucketConfig>,
    pub logging: Logging,
    /// The files secrets were read from (`*_file` keys): a running gateway
    /// watches them with the configuration file and its certificate
    /// (`server.reload_on_change`), so a rotated secret is picked up.
    pub secret_files: Vec<PathBuf>,
}

/// Where the gateway listens.
#[derive(Debug, Clone)]
pub struct Server {
    /// Plain-HTTP S3 listener (`server.listen`).
    pub listen: Option<SocketAddr>,
    /// HTTPS S3 listener (`server.tls`).
    pub tls: Option<ServerTls>,
    /// Admin listener for /metrics, /healthz and /readyz (`server.admin_listen`).
    pub admin_listen: Option<SocketAddr>,
    /// Worker threads for the proxy service.
    pub threads: usize,
    /// Base domains for virtual-hosted-style requests: a request for
    /// `bucket.<domain>` addresses `bucket`. Anything else is path-style.
    pub domains: Vec<String>,
    /// How long in-flight requests may run on after shutdown begins
    /// (listeners closed).
    pub grace_period: Duration,
    /// How long the gateway keeps serving, answering `/readyz` not-ready,
    /// after SIGTERM and before it stops accepting: the time a load
    /// balancer needs to take it out of rotation.
    pub drain_delay: Duration,
    /// The S3 listeners expect a PROXY protocol v2 header on every
    /// connection (behind an NLB or haproxy) and refuse connections
    /// without one.
    pub proxy_protocol: bool,
    /// Longest a client may take to send a whole request header, from its
    /// first byte (each read is bounded separately by Pingora).
    pub request_header_timeout: Duration,
    /// Requests served at once; beyond it a request is answered `503
    /// SlowDown` (with `Retry-After`) before any work, so memory stays
    /// bounded and SDKs back off.
    pub max_in_flight: u64,
    /// Reload when the configuration file, the TLS certificate or key, or
    /// a secret file changes (as on SIGHUP): mounted ConfigMaps and Secrets
    /// change in place, and nothing sends a signal.
    pub reload_on_change: bool,
    /// The Unix socket an old process hands its listeners over on during a
    /// zero-downtime upgrade (`sealgate run --upgrade`, then SIGQUIT to the
    /// old process).
    pub upgrade_sock: PathBuf,
}

/// The HTTPS listener.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The real S3 endpoint behind the gateway (`storage.s3`).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub endpoint: Endpoint,
    /// Region used to sign upstream requests.
    pub region: String,
    pub addressing_style: AddressingStyle,
    /// Extra CA certificates (PEM) trusted for an https endpoint, besides the system roots.
    pub ca_bundle: Option<PathBuf>,
    pub credentials: UpstreamCredentials,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// How often the endpoint's host name is resolved again (AWS S3's
    /// regional endpoints rotate their addresses); zero: never.
    pub dns_refresh: Duration,
    /// Largest object body the backend takes in one PUT (S3: 5 GiB). An
    /// encrypted PUT whose ciphertext would exceed it is refused up front.
    pub max_put_size: u64,
    /// The checksum the gateway sends with the ciphertext it stores, so the
    /// backend verifies every byte (and can check multipart uploads).
    pub stored_checksum: StoredChecksum,
    /// The backend reads object keys as opaque strings (AWS S3, Garage,
    /// Ceph RGW), so keys with `.`, `..` or empty path segments may pass.
    /// Off by default: a backend that maps keys to file paths would
    /// resolve such a key into another bucket.
    pub literal_keys: bool,
}

impl Upstream {
    /// Reaches the same backend as the same principal, with the same
    /// request settings: one connection pool and one probe finding serve
    /// both, and the backend can copy between their buckets.
    pub fn same_backend(&self, other: &Upstream) -> bool {
        self.endpoint == other.endpoint
            && self.region == other.region
            && self.addressing_style == other.addressing_style
            && self.stored_checksum == other.stored_checksum
            && self.credentials.same_as(&other.credentials)
    }
}

/// What the gateway sends the backend to verify the bytes it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredChecksum {
    /// Found out: a trailing CRC32C where the backend verifies one (AWS S3
    /// always; any other backend is asked once, see the gateway's
    /// `upstream::trailers`), else none.
    Auto,
    /// A trailing CRC32C (aws-chunked `STREAMING-UNSIGNED-PAYLOAD-TRAILER`):
    /// AWS S3, Garage, MinIO, current Ceph.
    Crc32c,
    /// None, for backends without aws-chunked trailers: bodies go with a
    /// plain `Content-Length`, unchecked by the backend.
    None,
}

/// A parsed endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host` or `host:port` as the Host header names it (default ports omitted).
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The endpoint written back as a URL.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority()
        )
    }
}

/// How upstream requests name the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressingStyle {
    /// `https://endpoint/bucket/key`: works with every S3-compatible store.
    Path,
    /// `https://bucket.endpoint/key`: what AWS recommends.
    Virtual,
}

/// How the gateway authenticates to the upstream.
#[derive(Debug, Clone)]
pub enum UpstreamCredentials {
    /// Fixed keys from the config (the secret possibly from env or a file).
    Static {
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
    /// The standard AWS chain (env, profile, web identity, ECS, IMDS), resolved at start and refreshed.
    DefaultChain,
}

impl UpstreamCredentials {
    /// The same credentials (secrets compared in constant time).
    pub fn same_as(&self, other: &UpstreamCredentials) -> bool {
        use subtle::ConstantTimeEq;
        let same = |x: &Secret, y: &Secret| bool::from(x.expose().ct_eq(y.expose()));
        match (self, other) {
            (Self::DefaultChain, Self::DefaultChain) => true,
            (
                Self::Static {
                    access_key_id: ka,
                    secret_access_key: sa,
                    session_token: ta,
                },
                Self::Static {
                    access_key_id: kb,
                    secret_access_key: sb,
                    session_token: tb,
                },
            ) => {
                ka == kb
                    && same(sa, sb)
                    && match (ta, tb) {
                        (None, None) => true,
                        (Some(x), Some(y)) => same(x, y),
                        _ => false,
                    }
            }
            _ => false,
        }
    }
}

/// Client authentication (`auth`).
#[derive(Debug, Clone)]
pub struct Auth {
    pub clients: Vec<ClientCredential>,
    /// Largest allowed difference between a request's `x-amz-date` and the gateway's clock.
    pub max_clock_skew: Duration,
    /// Signature Version 2 accepted (`auth.signature_v2`, default on: the
    /// aws cli v1 and boto3 presign with it by default in us-east-1).
    pub signature_v2: bool,
}

/// One client key pair and the buckets it may use.
#[derive(Debug, Clone)]
pub struct ClientCredential {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// What this key may do in which client-visible buckets; ListBuckets
    /// is always allowed and shows only buckets some grant names.
    pub buckets: Vec<BucketGrant>,
    /// The most requests a second this key may make to one instance
    /// (`auth.clients[].rate_limit`), if limited.
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket: `per_second` requests a second on average, up to `burst`
/// at once. Per instance: a fleet of n instances behind a balancer lets a
/// key make about n times as many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Permissions on the buckets one pattern names (`auth.clients[].buckets[]`).
/// A client's rights in a bucket are the union of every grant that matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketGrant {
    pub pattern: Glob,
    pub permissions: Permissions,
}

impl BucketGrant {
    /// A bare pattern: the data permissions (`read`, `write`, `delete`).
    pub fn data(pattern: Glob) -> Self {
        Self {
            pattern,
            permissions: Permissions::DATA,
        }
    }
}

/// One thing a client may be allowed to do in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read and list objects, uploads and parts; GetBucketLocation.
    Read,
    /// Put, copy and upload objects; object tagging.
    Write,
    /// Delete objects.
    Delete,
    /// Create and delete buckets; every bucket configuration call (policy,
    /// ACLs, lifecycle, replication, ...); object ACLs, retention, legal holds.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 4] = [Self::Read, Self::Write, Self::Delete, Self::Admin];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Permission`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const NONE: Self = Self(0);
    /// What a bare bucket pattern grants: everything but `admin`.
    pub const DATA: Self = Self(1 | 1 << 1 | 1 << 2);

    pub fn with(self, p: Permission) -> Self {
        Self(self.0 | p.bit())
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

/// Key providers and bucket policies (`encryption`).
#[derive(Debug, Clone, Default)]
pub struct Encryption {
    /// The provider used where no policy matches; None means no encryption
    /// unless a policy says otherwise.
    pub default_provider: Option<String>,
    /// Every configured provider by name. Single-provider blocks are named by
    /// their type: `aws-kms`, `azure-keyvault`, `custom`, `local`.
    pub providers: BTreeMap<String, Provider>,
    /// First match wins.
    pub policies: Vec<Policy>,
}

/// A named key provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
}

/// The provider types.
#[derive(Debug, Clone)]
pub enum ProviderKind {
    AwsKms(AwsKms),
    AzureKeyVault(AzureKeyVault),
    Custom(Custom),
    Local(Local),
}

impl ProviderKind {
    /// The type name as written in `type:` and as reported to clients.
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderKind::AwsKms(_) => "aws-kms",
            ProviderKind::AzureKeyVault(_) => "azure-keyvault",
            ProviderKind::Custom(_) => "custom",
            ProviderKind::Local(_) => "local",
        }
    }

    /// How long a data key is reused for new objects and kept for reads.
    pub fn data_key_cache_ttl(&self) -> Duration {
        match self {
            ProviderKind::AwsKms(k) => k.data_key_cache_ttl,
            ProviderKind::AzureKeyVault(a) => a.data_key_cache_ttl,
            ProviderKind::Custom(c) => c.data_key_cache_ttl,
            ProviderKind::Local(l) => l.data_key_cache_ttl,
        }
    }
}

/// AWS KMS (`encryption.kms` or a named `aws-kms` provider).
#[derive(Debug, Clone)]
pub struct AwsKms {
    /// Key id, ARN or `alias/...` used for new data keys.
    pub default_key_id: String,
    pub region: Option<String>,
    /// A KMS endpoint URL other than AWS's (a VPC endpoint, or a local KMS for tests).
    pub endpoint: Option<String>,
    pub key_spec: KeySpec,
    pub encryption_context: BTreeMap<String, String>,
    pub data_key_cache_ttl: Duration,
    /// Call DescribeKey on start and refuse to start on a missing or disabled key.
    pub validate_keys: bool,
    /// Ask KMS to enable yearly automatic rotation of the key on start.
    pub enable_key_rotation: bool,
    /// Credentials for KMS (`credentials`, as under `storage.s3`); the
    /// standard AWS chain when absent.
    pub credentials: UpstreamCredentials,
}

/// Data key spec for GenerateDataKey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    Aes256,
}

/// Azure Key Vault (`encryption.azure_keyvault` or a named `azure-keyvault` provider).
#[derive(Debug, Clone)]
pub struct AzureKeyVault {
    pub vault_url: String,
    /// The RSA key in the vault that wraps data keys.
    pub key_name: String,
    pub key_version: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// With tenant and client id: a service principal; without: managed identity.
    pub client_secret: Option<Secret>,
    /// Data key size in bits.
    pub key_size: u16,
    pub data_key_cache_ttl: Duration,
    /// Where tokens are fetched (`https://login.microsoftonline.com` when
    /// absent, or `AZURE_AUTHORITY_HOST`): sovereign and private clouds.
    pub authority_host: Option<String>,
    /// CA certificates (PEM) trusted besides the system's, for a vault or
    /// authority behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// Refuse a bearer challenge whose resource is not the vault's own
    /// domain, so a token is never fetched for another audience.
    pub verify_challenge_resource: bool,
    /// Read the key at start-up and refuse to start when it is missing,
    /// disabled, expired or cannot wrap and unwrap.
    pub validate_keys: bool,
}

/// A master key the operator holds (`encryption.custom` or a named `custom` provider).
#[derive(Debug, Clone)]
pub struct Custom {
    /// Exactly 32 bytes; wraps every new data key.
    pub master_key: Secret,
    /// Earlier master keys: they unwrap what they wrapped, never wrap.
    pub previous_master_keys: Vec<Secret>,
    pub key_derivation_salt: Option<Vec<u8>>,
    pub data_key_cache_ttl: Duration,
}

/// A development key (`local`): any length, stretched with HKDF. Not for production.
#[derive(Debug, Clone)]
pub struct Local {
    pub master_key: Secret,
    /// Earlier master keys: they unwrap what they wrapped, never wrap.
    pub previous_master_keys: Vec<Secret>,
    pub data_key_cache_ttl: Duration,
}

/// A bucket policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub bucket_pattern: Glob,
    pub key_provider: String,
    /// When true, nothing is written to or read from matching buckets in plaintext.
    pub mandatory: bool,
    /// Key ids a client may pick with `x-amz-server-side-encryption-aws-kms-key-id`;
    /// empty means clients cannot pick a key.
    pub allowed_key_ids: Vec<String>,
    /// Further key ids whose objects stay readable (keys rotated away
    /// from); nothing new is written under them.
    pub readable_key_ids: Vec<String>,
    /// Other providers whose objects stay readable (any of their keys)
    /// while `sealgate rewrap` moves a bucket to this policy's provider.
    pub readable_providers: Vec<String>,
    /// Real names of other buckets whose objects stay readable here (an
    /// object names the bucket it was written to; objects replicated or
    /// moved from these buckets at the storage level are accepted).
    pub readable_buckets: Vec<String>,
}

/// Per-bucket settings (`storage.s3.bucket_configs.<alias>`).
#[derive(Debug, Clone)]
pub struct BucketConfig {
    /// The bucket's name upstream; the alias is what clients see.
    pub real_name: Option<String>,
    /// When true, clients may also type the real name (the alias's rules
    /// apply to it); by default the real name of an alias is refused.
    pub real_name_addressable: bool,
    /// The bucket's region: its upstream requests are signed for it.
    pub region: Option<String>,
    /// The bucket's own backend (`endpoint`, `region`, `credentials`,
    /// `addressing_style`, `stored_checksum` over `storage.s3`'s), when it
    /// is not `storage.s3`'s: its requests go there, and copies between it
    /// and a bucket elsewhere are made by the gateway.
    pub backend: Option<Upstream>,
    pub kms_key_id: Option<String>,
    pub kms_encryption_context: BTreeMap<String, String>,
}

/// Logging (`logging`).
#[derive(Debug, Clone)]
pub struct Logging {
    pub level: LogLevel,
    /// Log every key-provider call (never key material).
    pub kms_operations: bool,
    pub format: LogFormat,
    /// Lines held for the log writer when its output is slower than the
    /// gateway (`logging.buffer_lines`); past it lines are dropped and
    /// counted, never waited for.
    pub buffer_lines: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A bucket name a client typed, resolved: the name every rule (grants,
/// policies, bucket settings) is looked up by, and the upstream name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBucket {
    /// The alias when the bucket has one, else the name itself.
    pub name: String,
    /// The bucket's name upstream.
    pub real: String,
}

impl Config {
    /// Resolves a client-typed bucket name. `None` for the real name of an
    /// alias that is not `real_name_addressable`: rules follow the upstream
    /// bucket, so an alias and its real name never fall under different ones.
    pub fn resolve_bucket(&self, typed: &str) -> Option<ResolvedBucket> {
        if let Some(b) = self.buckets.get(typed) {
            return Some(ResolvedBucket {
                name: typed.to_string(),
                real: b.real_name.clone().unwrap_or_else(|| typed.to_string()),
            });
        }
        match self.alias_of(typed) {
            Some((alias, b)) if b.real_name_addressable => Some(ResolvedBucket {
                name: alias.to_string(),
                real: typed.to_string(),
            }),
            Some(_) => None,
            None => Some(ResolvedBucket {
                name: typed.to_string(),
                real: typed.to_string(),
            }),
        }
    }

    /// The name a bucket listed upstream is shown by: its alias, or itself;
    /// `None` when that name would reach another bucket (an alias elsewhere).
    pub fn visible_name<'a>(&'a self, real: &'a str) -> Option<&'a str> {
        if let Some((alias, _)) = self.alias_of(real) {
            return Some(alias);
        }
        match self.buckets.get(real) {
            Some(b) if b.real_name.as_deref().is_some_and(|n| n != real) => None,
            _ => Some(real),
        }
    }

    /// The alias whose real name is `real` (and differs from the alias).
    fn alias_of(&self, real: &str) -> Option<(&str, &BucketConfig)> {
        self.buckets
            .iter()
            .find(|(alias, b)| b.real_name.as_deref() == Some(real) && alias.as_str() != real)
            .map(|(alias, b)| (alias.as_str(), b))
    }

    /// The backend of a client-visible bucket (an alias or a name), and
    /// where the configuration sets it: the bucket's own, or `storage.s3`.
    pub fn upstream_for(&self, bucket: &str) -> (&Upstream, String) {
        match self.buckets.get(bucket).and_then(|b| b.backend.as_ref()) {
            Some(own) => (own, format!("storage.s3.bucket_configs.{bucket}")),
            None => (&self.upstream, "storage.s3".to_string()),
        }
    }

    /// Real bucket name -> the bucket's own backend, for every bucket with one.
    pub fn bucket_backends(&self) -> BTreeMap<&str, &Upstream> {
        self.buckets
            .iter()
            .filter_map(|(alias, b)| {
                let real = b.real_name.as_deref().unwrap_or(alias);
                b.backend.as_ref().map(|u| (real, u))
            })
            .collect()
    }

    /// The policy for a client-visible bucket: the first whose pattern matches.
    pub fn policy_for(&self, bucket: &str) -> Option<&Policy> {
        self.encryption
            .policies
            .iter()
            .find(|p| p.bucket_pattern.matches(bucket))
    }
}
