//! The upload ids the gateway hands out for encrypted multipart uploads:
//! tokens that carry what any instance needs to encrypt a part, so the
//! fleet keeps no shared state. Client input: decoded defensively (bounded,
//! versioned, every field checked) and authenticated: a MAC binds every
//! field to the bucket and key the upload belongs to, under a key derived
//! from the upload's data key, which only the key provider can unwrap. Any
//! instance can check a token; no client can make or move one.

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::s3::body::checksum::ChecksumAlgorithm;
use crate::s3::multipart::ChecksumRequest;

/// The upload id handed to clients for an encrypted multipart upload: the
/// backend's id plus what any gateway instance needs to encrypt a part
/// (provider, key id, wrapped data key, and the object salt and commitment
/// that check the unwrapped key), sealed by a MAC. The wrapped key opens
/// only through the key provider, so the token carries no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadToken {
    pub upload_id: String,
    pub provider: String,
    pub key_id: String,
    pub wrapped_dek: Vec<u8>,
    pub salt: [u8; 32],
    pub commitment: [u8; 32],
    /// The checksum the client asked for at Create (answered at Complete).
    pub checksum: Option<ChecksumRequest>,
    /// What the upload's parts go to the backend with, as decided at Create
    /// (the upload was created with that algorithm, so every part must
    /// match it, whatever the gateway finds out about the backend later).
    pub stored: StoredMark,
    /// HMAC-SHA256 over every field and the upload's place ([`Self::seal`]).
    pub mac: [u8; 32],
}

/// The stored checksum an upload was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoredMark {
    /// A token from before the mark (its parts follow the current finding).
    #[default]
    Unrecorded,
    /// A trailing CRC32C.
    Crc32c,
    /// Plain bodies.
    None,
}

impl StoredMark {
    /// The mark for what a Create decided.
    pub fn of(stored: Option<ChecksumAlgorithm>) -> Self {
        match stored {
            Some(_) => Self::Crc32c,
            None => Self::None,
        }
    }

    /// What the upload's parts go with: the mark, or `current` for a token
    /// without one.
    pub fn or(self, current: Option<ChecksumAlgorithm>) -> Option<ChecksumAlgorithm> {
        match self {
            Self::Unrecorded => current,
            Self::Crc32c => Some(ChecksumAlgorithm::Crc32c),
            Self::None => None,
        }
    }
}

/// Prefix of upload ids the gateway issues.
const TOKEN_PREFIX: &str = "sgmp3.";
/// What every upload id the gateway ever issued starts with. Earlier
/// versions (`sgmp1.`, `sgmp2.`) carried no MAC and are refused.
const GATEWAY_ID_PREFIX: &str = "sgmp";
/// Longest token accepted (query strings must stay reasonable).
const MAX_TOKEN_LEN: usize = 4096;
/// HKDF info of the token MAC key (distinct from every envelope label).
const MAC_KEY_INFO: &[u8] = b"sealgate upload-id token mac v3";

/// The key a token's MAC is made with: derived from the upload's data key
/// and salt, so only an instance that had the key provider unwrap the data
/// key can make or check one (zeroized on drop).
#[derive(Clone)]
pub struct TokenKey(Zeroizing<[u8; 32]>);

impl TokenKey {
    pub fn derive(dek: &[u8], salt: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(Some(salt), dek)
            .expand(MAC_KEY_INFO, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Self(key)
    }
}

/// Length-prefixed fields, so no two field lists encode alike.
fn put_fields(out: &mut Vec<u8>, fields: &[&[u8]]) {
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
}

impl UploadToken {
    /// True when `text` has the form of an upload id the gateway issues
    /// (valid or not): such an id is never forwarded as the backend's own.
    pub fn is_gateway_id(text: &str) -> bool {
        text.starts_with(GATEWAY_ID_PREFIX)
    }

    fn checksum_field(&self) -> String {
        let mut field = match self.checksum {
            Some(c) => format!("{}/{}", c.algorithm.name(), c.type_name()),
            None => String::new(),
        };
        match self.stored {
            StoredMark::Unrecorded => {}
            StoredMark::Crc32c => field.push_str(";crc32c"),
            StoredMark::None => field.push_str(";none"),
        }
        field
    }

    /// The MAC binding every field to the upstream `bucket` and object `key`.
    fn compute_mac(&self, key: &TokenKey, bucket: &str, object: &str) -> [u8; 32] {
        let mut msg = Vec::new();
        put_fields(
            &mut msg,
            &[
                TOKEN_PREFIX.as_bytes(),
                bucket.as_bytes(),
                object.as_bytes(),
                self.upload_id.as_bytes(),
                self.provider.as_bytes(),
                self.key_id.as_bytes(),
                &self.wrapped_dek,
                self.checksum_field().as_bytes(),
                &self.salt,
                &self.commitment,
            ],
        );
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.0.as_ref())
            .expect("HMAC takes any key length");
        mac.update(&msg);
        mac.finalize().into_bytes().into()
    }

