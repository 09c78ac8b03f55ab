//! Envelope metadata: what is stored beside each encrypted object as S3
//! user metadata (`x-amz-meta-sealgate-*`), and its parsing. Nothing here is
//! secret: the data key is stored only wrapped by the key provider, and no
//! plaintext digest is stored.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::keys::{context_hash_sorted, COMMITMENT_LEN, SALT_LEN};

/// Header prefix of every envelope field.
pub const META_PREFIX: &str = "x-amz-meta-sealgate-";

/// Longest envelope header name (prefix and field) `from_headers` builds.
const MAX_META_NAME_LEN: usize = 48;

/// The envelope version's header: [`META_PREFIX`] and `v`.
pub const VERSION_HEADER: &str = "x-amz-meta-sealgate-v";
/// [`crate::format::FRAME_SIZE`] as the `frame` field writes it.
const FRAME_SIZE_TEXT: &str = "65536";
/// Format version written by this build.
pub const VERSION: &str = "1";
/// Algorithm suite name of version 1.
pub const ALGORITHM: &str = "AES256GCM-HKDF-SHA256-COMMIT";
/// Largest wrapped data key accepted (KMS blobs are ~200 bytes; RSA-4096 wraps are 512).
pub const MAX_WRAPPED_DEK_LEN: usize = 1024;
/// Largest encoded context accepted, keeping all metadata well under S3's 2 KB.
pub const MAX_CONTEXT_LEN: usize = 768;

/// Envelope metadata could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("envelope field {0} is missing")]
    Missing(&'static str),
    #[error("envelope field {0} is malformed")]
    Malformed(&'static str),
    #[error("envelope version {0} is not supported by this build")]
    Unsupported(String),
}

/// The envelope of one object. `Default` is an empty placeholder (what a
/// reader leaves behind when it takes an envelope out of a larger value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeMeta {
    /// Configured provider name that wrapped the data key.
    pub provider: String,
    /// Key id (ARN, vault key URL, ...) reported as the SSE key id.
    pub key_id: String,
    pub wrapped_dek: Vec<u8>,
    /// Encryption context the data key is bound to.
    pub context: BTreeMap<String, String>,
    pub salt: [u8; SALT_LEN],
    pub commitment: [u8; COMMITMENT_LEN],
    /// Written by a multipart upload: the body is a sequence of parts, each
    /// a part header and its own frame stream (see `multipart`).
    pub multipart: bool,
}

/// Every field an envelope may carry (after [`META_PREFIX`]).
const FIELD_NAMES: [&str; 10] = [
    "v", "alg", "frame", "dek", "provider", "key-id", "ctx", "salt", "commit", "layout",
];

/// Value of the `layout` field for multipart objects.
pub const LAYOUT_MULTIPART: &str = "multipart";

fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn encode_context(ctx: &BTreeMap<String, String>) -> String {
    let mut raw = Vec::new();
    for (k, v) in ctx {
        raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
        raw.extend_from_slice(k.as_bytes());
        raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
        raw.extend_from_slice(v.as_bytes());
    }
    B64.encode(raw)
}

fn decode_context(text: &str) -> Option<BTreeMap<String, String>> {
    let raw = B64.decode(text).ok()?;
    let mut rest = &raw[..];
    let mut out = BTreeMap::new();
    let take = |rest: &mut &[u8]| -> Option<String> {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = String::from_utf8(rest.get(4..4 + len)?.to_vec()).ok()?;
        *rest = &rest[4 + len..];
        Some(s)
    };
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        // One value per key: an encoder never repeats one.
        if out.insert(k, v).is_some() {
            return None;
        }
    }
    Some(out)
}

fn fixed<const N: usize>(text: &str, field: &'static str) -> Result<[u8; N], MetaError> {
    B64.decode(text)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(MetaError::Malformed(field))
}

impl EnvelopeMeta {
    /// Hash of the encryption context, bound into the object key.
    pub fn context_hash(&self) -> [u8; 32] {
        // A BTreeMap iterates in order already.
        context_hash_sorted(self.context.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The metadata headers (lowercase names) to store with the object.
    pub fn to_headers(&self) -> Result<Vec<(String, String)>, MetaError> {
        Ok(self
            .header_fields()?
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.into_owned()))
            .collect())
    }

