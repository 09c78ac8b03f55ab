//! The plan: what the gateway does with one request, decided once in
//! `request_filter` from the operation, the bucket's encryption settings
//! and the request's headers, before any I/O. The gateway's stages carry
//! it out (key work, probes, body transforms); nothing here touches a
//! socket, so every branch is tested below without a server.

use http::HeaderMap;
use sealgate_envelope::format::{ByteRange, MAX_PLAINTEXT_LEN};

use crate::policy::{self, BucketEncryption};
use crate::s3::auth::sigv4::{PayloadHash, Verified};
use crate::s3::body::checksum::ChecksumAlgorithm;
use crate::s3::multipart::{ChecksumRequest, MAX_PARTS};
use crate::s3::{Operation, S3Error, S3ErrorCode};

/// How an upload body arrives.
#[derive(Debug)]
pub enum BodyEncoding {
    Plain,
    /// aws-chunked; signed variants carry the client's verified signature.
    Chunked(Option<Verified>),
}

/// An upload body as the request describes it: its plaintext length and
/// the integrity checks it asks for.
#[derive(Debug)]
pub struct UploadBody {
    pub plaintext_len: u64,
    pub encoding: BodyEncoding,
    pub trailer_algorithm: Option<ChecksumAlgorithm>,
    pub payload_sha256: Option<[u8; 32]>,
}

impl UploadBody {
    /// A body of `len` plain bytes with no checks of its own: one the
    /// gateway reads itself (a copy's source, a form's file, an operator
    /// command's object or file).
    pub fn plain(len: u64) -> Self {
        Self {
            plaintext_len: len,
            encoding: BodyEncoding::Plain,
            trailer_algorithm: None,
            payload_sha256: None,
        }
    }

    /// Reads the length, encoding and checks of an upload from its headers
    /// and the verified signature.
    pub fn from_request(headers: &HeaderMap, verified: &Verified) -> Result<Self, S3Error> {
        let streaming = verified.payload.is_streaming();
        let signed_chunks = matches!(
            verified.payload,
            PayloadHash::StreamingSigned | PayloadHash::StreamingSignedTrailer
        );
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let length_header = if streaming {
            "x-amz-decoded-content-length"
        } else {
            "content-length"
        };
        let plaintext_len: u64 = header(length_header)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::MissingContentLength,
                    format!("an encrypted upload needs {length_header}"),
                )
            })?;
        if plaintext_len > MAX_PLAINTEXT_LEN {
            return Err(S3Error::new(
                S3ErrorCode::EntityTooLarge,
                "the object is larger than S3's 5 TiB limit",
            ));
        }
        let trailer_algorithm = match header("x-amz-trailer") {
            None => None,
            Some(t) => Some(ChecksumAlgorithm::from_header(t.trim()).ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    "x-amz-trailer names no known checksum",
                )
            })?),
        };
        let payload_sha256 = match &verified.payload {
            PayloadHash::Sha256(h) => Some(*h),
            _ => None,
        };
        let encoding = if streaming {
            BodyEncoding::Chunked(signed_chunks.then(|| verified.clone()))
        } else {
            BodyEncoding::Plain
        };
        Ok(Self {
            plaintext_len,
            encoding,
            trailer_algorithm,
            payload_sha256,
        })
    }
}

/// What a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    pub range: Option<ByteRange>,
    /// `?partNumber=N`: a read of one part.
    pub part_number: Option<u32>,
    pub head: bool,
    /// Plaintext objects are refused (the bucket's policy is mandatory).
    pub mandatory: bool,
}