    /// Sets the MAC for the upload's place (the upstream bucket and key).
    pub fn seal(&mut self, key: &TokenKey, bucket: &str, object: &str) {
        self.mac = self.compute_mac(key, bucket, object);
    }

    /// True when the MAC is this token's for this place (constant time).
    pub fn verify(&self, key: &TokenKey, bucket: &str, object: &str) -> bool {
        self.compute_mac(key, bucket, object)
            .ct_eq(&self.mac)
            .into()
    }

    pub fn encode(&self) -> String {
        let mut raw = Vec::new();
        put_fields(
            &mut raw,
            &[
                self.upload_id.as_bytes(),
                self.provider.as_bytes(),
                self.key_id.as_bytes(),
                &self.wrapped_dek,
                self.checksum_field().as_bytes(),
            ],
        );
        raw.extend_from_slice(&self.salt);
        raw.extend_from_slice(&self.commitment);
        raw.extend_from_slice(&self.mac);
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }

    /// `None` for an upload id that is not a well-formed current token
    /// (the MAC is checked separately, once the data key is unwrapped).
    pub fn decode(text: &str) -> Option<Self> {
        let body = text.strip_prefix(TOKEN_PREFIX)?;
        if text.len() > MAX_TOKEN_LEN {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?;
        let mut rest = &raw[..];
        let mut take = || -> Option<Vec<u8>> {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let v = rest.get(4..4 + len)?.to_vec();
            rest = &rest[4 + len..];
            Some(v)
        };
        let upload_id = String::from_utf8(take()?).ok()?;
        let provider = String::from_utf8(take()?).ok()?;
        let key_id = String::from_utf8(take()?).ok()?;
        let wrapped_dek = take()?;
        let whole = String::from_utf8(take()?).ok()?;
        let (field, stored) = match whole.split_once(';') {
            None => (whole.as_str(), StoredMark::Unrecorded),
            Some((f, "crc32c")) => (f, StoredMark::Crc32c),
            Some((f, "none")) => (f, StoredMark::None),
            Some(_) => return None,
        };
        let checksum = match field.split_once('/') {
            None if field.is_empty() => None,
            None => return None,
            Some((alg, kind)) => Some(ChecksumRequest::from_headers(Some(alg), Some(kind)).ok()??),
        };
        if rest.len() != 96 {
            return None;
        }
        Some(Self {
            upload_id,
            provider,
            key_id,
            wrapped_dek,
            salt: rest[..32].try_into().ok()?,
            commitment: rest[32..64].try_into().ok()?,
            checksum,
            stored,
            mac: rest[64..].try_into().ok()?,
        })
    }
}

/// Replaces `<UploadId>…</UploadId>` in a CreateMultipartUpload response
/// (small, buffered up to a bound) with the gateway's token, sealed for
/// the upload's place once the backend's id is known.
pub struct UploadIdRewrite {
    buf: Vec<u8>,
    /// The backend's id and the token that replaced it, once written.
    issued: Option<(String, String)>,
    token: UploadToken,
    key: TokenKey,
    bucket: String,
    object: String,
}

/// Largest CreateMultipartUpload response buffered.
const MAX_CREATE_RESPONSE: usize = 64 * 1024;

impl UploadIdRewrite {
    /// `bucket` and `object` are the upstream bucket and the object key.
    pub fn new(token: UploadToken, key: TokenKey, bucket: String, object: String) -> Self {
        Self {
            buf: Vec::new(),
            issued: None,
            token,
            key,
            bucket,
            object,
        }
    }