    /// [`Self::to_headers`] with names that are constants and the constant
    /// values borrowed: what the gateway inserts into every encrypted PUT,
    /// without building a name (or a fixed value) each time.
    pub fn header_fields(&self) -> Result<Vec<(&'static str, Cow<'static, str>)>, MetaError> {
        if !header_safe(&self.provider) {
            return Err(MetaError::Malformed("provider"));
        }
        if !header_safe(&self.key_id) {
            return Err(MetaError::Malformed("key-id"));
        }
        let ctx = encode_context(&self.context);
        if ctx.len() > MAX_CONTEXT_LEN {
            return Err(MetaError::Malformed("ctx"));
        }
        if self.wrapped_dek.len() > MAX_WRAPPED_DEK_LEN {
            return Err(MetaError::Malformed("dek"));
        }
        let mut out = Vec::with_capacity(10);
        out.extend([
            (VERSION_HEADER, Cow::Borrowed(VERSION)),
            ("x-amz-meta-sealgate-alg", Cow::Borrowed(ALGORITHM)),
            ("x-amz-meta-sealgate-frame", Cow::Borrowed(FRAME_SIZE_TEXT)),
            ("x-amz-meta-sealgate-provider", self.provider.clone().into()),
            ("x-amz-meta-sealgate-key-id", self.key_id.clone().into()),
            (
                "x-amz-meta-sealgate-dek",
                B64.encode(&self.wrapped_dek).into(),
            ),
            ("x-amz-meta-sealgate-ctx", ctx.into()),
            ("x-amz-meta-sealgate-salt", B64.encode(self.salt).into()),
            (
                "x-amz-meta-sealgate-commit",
                B64.encode(self.commitment).into(),
            ),
        ]);
        if self.multipart {
            out.push((
                "x-amz-meta-sealgate-layout",
                Cow::Borrowed(LAYOUT_MULTIPART),
            ));
        }
        Ok(out)
    }