/// The plan for one request.
#[derive(Debug)]
pub enum Plan {
    /// Forwarded as it is (re-signed).
    PassThrough,
    /// A body with chunk signatures to a pass-through bucket: decoded and
    /// verified by the gateway (the signatures chain from the client's
    /// key), forwarded plain.
    DecodeOnly(UploadBody),
    /// PutObject to an encrypting bucket, with the key a client or the
    /// configuration chose (else the provider's default).
    Put {
        body: UploadBody,
        key_id: Option<String>,
    },
    CreateMultipart {
        key_id: Option<String>,
        checksum: Option<ChecksumRequest>,
    },
    /// UploadPart of an upload the gateway began (its token is in the route).
    Part { body: UploadBody, number: u32 },
    /// CompleteMultipartUpload of an upload the gateway began.
    Complete,
    /// ListParts of an upload the gateway began: plaintext sizes.
    ListParts,
    /// GetObject / HeadObject: decrypted when the object carries an envelope.
    Read(ReadRequest),
    /// Object listings of an encrypting bucket: plaintext sizes.
    Listing,
    /// ListMultipartUploads of an encrypting bucket: the gateway's tokens.
    ListUploads,
    /// GetObjectAttributes in an encrypting bucket: the plaintext size,
    /// nothing that describes stored bytes.
    Attributes { mandatory: bool },
    /// ListBuckets: only the buckets the client may use are shown.
    ListBuckets,
    /// CopyObject into an encrypting bucket: kept as stored when the
    /// source's envelope is this bucket's, else made by the gateway under
    /// `key_id` (the provider's default when `None`). `replace`:
    /// `MetadataDirective: REPLACE`.
    Copy {
        key_id: Option<String>,
        replace: bool,
    },
    /// UploadPartCopy into an upload the gateway began: the gateway reads
    /// the source's plaintext `range` (inclusive; the whole object when
    /// absent) and uploads it encrypted as part `number`.
    PartCopy {
        number: u32,
        range: Option<(u64, u64)>,
    },
}

/// `x-amz-copy-source-range`: `bytes=first-last`, both given, first <= last
/// (S3's only form for copies).
pub fn copy_source_range(value: &str) -> Result<(u64, u64), S3Error> {
    let bad = || {
        S3Error::new(
            S3ErrorCode::InvalidArgument,
            "x-amz-copy-source-range must be bytes=first-last",
        )
    };
    let (first, last) = value
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (number(first), number(last)) {
        (Some(a), Some(b)) if a <= b => Ok((a, b)),
        _ => Err(bad()),
    }
}

/// `x-amz-metadata-directive`: true for `REPLACE`, false for `COPY` (the
/// default); anything else is refused.
pub fn replaces_metadata(headers: &HeaderMap) -> Result<bool, S3Error> {
    match headers
        .get("x-amz-metadata-directive")
        .map(|v| v.as_bytes())
    {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case(b"COPY") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case(b"REPLACE") => Ok(true),
        Some(_) => Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "x-amz-metadata-directive must be COPY or REPLACE",
        )),
    }
}

/// `partNumber`, 1 to 10,000.
fn part_number(query: &[(String, String)]) -> Result<u32, S3Error> {
    query
        .iter()
        .find(|(k, _)| k == "partNumber")
        .and_then(|(_, v)| v.parse().ok())
        .filter(|n| (1..=MAX_PARTS).contains(n))
        .ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidArgument,
                "partNumber must be 1 to 10000",
            )
        })
}

/// What the plan decision needs to know about the request.
pub struct Request<'a> {
    pub operation: Operation,
    pub headers: &'a HeaderMap,
    pub query: &'a [(String, String)],
    pub verified: &'a Verified,
    /// The bucket's encryption (None: a pass-through bucket).
    pub encryption: Option<&'a BucketEncryption>,
    /// The default key of the bucket's provider.
    pub default_key_id: Option<&'a str>,
    /// True when the request's `uploadId` is a token the gateway issued.
    pub has_token: bool,
}

fn not_yet(what: &str) -> S3Error {
    S3Error::new(
        S3ErrorCode::NotImplemented,
        format!("{what} is not supported on encrypted buckets yet"),
    )
}

