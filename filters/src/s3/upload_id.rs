//! The upload ids the gateway hands out for encrypted multipart uploads:
//! tokens that carry what any instance needs to encrypt a part, so the
//! fleet keeps no shared state. Client input: decoded defensively (bounded,
//! versioned, every field checked).

use base64::Engine;
use bytes::Bytes;

use super::multipart::ChecksumRequest;

/// The upload id handed to clients for an encrypted multipart upload: the
/// backend's id plus what any gateway instance needs to encrypt a part
/// (provider, key id, wrapped data key, and the object salt and commitment
/// that check the unwrapped key). The wrapped key opens only through the
/// key provider, so the token carries no secret; a client that swaps tokens
/// only makes its own object unreadable.
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
}

/// Prefix of upload ids the gateway issues.
const TOKEN_PREFIX: &str = "sgmp2.";
/// Prefix of the first version's tokens (no checksum field), still read so
/// uploads begun before an upgrade can finish.
const TOKEN_PREFIX_V1: &str = "sgmp1.";
/// Longest token accepted (query strings must stay reasonable).
const MAX_TOKEN_LEN: usize = 4096;

impl UploadToken {
    pub fn encode(&self) -> String {
        let mut raw = Vec::new();
        let checksum = match self.checksum {
            Some(c) => format!("{}/{}", c.algorithm.name(), c.type_name()),
            None => String::new(),
        };
        for field in [
            self.upload_id.as_bytes(),
            self.provider.as_bytes(),
            self.key_id.as_bytes(),
            &self.wrapped_dek,
            checksum.as_bytes(),
        ] {
            raw.extend_from_slice(&(field.len() as u32).to_be_bytes());
            raw.extend_from_slice(field);
        }
        raw.extend_from_slice(&self.salt);
        raw.extend_from_slice(&self.commitment);
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }

    /// `None` for an upload id the gateway did not issue.
    pub fn decode(text: &str) -> Option<Self> {
        let (body, v1) = match text.strip_prefix(TOKEN_PREFIX) {
            Some(b) => (b, false),
            None => (text.strip_prefix(TOKEN_PREFIX_V1)?, true),
        };
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
        let checksum = if v1 {
            None
        } else {
            let field = String::from_utf8(take()?).ok()?;
            match field.split_once('/') {
                None if field.is_empty() => None,
                None => return None,
                Some((alg, kind)) => {
                    Some(ChecksumRequest::from_headers(Some(alg), Some(kind)).ok()??)
                }
            }
        };
        if rest.len() != 64 {
            return None;
        }
        Some(Self {
            upload_id,
            provider,
            key_id,
            wrapped_dek,
            salt: rest[..32].try_into().ok()?,
            commitment: rest[32..].try_into().ok()?,
            checksum,
        })
    }
}

/// Replaces `<UploadId>…</UploadId>` in a CreateMultipartUpload response
/// (small, buffered up to a bound) with the gateway's token.
pub struct UploadIdRewrite {
    buf: Vec<u8>,
    token: UploadToken,
}

/// Largest CreateMultipartUpload response buffered.
const MAX_CREATE_RESPONSE: usize = 64 * 1024;

impl UploadIdRewrite {
    pub fn new(token: UploadToken) -> Self {
        Self {
            buf: Vec::new(),
            token,
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
        Some(Bytes::from(format!(
            "{}<UploadId>{}</UploadId>{}",
            &text[..a],
            token.encode(),
            &text[b + "</UploadId>".len()..]
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::checksum::ChecksumAlgorithm;

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
        }
    }

    #[test]
    fn tokens_round_trip_and_first_version_tokens_still_decode() {
        let t = token();
        assert_eq!(UploadToken::decode(&t.encode()), Some(t.clone()));
        let plain = UploadToken {
            checksum: None,
            ..t.clone()
        };
        assert_eq!(UploadToken::decode(&plain.encode()), Some(plain.clone()));
        // A first-version token: the same fields without the checksum one.
        let mut raw = Vec::new();
        for f in [&b"backend-id_1"[..], b"local", b"local:key", &[7; 60][..]] {
            raw.extend_from_slice(&(f.len() as u32).to_be_bytes());
            raw.extend_from_slice(f);
        }
        raw.extend_from_slice(&[1; 32]);
        raw.extend_from_slice(&[2; 32]);
        let v1 = format!(
            "sgmp1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        assert_eq!(UploadToken::decode(&v1), Some(plain));
    }

    #[test]
    fn foreign_or_damaged_ids_are_not_tokens() {
        let good = token().encode();
        let long = format!("sgmp2.{}", "A".repeat(MAX_TOKEN_LEN));
        for bad in [
            "2~abcdef",
            "sgmp2.",
            "sgmp2.!!!",
            &good[..good.len() - 3],
            &format!("{good}AA"),
            &long,
        ] {
            assert_eq!(UploadToken::decode(bad), None, "{bad}");
        }
        // A length field pointing past the end.
        let raw = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let t = format!(
            "sgmp2.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        assert_eq!(UploadToken::decode(&t), None);
    }

    #[test]
    fn create_responses_get_the_token_in_pieces() {
        let mut r = UploadIdRewrite::new(token());
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
        let mut big = UploadIdRewrite::new(token());
        assert_eq!(big.push(&vec![b' '; MAX_CREATE_RESPONSE + 1], false), None);
    }
}