    /// [`Self::from_headers`] from the headers in order, `(lowercase name,
    /// value when it is text)`, in one pass: the ten fields are picked out
    /// by name as they go by instead of being looked up one by one (ten
    /// hashed lookups per encrypted read). The first value of a name counts,
    /// as a lookup would find it.
    pub fn from_header_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Option<Self>, MetaError> {
        let mut slots: [Option<Option<&'a str>>; FIELD_NAMES.len()] = [None; FIELD_NAMES.len()];
        for (name, value) in pairs {
            let Some(field) = name.strip_prefix(META_PREFIX) else {
                continue;
            };
            if let Some(i) = FIELD_NAMES.iter().position(|f| *f == field) {
                slots[i].get_or_insert(value);
            }
        }
        Self::from_headers(|name| {
            let field = name.strip_prefix(META_PREFIX)?;
            let i = FIELD_NAMES.iter().position(|f| *f == field)?;
            slots[i].flatten()
        })
    }

    /// Reads the envelope from response headers (`get` takes a lowercase
    /// name). `Ok(None)` when the object carries no envelope (plaintext).
    pub fn from_headers<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<Self>, MetaError> {
        // Each name is assembled on the stack: every read of an encrypted
        // object asks for about ten of them.
        let field = |name: &'static str| {
            let mut buf = [0u8; MAX_META_NAME_LEN];
            let len = META_PREFIX.len() + name.len();
            buf[..META_PREFIX.len()].copy_from_slice(META_PREFIX.as_bytes());
            buf[META_PREFIX.len()..len].copy_from_slice(name.as_bytes());
            get(std::str::from_utf8(&buf[..len]).expect("field names are ASCII"))
        };
        // Every response is asked this first, most answer no: one constant
        // name, no formatting.
        let Some(version) = get(VERSION_HEADER) else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(MetaError::Unsupported(version.chars().take(16).collect()));
        }
        let need = |name: &'static str| field(name).ok_or(MetaError::Missing(name));
        if need("alg")? != ALGORITHM {
            return Err(MetaError::Unsupported(format!("{VERSION}/alg")));
        }
        if need("frame")? != FRAME_SIZE_TEXT {
            return Err(MetaError::Unsupported(format!("{VERSION}/frame")));
        }
        let wrapped_dek = B64
            .decode(need("dek")?)
            .map_err(|_| MetaError::Malformed("dek"))?;
        if wrapped_dek.is_empty() || wrapped_dek.len() > MAX_WRAPPED_DEK_LEN {
            return Err(MetaError::Malformed("dek"));
        }
        // What the encoder refuses to write, the decoder refuses to read.
        let safe = |name: &'static str| {
            need(name).and_then(|v| {
                if header_safe(v) {
                    Ok(v.to_string())
                } else {
                    Err(MetaError::Malformed(name))
                }
            })
        };
        let ctx = need("ctx")?;
        if ctx.len() > MAX_CONTEXT_LEN {
            return Err(MetaError::Malformed("ctx"));
        }
        Ok(Some(Self {
            provider: safe("provider")?,
            key_id: safe("key-id")?,
            wrapped_dek,
            context: decode_context(ctx).ok_or(MetaError::Malformed("ctx"))?,
            salt: fixed(need("salt")?, "salt")?,
            commitment: fixed(need("commit")?, "commit")?,
            multipart: match field("layout") {
                None => false,
                Some(LAYOUT_MULTIPART) => true,
                Some(_) => return Err(MetaError::Malformed("layout")),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_version_header_is_a_field_like_the_others() {
        assert_eq!(VERSION_HEADER, format!("{META_PREFIX}v"));
        assert_eq!(FRAME_SIZE_TEXT, crate::format::FRAME_SIZE.to_string());
        for (name, _) in sample().header_fields().unwrap() {
            assert!(name.starts_with(META_PREFIX) && name.len() <= MAX_META_NAME_LEN);
        }
    }

    fn sample() -> EnvelopeMeta {
        EnvelopeMeta {
            provider: "prod-kms".into(),
            key_id: "arn:aws:kms:us-east-1:123456789012:key/abc".into(),
            wrapped_dek: vec![7; 184],
            context: [
                ("app".to_string(), "s3proxy".to_string()),
                ("env".into(), "a=b&c".into()),
            ]
            .into(),
            salt: [1; 32],
            commitment: [2; 32],
            multipart: true,
        }
    }

    #[test]
    fn round_trips_and_stays_small() {
        let m = sample();
        let headers: HashMap<String, String> = m.to_headers().unwrap().into_iter().collect();
        let total: usize = headers
            .iter()
            .map(|(k, v)| k.len() - "x-amz-meta-".len() + v.len())
            .sum();
        assert!(total < 1024, "metadata is {total} bytes");
        let back = EnvelopeMeta::from_headers(|k| headers.get(k).map(String::as_str))
            .unwrap()
            .unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn one_pass_reads_what_lookups_read_and_takes_the_first_value() {
        let m = sample();
        let mut pairs: Vec<(String, String)> = m.to_headers().unwrap();
        pairs.insert(0, ("content-length".into(), "5".into()));
        pairs.push((format!("{META_PREFIX}salt"), "a later value".into()));
        pairs.push((format!("{META_PREFIX}other"), "ignored".into()));
        let read = EnvelopeMeta::from_header_pairs(
            pairs.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
        );
        assert_eq!(read, Ok(Some(m)));
        // A value that is not text is as good as absent.
        let read = EnvelopeMeta::from_header_pairs(pairs.iter().map(|(k, v)| {
            let text = (!k.ends_with("-dek")).then_some(v.as_str());
            (k.as_str(), text)
        }));
        assert_eq!(read, Err(MetaError::Missing("dek")));
        // The first value counts even when it is not text, as a lookup's would.
        let mut twice = pairs.clone();
        twice.push((format!("{META_PREFIX}dek"), "QUFBQQ==".into()));
        let read = EnvelopeMeta::from_header_pairs(twice.iter().enumerate().map(|(i, (k, v))| {
            let text = (!k.ends_with("-dek") || i + 1 == twice.len()).then_some(v.as_str());
            (k.as_str(), text)
        }));
        assert_eq!(read, Err(MetaError::Missing("dek")));
        assert_eq!(
            EnvelopeMeta::from_header_pairs([("content-length", Some("5"))]),
            Ok(None)
        );
    }

    #[test]
    fn absent_means_plaintext_and_damage_is_reported() {
        assert_eq!(EnvelopeMeta::from_headers(|_| None), Ok(None));
        let mut headers: HashMap<String, String> =
            sample().to_headers().unwrap().into_iter().collect();
        headers.insert(format!("{META_PREFIX}salt"), "short".into());
        assert_eq!(
            EnvelopeMeta::from_headers(|k| headers.get(k).map(String::as_str)),
            Err(MetaError::Malformed("salt"))
        );
        headers.insert(format!("{META_PREFIX}v"), "9".into());
        assert!(matches!(
            EnvelopeMeta::from_headers(|k| headers.get(k).map(String::as_str)),
            Err(MetaError::Unsupported(_))
        ));
        headers.insert(format!("{META_PREFIX}v"), "1".into());
        headers.remove(&format!("{META_PREFIX}dek"));
        assert_eq!(
            EnvelopeMeta::from_headers(|k| headers.get(k).map(String::as_str)),
            Err(MetaError::Missing("dek"))
        );
    }

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        const FIELDS: [&str; 10] = FIELD_NAMES;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever a backend (or someone with write access to it) puts
            /// in the metadata: no panic, and anything accepted round-trips
            /// to the same headers.
            #[test]
            fn any_metadata_decodes_or_is_refused(
                edits in proptest::collection::vec((0usize..10, ".{0,80}"), 0..6),
                drop in proptest::option::of(0usize..10),
            ) {
                let mut headers: HashMap<String, String> =
                    sample().to_headers().unwrap().into_iter().collect();
                for (field, value) in &edits {
                    headers.insert(format!("{META_PREFIX}{}", FIELDS[*field]), value.clone());
                }
                if let Some(d) = drop {
                    headers.remove(&format!("{META_PREFIX}{}", FIELDS[d]));
                }
                let by_lookup = EnvelopeMeta::from_headers(|k| headers.get(k).map(String::as_str));
                let in_one_pass = EnvelopeMeta::from_header_pairs(
                    headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
                );
                prop_assert_eq!(&by_lookup, &in_one_pass);
                if let Ok(Some(m)) = by_lookup
                {
                    let again: HashMap<String, String> =
                        m.to_headers().unwrap().into_iter().collect();
                    let back = EnvelopeMeta::from_headers(|k| again.get(k).map(String::as_str));
                    prop_assert_eq!(back, Ok(Some(m)));
                }
            }
        }
    }
}