    /// Takes the next piece of the response; `None` when it outgrows the bound.
    pub fn push(&mut self, input: &[u8], end: bool) -> Option<Bytes> {
        if self.buf.len() + input.len() > MAX_CREATE_RESPONSE {
            return None;
        }
        self.buf.extend_from_slice(input);
        if !end {
            return Some(Bytes::new());
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let (Some(a), Some(b)) = (text.find("<UploadId>"), text.find("</UploadId>")) else {
            return Some(Bytes::from(text));
        };
        let raw = text.get(a + "<UploadId>".len()..b)?;
        let mut token = self.token.clone();
        token.upload_id = quick_xml::escape::unescape(raw).ok()?.into_owned();
        token.seal(&self.key, &self.bucket, &self.object);
        let encoded = token.encode();
        let body = format!(
            "{}<UploadId>{}</UploadId>{}",
            &text[..a],
            encoded,
            &text[b + "</UploadId>".len()..]
        );
        self.issued = Some((token.upload_id, encoded));
        Some(Bytes::from(body))
    }

    /// The backend's upload id and the token the client was given for it,
    /// once the response was rewritten.
    pub fn issued(&self) -> Option<(&str, &str)> {
        self.issued
            .as_ref()
            .map(|(id, t)| (id.as_str(), t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::body::checksum::ChecksumAlgorithm;

    fn token() -> UploadToken {
        UploadToken {
            upload_id: "backend-id_1".into(),
            provider: "local".into(),
            key_id: "local:key".into(),
            wrapped_dek: vec![7; 60],
            salt: [1; 32],
            commitment: [2; 32],
            checksum: Some(ChecksumRequest {
                algorithm: ChecksumAlgorithm::Crc64Nvme,
                full_object: true,
            }),
            stored: StoredMark::None,
            mac: [3; 32],
        }
    }

    fn key() -> TokenKey {
        TokenKey::derive(&[9; 32], &[1; 32])
    }

    #[test]
    fn tokens_round_trip() {
        let t = token();
        assert_eq!(UploadToken::decode(&t.encode()), Some(t.clone()));
        for stored in [StoredMark::Unrecorded, StoredMark::Crc32c, StoredMark::None] {
            let plain = UploadToken {
                checksum: None,
                stored,
                ..t.clone()
            };
            assert_eq!(UploadToken::decode(&plain.encode()), Some(plain));
        }
    }

    #[test]
    fn the_mac_binds_every_field_and_the_place() {
        let mut t = token();
        t.seal(&key(), "bucket", "dir/object");
        assert!(t.verify(&key(), "bucket", "dir/object"));
        let decoded = UploadToken::decode(&t.encode()).unwrap();
        assert!(decoded.verify(&key(), "bucket", "dir/object"));
        // Moved to another bucket or key, or checked under another data key.
        assert!(!t.verify(&key(), "other", "dir/object"));
        assert!(!t.verify(&key(), "bucket", "dir/object2"));
        assert!(
            !t.verify(&key(), "bucketd", "ir/object"),
            "fields are delimited"
        );
        assert!(!t.verify(
            &TokenKey::derive(&[8; 32], &[1; 32]),
            "bucket",
            "dir/object"
        ));
        assert!(!t.verify(
            &TokenKey::derive(&[9; 32], &[2; 32]),
            "bucket",
            "dir/object"
        ));
        // Any field changed.
        let edits: [fn(&mut UploadToken); 10] = [
            |t| t.upload_id.push('x'),
            |t| t.provider = "other".into(),
            |t| t.key_id = "local:other".into(),
            |t| t.wrapped_dek[0] ^= 1,
            |t| t.salt[31] ^= 1,
            |t| t.commitment[0] ^= 1,
            |t| t.checksum = None,
            |t| t.stored = StoredMark::Crc32c,
            |t| t.stored = StoredMark::Unrecorded,
            |t| t.mac[5] ^= 1,
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut bad = t.clone();
            edit(&mut bad);
            assert!(!bad.verify(&key(), "bucket", "dir/object"), "edit {i}");
        }
    }

    #[test]
    fn earlier_tokens_without_a_mac_are_refused() {
        // A second-version token: the same fields without the MAC.
        let mut raw = Vec::new();
        put_fields(
            &mut raw,
            &[b"backend-id_1", b"local", b"local:key", &[7; 60], b""],
        );
        raw.extend_from_slice(&[1; 32]);
        raw.extend_from_slice(&[2; 32]);
        for prefix in ["sgmp1.", "sgmp2."] {
            let old = format!(
                "{prefix}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw)
            );
            assert_eq!(UploadToken::decode(&old), None);
            assert!(UploadToken::is_gateway_id(&old));
        }
        assert!(!UploadToken::is_gateway_id("2~backend-upload-id"));
    }

    #[test]
    fn foreign_or_damaged_ids_are_not_tokens() {
        let good = token().encode();
        let long = format!("sgmp3.{}", "A".repeat(MAX_TOKEN_LEN));
        for bad in [
            "2~abcdef",
            "sgmp3.",
            "sgmp3.!!!",
            &good[..good.len() - 3],
            &format!("{good}AA"),
            &long,
        ] {
            assert_eq!(UploadToken::decode(bad), None, "{bad}");
        }
        // A length field pointing past the end.
        let raw = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let t = format!(
            "sgmp3.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        assert_eq!(UploadToken::decode(&t), None);
    }

    #[test]
    fn create_responses_get_a_sealed_token_in_pieces() {
        let rewrite = || UploadIdRewrite::new(token(), key(), "bkt".into(), "k".into());
        let mut r = rewrite();
        let xml = "<InitiateMultipartUploadResult><Bucket>b</Bucket><UploadId>a&amp;b</UploadId></InitiateMultipartUploadResult>";
        let (x, y) = xml.split_at(40);
        assert_eq!(r.push(x.as_bytes(), false), Some(Bytes::new()));
        let out = String::from_utf8(r.push(y.as_bytes(), true).unwrap().to_vec()).unwrap();
        let id = out
            .split("<UploadId>")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        let t = UploadToken::decode(id).unwrap();
        assert_eq!(t.upload_id, "a&b", "the backend's id, unescaped");
        assert!(t.verify(&key(), "bkt", "k"), "sealed with the backend's id");
        let mut big = rewrite();
        assert_eq!(big.push(&vec![b' '; MAX_CREATE_RESPONSE + 1], false), None);
    }
}