/// Decides the plan, or the S3 error the request is refused with.
pub fn decide(r: &Request) -> Result<Plan, S3Error> {
    let signed_chunks = matches!(
        r.verified.payload,
        PayloadHash::StreamingSigned | PayloadHash::StreamingSignedTrailer
    );
    let default_key = || {
        r.default_key_id.ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                "the bucket's key provider is not configured",
            )
        })
    };
    let plan = match (r.operation, r.encryption) {
        (Operation::PutObject, Some(enc)) => {
            let chosen = policy::check_write_headers(enc, default_key()?, r.headers)?;
            Plan::Put {
                body: UploadBody::from_request(r.headers, r.verified)?,
                key_id: chosen.or_else(|| enc.key_id.clone()),
            }
        }
        (Operation::CreateMultipartUpload, Some(enc)) => {
            let chosen = policy::check_write_headers(enc, default_key()?, r.headers)?;
            let header = |n: &str| r.headers.get(n).and_then(|v| v.to_str().ok());
            Plan::CreateMultipart {
                key_id: chosen.or_else(|| enc.key_id.clone()),
                checksum: ChecksumRequest::from_headers(
                    header("x-amz-checksum-algorithm"),
                    header("x-amz-checksum-type"),
                )?,
            }
        }
        (Operation::UploadPart, Some(_)) => {
            // As for ListParts and Complete: not an upload of this bucket's.
            if !r.has_token {
                return Err(S3Error::new(
                    S3ErrorCode::NoSuchUpload,
                    "this multipart upload was not started through the encryption gateway",
                ));
            }
            let number = part_number(r.query)?;
            Plan::Part {
                body: UploadBody::from_request(r.headers, r.verified)?,
                number,
            }
        }
        (Operation::GetObject | Operation::HeadObject, enc) => Plan::Read(ReadRequest {
            range: r
                .headers
                .get(http::header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(ByteRange::parse),
            part_number: match r.query.iter().any(|(k, _)| k == "partNumber") {
                false => None,
                // S3 refuses both at once.
                true if r.headers.contains_key(http::header::RANGE) => {
                    return Err(S3Error::new(
                        S3ErrorCode::InvalidRequest,
                        "Cannot specify both Range header and partNumber query parameter",
                    ))
                }
                true => Some(part_number(r.query)?),
            },
            head: r.operation == Operation::HeadObject,
            mandatory: enc.is_some_and(|e| e.mandatory),
        }),
        (
            Operation::ListObjects | Operation::ListObjectsV2 | Operation::ListObjectVersions,
            Some(_),
        ) => Plan::Listing,
        (Operation::ListMultipartUploads, Some(_)) => Plan::ListUploads,
        (Operation::ListBuckets, _) => Plan::ListBuckets,
        (Operation::GetObjectAttributes, Some(enc)) => Plan::Attributes {
            mandatory: enc.mandatory,
        },
        (Operation::ListParts, Some(_)) if r.has_token => Plan::ListParts,
        (Operation::CompleteMultipartUpload, Some(_)) if r.has_token => Plan::Complete,
        // A backend upload id on an encrypting bucket (ListMultipartUploads
        // shows them): completing it would skip the part-list checks, and
        // its part list shows stored sizes. Abort stays allowed (cleanup).
        (Operation::ListParts | Operation::CompleteMultipartUpload, Some(_)) => {
            return Err(S3Error::new(
                S3ErrorCode::NoSuchUpload,
                "this multipart upload was not started through the encryption gateway",
            ))
        }
        (Operation::UploadPartCopy, Some(_)) => {
            // As for ListParts and Complete: not an upload of this bucket's.
            if !r.has_token {
                return Err(S3Error::new(
                    S3ErrorCode::NoSuchUpload,
                    "this multipart upload was not started through the encryption gateway",
                ));
            }
            // The backend would decrypt an SSE-C source; the gateway cannot.
            if r.headers
                .contains_key("x-amz-copy-source-server-side-encryption-customer-algorithm")
            {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "an SSE-C encrypted source cannot be copied into a bucket this gateway encrypts",
                ));
            }
            let range = match r.headers.get("x-amz-copy-source-range") {
                None => None,
                Some(v) => Some(copy_source_range(v.to_str().unwrap_or(""))?),
            };
            Plan::PartCopy {
                number: part_number(r.query)?,
                range,
            }
        }
        (Operation::Unknown, Some(_)) => return Err(not_yet("this request")),
        (Operation::SelectObjectContent, Some(_)) => return Err(not_yet("S3 Select")),
        (Operation::PostObject, Some(_)) => return Err(not_yet("browser form upload (POST)")),
        (Operation::CopyObject, Some(enc)) => {
            // The backend would decrypt an SSE-C source and store plaintext.
            if r.headers
                .contains_key("x-amz-copy-source-server-side-encryption-customer-algorithm")
            {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "an SSE-C encrypted source cannot be copied into a bucket this gateway encrypts",
                ));
            }
            let chosen = policy::check_write_headers(enc, default_key()?, r.headers)?;
            let replace = replaces_metadata(r.headers)?;
            Plan::Copy {
                key_id: chosen.or_else(|| enc.key_id.clone()),
                replace,
            }
        }
        _ => Plan::PassThrough,
    };
    let decodes_body = matches!(plan, Plan::Put { .. } | Plan::Part { .. });
    if signed_chunks && !decodes_body {
        // Chunk signatures chain from the client's key, so they cannot be
        // forwarded under the gateway's: decode, verify, forward plain.
        if !matches!(r.operation, Operation::PutObject | Operation::UploadPart) {
            return Err(S3Error::new(
                S3ErrorCode::NotImplemented,
                "aws-chunked bodies with chunk signatures are accepted for PutObject and UploadPart only",
            ));
        }
        return Ok(Plan::DecodeOnly(UploadBody::from_request(
            r.headers, r.verified,
        )?));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use zeroize::Zeroizing;

    #[test]
    fn copy_source_ranges() {
        assert_eq!(copy_source_range("bytes=0-0").unwrap(), (0, 0));
        assert_eq!(
            copy_source_range("bytes=5-8388612").unwrap(),
            (5, 8_388_612)
        );
        for bad in [
            "",
            "bytes=",
            "bytes=5",
            "bytes=5-",
            "bytes=-5",
            "bytes=9-5",
            "bytes= 1-2",
            "bytes=1-2,4-5",
            "bytes=+1-2",
            "items=1-2",
            "bytes=1-99999999999999999999999",
        ] {
            assert_eq!(
                copy_source_range(bad).unwrap_err().code,
                S3ErrorCode::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    fn verified(payload: PayloadHash) -> Verified {
        Verified {
            access_key_id: "AK".into(),
            payload,
            signature: "s".into(),
            amz_date: "20260101T000000Z".into(),
            scope: "20260101/us-east-1/s3/aws4_request".into(),
            signing_key: Zeroizing::new([0; 32]),
            signature_v2: false,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn enc(mandatory: bool) -> BucketEncryption {
        BucketEncryption {
            provider: "p".into(),
            mandatory,
            key_id: None,
            allowed_key_ids: vec!["other".into()],
            readable_key_ids: Vec::new(),
            readable_providers: Vec::new(),
            readable_buckets: Vec::new(),
            context: BTreeMap::new(),
            write_context: BTreeMap::new(),
        }
    }

    /// What the plan is called in the table below.
    fn name(p: &Result<Plan, S3Error>) -> String {
        match p {
            Ok(Plan::PassThrough) => "pass".into(),
            Ok(Plan::DecodeOnly(_)) => "decode".into(),
            Ok(Plan::Put { key_id, .. }) => format!("put:{}", key_id.as_deref().unwrap_or("-")),
            Ok(Plan::CreateMultipart { checksum, .. }) => {
                format!("create:{}", checksum.map_or("-", |c| c.algorithm.name()))
            }
            Ok(Plan::Part { number, .. }) => format!("part:{number}"),
            Ok(Plan::Complete) => "complete".into(),
            Ok(Plan::ListParts) => "list-parts".into(),
            Ok(Plan::Read(r)) => format!(
                "read{}{}{}",
                if r.mandatory { ":mandatory" } else { "" },
                if r.range.is_some() { ":range" } else { "" },
                r.part_number
                    .map(|n| format!(":part{n}"))
                    .unwrap_or_default()
            ),
            Ok(Plan::Listing) => "listing".into(),
            Ok(Plan::ListUploads) => "list-uploads".into(),
            Ok(Plan::Attributes { .. }) => "attributes".into(),
            Ok(Plan::ListBuckets) => "list-buckets".into(),
            Ok(Plan::Copy { replace, .. }) => {
                format!("copy:{}", if *replace { "replace" } else { "copy" })
            }
            Ok(Plan::PartCopy { .. }) => "part-copy".into(),
            Err(e) => format!("error:{}", e.code.as_str()),
        }
    }

    /// Operation, encryption, headers, query, has token, payload, plan.
    type Row<'a> = (
        Operation,
        Option<&'a BucketEncryption>,
        Vec<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        bool,
        &'a PayloadHash,
        &'a str,
    );

    #[test]
    fn plans_by_operation_bucket_and_headers() {
        use Operation::*;
        let len = [("content-length", "5")];
        let optional = enc(false);
        let mandatory = enc(true);
        let unsigned = PayloadHash::Unsigned;
        let signed = PayloadHash::StreamingSigned;
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            // op, encryption, headers, query, has token, payload, plan
            (PutObject, None, len.to_vec(), vec![], false, &unsigned, "pass"),
            (PutObject, Some(&optional), len.to_vec(), vec![], false, &unsigned, "put:-"),
            (PutObject, Some(&optional), vec![("content-length", "5"), ("x-amz-server-side-encryption-aws-kms-key-id", "other")], vec![], false, &unsigned, "put:other"),
            (PutObject, Some(&optional), vec![("content-length", "5"), ("x-amz-server-side-encryption-aws-kms-key-id", "stranger")], vec![], false, &unsigned, "error:AccessDenied"),
            (PutObject, Some(&optional), vec![("content-length", "5"), ("x-amz-server-side-encryption-customer-algorithm", "AES256")], vec![], false, &unsigned, "error:InvalidArgument"),
            (PutObject, Some(&optional), vec![], vec![], false, &unsigned, "error:MissingContentLength"),
            (PutObject, Some(&optional), vec![("content-length", "5497558138881")], vec![], false, &unsigned, "error:EntityTooLarge"),
            (PutObject, Some(&optional), vec![("content-length", "5"), ("x-amz-trailer", "x-amz-checksum-md4")], vec![], false, &unsigned, "error:InvalidRequest"),
            (PutObject, None, vec![("x-amz-decoded-content-length", "5")], vec![], false, &signed, "decode"),
            (CreateMultipartUpload, Some(&optional), vec![("x-amz-checksum-algorithm", "SHA256")], vec![], false, &unsigned, "create:SHA256"),
            (CreateMultipartUpload, Some(&optional), vec![("x-amz-checksum-algorithm", "MD5")], vec![], false, &unsigned, "error:InvalidRequest"),
            (CreateMultipartUpload, None, vec![], vec![], false, &unsigned, "pass"),
            (UploadPart, Some(&optional), len.to_vec(), vec![("partNumber", "3")], true, &unsigned, "part:3"),
            (UploadPart, Some(&optional), len.to_vec(), vec![("partNumber", "3")], false, &unsigned, "error:NoSuchUpload"),
            (UploadPart, Some(&optional), len.to_vec(), vec![("partNumber", "10001")], true, &unsigned, "error:InvalidArgument"),
            (UploadPart, None, vec![("x-amz-decoded-content-length", "5")], vec![("partNumber", "1")], false, &signed, "decode"),
            (CompleteMultipartUpload, Some(&optional), vec![], vec![], true, &unsigned, "complete"),
            (CompleteMultipartUpload, Some(&optional), vec![], vec![], false, &unsigned, "error:NoSuchUpload"),
            (CompleteMultipartUpload, None, vec![], vec![], false, &signed, "error:NotImplemented"),
            (ListParts, Some(&optional), vec![], vec![], true, &unsigned, "list-parts"),
            (ListParts, Some(&optional), vec![], vec![], false, &unsigned, "error:NoSuchUpload"),
            (GetObject, Some(&optional), vec![], vec![("partNumber", "2")], false, &unsigned, "read:part2"),
            (HeadObject, Some(&optional), vec![], vec![("partNumber", "10000")], false, &unsigned, "read:part10000"),
            (GetObject, Some(&optional), vec![("range", "bytes=0-1")], vec![("partNumber", "2")], false, &unsigned, "error:InvalidRequest"),
            (GetObject, Some(&optional), vec![], vec![("partNumber", "0")], false, &unsigned, "error:InvalidArgument"),
            (GetObject, Some(&optional), vec![], vec![("partNumber", "x")], false, &unsigned, "error:InvalidArgument"),
            (GetObjectAttributes, Some(&optional), vec![], vec![], false, &unsigned, "attributes"),
            (GetObjectAttributes, None, vec![], vec![], false, &unsigned, "pass"),
            (GetObject, None, vec![], vec![], false, &unsigned, "read"),
            (GetObject, Some(&mandatory), vec![("range", "bytes=0-9")], vec![], false, &unsigned, "read:mandatory:range"),
            (HeadObject, Some(&optional), vec![], vec![], false, &unsigned, "read"),
            (ListObjectsV2, Some(&optional), vec![], vec![], false, &unsigned, "listing"),
            (ListObjectsV2, None, vec![], vec![], false, &unsigned, "pass"),
            (ListBuckets, None, vec![], vec![], false, &unsigned, "list-buckets"),
            (ListObjectVersions, Some(&optional), vec![], vec![], false, &unsigned, "listing"),
            (UploadPartCopy, Some(&optional), vec![], vec![("partNumber", "2")], true, &unsigned, "part-copy"),
            (UploadPartCopy, Some(&optional), vec![("x-amz-copy-source-range", "bytes=5-9")], vec![("partNumber", "2")], true, &unsigned, "part-copy"),
            (UploadPartCopy, Some(&optional), vec![("x-amz-copy-source-range", "bytes=9-5")], vec![("partNumber", "2")], true, &unsigned, "error:InvalidArgument"),
            (UploadPartCopy, Some(&optional), vec![], vec![("partNumber", "0")], true, &unsigned, "error:InvalidArgument"),
            (UploadPartCopy, Some(&optional), vec![], vec![("partNumber", "2")], false, &unsigned, "error:NoSuchUpload"),
            (UploadPartCopy, Some(&optional), vec![("x-amz-copy-source-server-side-encryption-customer-algorithm", "AES256")], vec![("partNumber", "2")], true, &unsigned, "error:InvalidArgument"),
            (UploadPartCopy, None, vec![], vec![], false, &unsigned, "pass"),
            (SelectObjectContent, Some(&optional), vec![], vec![], false, &unsigned, "error:NotImplemented"),
            (PostObject, Some(&optional), vec![], vec![], false, &unsigned, "error:NotImplemented"),
            (Unknown, Some(&optional), vec![], vec![], false, &unsigned, "error:NotImplemented"),
            (Unknown, None, vec![], vec![], false, &unsigned, "pass"),
            (CopyObject, Some(&mandatory), vec![], vec![], false, &unsigned, "copy:copy"),
            (CopyObject, Some(&optional), vec![], vec![], false, &unsigned, "copy:copy"),
            (CopyObject, None, vec![], vec![], false, &unsigned, "pass"),
            (CopyObject, Some(&optional), vec![("x-amz-metadata-directive", "replace")], vec![], false, &unsigned, "copy:replace"),
            (CopyObject, Some(&optional), vec![("x-amz-metadata-directive", "MOVE")], vec![], false, &unsigned, "error:InvalidArgument"),
            (CopyObject, Some(&mandatory), vec![("x-amz-copy-source-server-side-encryption-customer-algorithm", "AES256")], vec![], false, &unsigned, "error:InvalidArgument"),
            (CopyObject, Some(&optional), vec![("x-amz-server-side-encryption-customer-algorithm", "AES256")], vec![], false, &unsigned, "error:InvalidArgument"),
            (CopyObject, Some(&mandatory), vec![("x-amz-server-side-encryption-aws-kms-key-id", "stranger")], vec![], false, &unsigned, "error:AccessDenied"),
            (CopyObject, None, vec![("x-amz-copy-source-server-side-encryption-customer-algorithm", "AES256")], vec![], false, &unsigned, "pass"),
        ];
        for (op, encryption, h, q, has_token, payload, expected) in table {
            let h = headers(&h);
            let q: Vec<(String, String)> = q
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let v = verified(payload.clone());
            let got = decide(&Request {
                operation: op,
                headers: &h,
                query: &q,
                verified: &v,
                encryption,
                default_key_id: Some("default"),
                has_token,
            });
            assert_eq!(name(&got), expected, "{op:?} {h:?} {q:?}");
        }
    }
}
