//! Which key provider, key and context apply to a bucket, and whether a
//! request's own encryption headers are acceptable there.
//!
//! First matching policy wins; without a match the default provider
//! applies with `mandatory: false` (writes are encrypted, objects written
//! before the gateway are still served). No provider at all means the
//! bucket is passed through.

use std::collections::BTreeMap;

use http::HeaderMap;
use sealgate_config::{Config, ProviderKind};

use crate::s3::responses::error::{S3Error, S3ErrorCode};

/// The encryption settings of one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEncryption {
    pub provider: String,
    pub mandatory: bool,
    /// A key chosen by configuration (`bucket_configs.<b>.kms_key_id` for
    /// KMS providers); `None` means the provider's default.
    pub key_id: Option<String>,
    pub allowed_key_ids: Vec<String>,
    /// Keys whose objects stay readable after rotation (`readable_key_ids`).
    pub readable_key_ids: Vec<String>,
    /// Providers whose objects stay readable during a move (`readable_providers`).
    pub readable_providers: Vec<String>,
    /// Other real buckets whose objects stay readable here (`readable_buckets`).
    pub readable_buckets: Vec<String>,
    /// Provider context merged with the bucket's (`kms_encryption_context`):
    /// what a stored object's context must include to be read here.
    pub context: BTreeMap<String, String>,
    /// The context new objects are written under: [`Self::context`] and
    /// the real bucket name ([`BUCKET_CONTEXT_KEY`]), so the KMS's audit
    /// trail and key policies see which bucket a data key serves.
    pub write_context: BTreeMap<String, String>,
}

/// The encryption-context entry naming the real bucket an object was
/// written to (`kms:EncryptionContext:sealgate:bucket` in a key policy).
pub const BUCKET_CONTEXT_KEY: &str = "sealgate:bucket";

/// Why a stored object may not be decrypted for this bucket's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    /// Another provider, or a key the bucket's policy does not name.
    Key,
    /// The object's encryption context lacks the bucket's.
    Context,
}

impl Unbound {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Context => "context",
        }
    }
}

impl BucketEncryption {
    /// May an object stored under `provider`/`key_id` with `context` be
    /// decrypted for this bucket? Its key must be the bucket's (configured
    /// or the provider's default), one clients may pick, or one listed as
    /// readable after rotation; its context must include the bucket's. An
    /// object moved here at the storage level from a bucket with other
    /// rules is refused, whatever it says about itself.
    pub fn check_stored(
        &self,
        default_key_id: &str,
        provider: &str,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<(), Unbound> {
        let own = self.key_id.as_deref().unwrap_or(default_key_id);
        let key_ok = if provider == self.provider {
            key_id == own
                || self.allowed_key_ids.iter().any(|k| k == key_id)
                || self.readable_key_ids.iter().any(|k| k == key_id)
        } else {
            self.readable_providers.iter().any(|p| p == provider)
        };
        if !key_ok {
            return Err(Unbound::Key);
        }
        if self.context.iter().any(|(k, v)| context.get(k) != Some(v)) {
            return Err(Unbound::Context);
        }
        // An object names the bucket it was written to (objects from before
        // that entry name none): another bucket's is refused unless listed.
        if let Some(written_to) = context.get(BUCKET_CONTEXT_KEY) {
            let own = self.write_context.get(BUCKET_CONTEXT_KEY);
            if own != Some(written_to) && !self.readable_buckets.iter().any(|b| b == written_to) {
                return Err(Unbound::Context);
            }
        }
        Ok(())
    }
}

/// The only server-side encryption an encrypting bucket answers.
pub const SSE_KMS: &str = "aws:kms";

/// Resolves a client-visible bucket's settings.
pub fn for_bucket(config: &Config, bucket: &str) -> Option<BucketEncryption> {
    let (provider, mandatory, allowed, readable, readable_providers, readable_buckets) =
        match config.policy_for(bucket) {
            Some(p) => (
                p.key_provider.clone(),
                p.mandatory,
                p.allowed_key_ids.clone(),
                p.readable_key_ids.clone(),
                p.readable_providers.clone(),
                p.readable_buckets.clone(),
            ),
            None => (
                config.encryption.default_provider.clone()?,
                false,
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            ),
        };
    let kind = &config.encryption.providers.get(&provider)?.kind;
    let bucket_cfg = config.buckets.get(bucket);
    let mut context = match kind {
        ProviderKind::AwsKms(k) => k.encryption_context.clone(),
        _ => BTreeMap::new(),
    };
    if let Some(b) = bucket_cfg {
        context.extend(b.kms_encryption_context.clone());
    }
    let key_id = match kind {
        ProviderKind::AwsKms(_) => bucket_cfg.and_then(|b| b.kms_key_id.clone()),
        _ => None,
    };
    let real = config
        .resolve_bucket(bucket)
        .map_or_else(|| bucket.to_string(), |r| r.real);
    let mut write_context = context.clone();
    write_context.insert(BUCKET_CONTEXT_KEY.to_string(), real);
    Some(BucketEncryption {
        provider,
        mandatory,
        key_id,
        allowed_key_ids: allowed,
        readable_key_ids: readable,
        readable_providers,
        readable_buckets,
        context,
        write_context,
    })
}

/// SSE-C and client key choice on a write to an encrypting bucket. Returns
/// the key a client picked, if it may.
pub fn check_write_headers(
    enc: &BucketEncryption,
    default_key_id: &str,
    headers: &HeaderMap,
) -> Result<Option<String>, S3Error> {
    if headers.contains_key("x-amz-server-side-encryption-customer-algorithm") {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "SSE-C is not accepted here: this gateway encrypts with its own keys",
        ));
    }
    // The gateway encrypts under its key provider's keys and answers
    // `aws:kms`; a request for anything else (SSE-S3's `AES256`, DSSE) is
    // refused rather than answered with what it did not ask for.
    if let Some(v) = headers.get("x-amz-server-side-encryption") {
        if v.as_bytes() != SSE_KMS.as_bytes() {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!(
                    "this bucket is encrypted by the gateway under {SSE_KMS} keys: send x-amz-server-side-encryption: {SSE_KMS}, or omit it"
                ),
            ));
        }
    }
    let Some(v) = headers.get("x-amz-server-side-encryption-aws-kms-key-id") else {
        return Ok(None);
    };
    let wanted = v
        .to_str()
        .map_err(|_| S3Error::new(S3ErrorCode::InvalidArgument, "the KMS key id is not ASCII"))?
        .trim();
    let configured = enc.key_id.as_deref().unwrap_or(default_key_id);
    if wanted == configured {
        return Ok(None);
    }
    if enc.allowed_key_ids.iter().any(|k| k == wanted) {
        return Ok(Some(wanted.to_string()));
    }
    Err(S3Error::new(
        S3ErrorCode::AccessDenied,
        format!("the key {wanted} may not be used for this bucket"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        sealgate_config::load_str(
            r#"
storage:
  s3:
    bucket_configs:
      prod-special:
        kms_key_id: alias/special
        kms_encryption_context: {bucket: prod-special}
      prod-alias:
        real_name: prod-real-7
encryption:
  key_provider: dev
  key_providers:
    old:
      type: local
      config: {master_key: b2xk}
    kms:
      type: aws-kms
      config: {default_key_id: alias/prod, encryption_context: {app: sg}}
    dev:
      type: local
      config: {master_key: dGVzdA==}
  policies:
    - bucket_pattern: "prod-*"
      key_provider: kms
      allowed_key_ids: ["alias/other"]
      readable_key_ids: ["alias/retired"]
      readable_providers: ["old"]
      readable_buckets: ["prod-replica-source"]
"#,
            &|_| None,
        )
        .unwrap()
        .config
    }

    #[test]
    fn policies_then_default() {
        let c = config();
        let p = for_bucket(&c, "prod-special").unwrap();
        assert_eq!(p.provider, "kms");
        assert!(p.mandatory);
        assert_eq!(p.key_id.as_deref(), Some("alias/special"));
        assert_eq!(p.context.get("app").map(String::as_str), Some("sg"));
        assert_eq!(
            p.context.get("bucket").map(String::as_str),
            Some("prod-special")
        );
        // New objects also name the real bucket, for the KMS's audit
        // trail and key policies; reads do not require it.
        let mut written = p.context.clone();
        written.insert(BUCKET_CONTEXT_KEY.into(), "prod-special".into());
        assert_eq!(p.write_context, written);
        let alias = for_bucket(&c, "prod-alias").unwrap();
        assert_eq!(
            alias
                .write_context
                .get(BUCKET_CONTEXT_KEY)
                .map(String::as_str),
            Some("prod-real-7")
        );
        assert!(!alias.context.contains_key(BUCKET_CONTEXT_KEY));
        let d = for_bucket(&c, "scratch").unwrap();
        assert_eq!(
            (d.provider.as_str(), d.mandatory, d.key_id),
            ("dev", false, None)
        );
        let none = sealgate_config::load_str("", &|_| None).unwrap().config;
        assert!(for_bucket(&none, "any").is_none());
    }

    #[test]
    fn stored_objects_must_belong_to_the_bucket() {
        let c = config();
        let p = for_bucket(&c, "prod-special").unwrap();
        let ctx = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let own = ctx(&[("app", "sg"), ("bucket", "prod-special")]);
        let check = |provider, key, context: &BTreeMap<String, String>| {
            p.check_stored("alias/prod", provider, key, context)
        };
        // The bucket's key, a key clients may pick, a rotated-away key.
        for key in ["alias/special", "alias/other", "alias/retired"] {
            assert_eq!(check("kms", key, &own), Ok(()), "{key}");
        }
        // More context than the bucket's is fine.
        let mut more = own.clone();
        more.insert("extra".into(), "x".into());
        assert_eq!(check("kms", "alias/special", &more), Ok(()));
        // The provider's default is not this bucket's key (it has its own).
        assert_eq!(check("kms", "alias/prod", &own), Err(Unbound::Key));
        assert_eq!(check("dev", "alias/special", &own), Err(Unbound::Key));
        // A provider kept readable during a move: any of its keys.
        assert_eq!(check("old", "local:old", &own), Ok(()));
        assert_eq!(check("kms", "alias/elsewhere", &own), Err(Unbound::Key));
        // Moved from a bucket with another context.
        let moved = ctx(&[("app", "sg"), ("bucket", "prod-other")]);
        assert_eq!(check("kms", "alias/special", &moved), Err(Unbound::Context));
        assert_eq!(
            check("kms", "alias/special", &ctx(&[("app", "sg")])),
            Err(Unbound::Context)
        );
        // A bucket without its own key reads the provider's default.
        let q = for_bucket(&c, "prod-a").unwrap();
        let app = ctx(&[("app", "sg")]);
        assert_eq!(
            q.check_stored("alias/prod", "kms", "alias/prod", &app),
            Ok(())
        );
        // An object names the bucket it was written to: its own is read,
        // another bucket's only when the policy lists it.
        let written = |b: &str| ctx(&[("app", "sg"), (BUCKET_CONTEXT_KEY, b)]);
        for (bucket, want) in [
            ("prod-a", Ok(())),
            ("prod-b", Err(Unbound::Context)),
            ("prod-replica-source", Ok(())),
        ] {
            assert_eq!(
                q.check_stored("alias/prod", "kms", "alias/prod", &written(bucket)),
                want,
                "{bucket}"
            );
        }
    }

    #[test]
    fn client_key_choice_and_sse_c() {
        let c = config();
        let p = for_bucket(&c, "prod-a").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(check_write_headers(&p, "alias/prod", &h), Ok(None));
        h.insert(
            "x-amz-server-side-encryption-aws-kms-key-id",
            "alias/prod".parse().unwrap(),
        );
        assert_eq!(check_write_headers(&p, "alias/prod", &h), Ok(None));
        h.insert(
            "x-amz-server-side-encryption-aws-kms-key-id",
            "alias/other".parse().unwrap(),
        );
        assert_eq!(
            check_write_headers(&p, "alias/prod", &h),
            Ok(Some("alias/other".into()))
        );
        h.insert(
            "x-amz-server-side-encryption-aws-kms-key-id",
            "alias/evil".parse().unwrap(),
        );
        assert_eq!(
            check_write_headers(&p, "alias/prod", &h).unwrap_err().code,
            S3ErrorCode::AccessDenied
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".parse().unwrap(),
        );
        assert_eq!(
            check_write_headers(&p, "alias/prod", &h).unwrap_err().code,
            S3ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn only_aws_kms_is_answered_on_encrypting_buckets() {
        let c = config();
        let p = for_bucket(&c, "prod-a").unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-amz-server-side-encryption", v.parse().unwrap());
            check_write_headers(&p, "alias/prod", &h).map_err(|e| e.code)
        };
        assert_eq!(with("aws:kms"), Ok(None));
        for refused in ["AES256", "aws:kms:dsse", "AWS:KMS", "", "aws:kms "] {
            assert_eq!(
                with(refused),
                Err(S3ErrorCode::InvalidArgument),
                "{refused:?}"
            );
        }
    }
}
