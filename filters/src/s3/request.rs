//! Which S3 operation a request is, on which bucket and key.
//!
//! Classification needs only the method, the Host header, the path, the
//! query names and one header (`x-amz-copy-source`). It decides how the
//! gateway treats the request: the encryption issues hang their plans off
//! [`Operation`], and metrics label by [`Operation::as_str`].

use http::{HeaderMap, Method};

use super::responses::error::{S3Error, S3ErrorCode};
use super::uri;

/// How the client named the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `http://host/bucket/key`
    Path,
    /// `http://bucket.domain/key`
    VirtualHosted,
}

/// S3 operations the gateway tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    ListBuckets,
    CreateBucket,
    DeleteBucket,
    HeadBucket,
    ListObjects,
    ListObjectsV2,
    ListObjectVersions,
    ListMultipartUploads,
    DeleteObjects,
    /// Bucket sub-resources (`?acl`, `?policy`, `?tagging`, `?versioning`, ...).
    BucketConfig,
    GetObject,
    HeadObject,
    PutObject,
    CopyObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    /// `GET ?attributes`: sizes, checksums and parts of an object.
    GetObjectAttributes,
    /// Object sub-resources (`?tagging`, `?acl`, `?retention`, ...).
    ObjectConfig,
    /// `POST ?select`: runs on stored bytes.
    SelectObjectContent,
    /// `POST ?restore`.
    RestoreObject,
    /// Browser form upload (`POST /bucket` without a sub-resource).
    PostObject,
    /// A browser's CORS preflight (`OPTIONS`), answered by the gateway.
    CorsPreflight,
    /// Kept last: the gateway's metrics size their per-operation tables
    /// by it.
    Unknown,
}

impl Operation {
    /// Stable name for logs and the closed `operation` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ListBuckets => "ListBuckets",
            Self::CreateBucket => "CreateBucket",
            Self::DeleteBucket => "DeleteBucket",
            Self::HeadBucket => "HeadBucket",
            Self::ListObjects => "ListObjects",
            Self::ListObjectsV2 => "ListObjectsV2",
            Self::ListObjectVersions => "ListObjectVersions",
            Self::ListMultipartUploads => "ListMultipartUploads",
            Self::DeleteObjects => "DeleteObjects",
            Self::BucketConfig => "BucketConfig",
            Self::GetObject => "GetObject",
            Self::HeadObject => "HeadObject",
            Self::PutObject => "PutObject",
            Self::CopyObject => "CopyObject",
            Self::DeleteObject => "DeleteObject",
            Self::CreateMultipartUpload => "CreateMultipartUpload",
            Self::UploadPart => "UploadPart",
            Self::UploadPartCopy => "UploadPartCopy",
            Self::CompleteMultipartUpload => "CompleteMultipartUpload",
            Self::AbortMultipartUpload => "AbortMultipartUpload",
            Self::ListParts => "ListParts",
            Self::GetObjectAttributes => "GetObjectAttributes",
            Self::ObjectConfig => "ObjectConfig",
            Self::SelectObjectContent => "SelectObjectContent",
            Self::RestoreObject => "RestoreObject",
            Self::PostObject => "PostObject",
            Self::CorsPreflight => "CorsPreflight",
            Self::Unknown => "Unknown",
        }
    }
}

/// A classified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Request {
    /// Client-visible bucket, if the request names one.
    pub bucket: Option<String>,
    /// Decoded object key, if the request names one.
    pub key: Option<String>,
    pub addressing: Addressing,
    pub operation: Operation,
}

/// Bucket sub-resources that make a bucket request a configuration call.
pub(crate) const BUCKET_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "tagging",
    "versioning",
    "website",
];

/// Query parameters of bucket-level data calls (listings, DeleteObjects,
/// CreateBucket). A bucket request with any other name is a configuration
/// call (`admin`), so a sub-resource this list has not heard of fails closed.
const BUCKET_DATA_PARAMS: &[&str] = &[
    "allow-unordered",
    "continuation-token",
    "delete",
    "delimiter",
    "encoding-type",
    "fetch-owner",
    "key-marker",
    "list-type",
    "marker",
    "max-keys",
    "max-uploads",
    "prefix",
    "start-after",
    "upload-id-marker",
    "uploads",
    "version-id-marker",
    "versions",
    "x-id",
];

/// Query parameters of ListBuckets; any other makes a request without a
/// bucket one the gateway does not know (and refuses).
const LIST_BUCKETS_PARAMS: &[&str] = &[
    "bucket-region",
    "continuation-token",
    "max-buckets",
    "prefix",
    "x-id",
];

fn is_list_buckets_param(name: &str) -> bool {
    LIST_BUCKETS_PARAMS.contains(&name) || is_presign_param(name)
}

fn is_presign_param(name: &str) -> bool {
    name.get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"))
}

/// True for a query name of a bucket-level data call (or presigning).
fn is_bucket_data_param(name: &str) -> bool {
    BUCKET_DATA_PARAMS.contains(&name) || is_presign_param(name)
}

/// Object sub-resources S3 serves on GET (GetObjectAcl, GetObjectAttributes, ...).
const OBJECT_GET_SUBRESOURCES: &[&str] =
    &["acl", "attributes", "legal-hold", "retention", "tagging"];
/// Object sub-resources S3 takes on PUT and DELETE.
const OBJECT_PUT_SUBRESOURCES: &[&str] = &["acl", "legal-hold", "retention", "tagging"];
/// Query names besides the sub-resources that each make a bucket request
/// another operation.
const BUCKET_OPERATION_KEYWORDS: &[&str] = &["uploads", "versions", "delete"];

/// Query names that each make an object request another operation.
/// `partNumber` is not one: it qualifies `uploadId` (UploadPart) and GET.
const OBJECT_OPERATION_KEYWORDS: &[&str] = &[
    "uploads",
    "uploadId",
    "select",
    "restore",
    "acl",
    "tagging",
    "legal-hold",
    "retention",
    "attributes",
    "torrent",
];
/// Sub-resources of no call the gateway understands: such a request is
/// `Unknown` (refused on encrypted buckets), never taken for a plain GET or PUT.
const FOREIGN_OBJECT_SUBRESOURCES: &[&str] = &["torrent", "attributes"];

/// Splits `Host` into name and drops the port.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map(|(h, _)| &host[..=h.len()])
            .unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// Longest bucket name accepted (legacy us-east-1 names run to 255).
const MAX_BUCKET_LEN: usize = 255;

/// Checks a bucket name from a request (path, virtual host or copy source)
/// before anything uses it: S3's rules, with the legacy us-east-1 forms
/// (capitals, underscores, up to 255 characters) still accepted. Nothing
/// that could change how a path or host is read (`/`, `?`, `#`, `%`, `\`,
/// `:`, whitespace, dot segments) gets through.
pub fn check_bucket(name: &str) -> Result<(), S3Error> {
    let chars_ok = name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    let ends_ok = name
        .bytes()
        .next()
        .zip(name.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if (3..=MAX_BUCKET_LEN).contains(&name.len()) && chars_ok && ends_ok && !name.contains("..") {
        Ok(())
    } else {
        Err(S3Error::new(
            S3ErrorCode::InvalidBucketName,
            "the specified bucket is not valid",
        ))
    }
}

/// Classifies a request. `domains` are the base domains of virtual-hosted
/// addressing; `raw_path` is the percent-encoded path as received. A
/// `Host` that is not `<bucket>.<domain>` for a configured domain means
/// path-style addressing (the host itself is never forwarded). The bucket
/// is split off the raw path before decoding, so an encoded `/` cannot
/// move the boundary, and is checked with [`check_bucket`].
pub fn classify(
    method: &Method,
    host: Option<&str>,
    raw_path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    domains: &[String],
) -> Result<S3Request, S3Error> {
    let decode = |raw: &str| {
        uri::decode(raw).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidURI,
                "the path is not valid UTF-8 after decoding",
            )
        })
    };
    let host = host.map(|h| host_name(h).to_ascii_lowercase());
    let vhost_bucket = host.as_deref().and_then(|h| {
        domains
            .iter()
            .find_map(|d| {
                h.strip_suffix(d.as_str())?
                    .strip_suffix('.')
                    .filter(|b| !b.is_empty())
            })
            .map(str::to_string)
    });
    let after_slash = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let (bucket, key, addressing) = match vhost_bucket {
        Some(b) => (
            Some(b),
            non_empty(&decode(after_slash)?),
            Addressing::VirtualHosted,
        ),
        None => {
            let (b, k) = match after_slash.split_once('/') {
                // `//key`: a key with an empty bucket segment.
                Some(("", _)) => {
                    return Err(S3Error::new(
                        S3ErrorCode::InvalidBucketName,
                        "the specified bucket is not valid",
                    ))
                }
                Some(split) => split,
                None => (after_slash, ""),
            };
            (
                non_empty(&decode(b)?),
                non_empty(&decode(k)?),
                Addressing::Path,
            )
        }
    };
    if let Some(b) = &bucket {
        check_bucket(b)?;
    }
    let has = |name: &str| query.iter().any(|(k, _)| k == name);
    let copy_source = headers.contains_key("x-amz-copy-source");
    use Operation::*;
    let operation = match (&bucket, &key) {
        // Never signed: answered by the gateway from the bucket's rules.
        _ if *method == Method::OPTIONS => CorsPreflight,
        (None, _) => match *method {
            Method::GET | Method::HEAD if query.iter().all(|(k, _)| is_list_buckets_param(k)) => {
                ListBuckets
            }
            _ => Unknown,
        },
        // `?uploads&acl`: listed as uploads here (read), the ACL at a
        // backend that looks at `acl` first.
        // A keyword beside a name the gateway does not know
        // (`?uploads&session`): that name may be another operation at the
        // backend, so it fails closed as an unknown sub-resource does.
        (Some(_), None)
            if BUCKET_SUBRESOURCES
                .iter()
                .chain(BUCKET_OPERATION_KEYWORDS)
                .filter(|k| has(k))
                .count()
                > 1
                || (BUCKET_OPERATION_KEYWORDS.iter().any(|k| has(k))
                    && !query.iter().all(|(k, _)| is_bucket_data_param(k))) =>
        {
            Unknown
        }
        (Some(_), None) => {
            let sub = BUCKET_SUBRESOURCES.iter().any(|s| has(s))
                || !query.iter().all(|(k, _)| is_bucket_data_param(k));
            match *method {
                Method::GET if has("uploads") => ListMultipartUploads,
                Method::GET if has("versions") => ListObjectVersions,
                Method::GET if sub => BucketConfig,
                Method::GET if query.iter().any(|(k, v)| k == "list-type" && v == "2") => {
                    ListObjectsV2
                }
                Method::GET => ListObjects,
                Method::HEAD => HeadBucket,
                Method::PUT if sub => BucketConfig,
                Method::PUT => CreateBucket,
                Method::DELETE if sub => BucketConfig,
                Method::DELETE => DeleteBucket,
                Method::POST if has("delete") => DeleteObjects,
                Method::POST if query.is_empty() => PostObject,
                _ => Unknown,
            }
        }
        // Two operation keywords (`?uploads&select`): backends pick one in
        // an order of their own, so the gateway cannot know which runs.
        (Some(_), Some(_)) if OBJECT_OPERATION_KEYWORDS.iter().filter(|k| has(k)).count() > 1 => {
            Unknown
        }
        (Some(_), Some(_)) => {
            let upload_id = has("uploadId");
            let get_sub = OBJECT_GET_SUBRESOURCES.iter().any(|s| has(s));
            let put_sub = OBJECT_PUT_SUBRESOURCES.iter().any(|s| has(s));
            let foreign = FOREIGN_OBJECT_SUBRESOURCES.iter().any(|s| has(s));
            match *method {
                Method::GET if upload_id => ListParts,
                Method::GET if has("attributes") && !has("acl") && !has("tagging") => {
                    GetObjectAttributes
                }
                Method::GET if get_sub => ObjectConfig,
                Method::GET if foreign => Unknown,
                Method::GET => GetObject,
                Method::HEAD => HeadObject,
                Method::PUT if upload_id && has("partNumber") && copy_source => UploadPartCopy,
                Method::PUT if upload_id && has("partNumber") => UploadPart,
                Method::PUT if put_sub => ObjectConfig,
                Method::PUT if foreign => Unknown,
                Method::PUT if copy_source => CopyObject,
                Method::PUT => PutObject,
                Method::POST if has("uploads") => CreateMultipartUpload,
                Method::POST if upload_id => CompleteMultipartUpload,
                Method::POST if has("select") => SelectObjectContent,
                Method::POST if has("restore") => RestoreObject,
                Method::DELETE if upload_id => AbortMultipartUpload,
                Method::DELETE if put_sub => ObjectConfig,
                Method::DELETE if foreign => Unknown,
                Method::DELETE => DeleteObject,
                _ => Unknown,
            }
        }
    };
    Ok(S3Request {
        bucket,
        key,
        addressing,
        operation,
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        uri::parse_query(s).unwrap()
    }

    fn op(method: Method, path: &str, query: &str) -> S3Request {
        classify(
            &method,
            Some("localhost:8080"),
            path,
            &q(query),
            &HeaderMap::new(),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn path_style() {
        let r = op(Method::GET, "/bucket/dir/a%20b.txt", "");
        assert_eq!(r.bucket.as_deref(), Some("bucket"));
        assert_eq!(r.key.as_deref(), Some("dir/a b.txt"));
        assert_eq!(r.operation, Operation::GetObject);
        assert_eq!(r.addressing, Addressing::Path);
        assert_eq!(op(Method::GET, "/", "").operation, Operation::ListBuckets);
        assert_eq!(
            op(Method::GET, "/bkt", "list-type=2").operation,
            Operation::ListObjectsV2
        );
        assert_eq!(
            op(Method::GET, "/bkt/", "").operation,
            Operation::ListObjects
        );
        assert_eq!(
            op(Method::GET, "/bkt", "versions").operation,
            Operation::ListObjectVersions
        );
        assert_eq!(
            op(Method::GET, "/bkt", "location").operation,
            Operation::BucketConfig
        );
        assert_eq!(
            op(Method::POST, "/bkt", "delete").operation,
            Operation::DeleteObjects
        );
        assert_eq!(
            op(Method::PUT, "/bkt", "").operation,
            Operation::CreateBucket
        );
        assert_eq!(
            op(Method::HEAD, "/bkt", "").operation,
            Operation::HeadBucket
        );
    }

    #[test]
    fn object_and_multipart_operations() {
        assert_eq!(
            op(Method::PUT, "/bkt/k", "").operation,
            Operation::PutObject
        );
        assert_eq!(
            op(Method::HEAD, "/bkt/k", "").operation,
            Operation::HeadObject
        );
        assert_eq!(
            op(Method::POST, "/bkt/k", "uploads").operation,
            Operation::CreateMultipartUpload
        );
        assert_eq!(
            op(Method::PUT, "/bkt/k", "partNumber=1&uploadId=x").operation,
            Operation::UploadPart
        );
        assert_eq!(
            op(Method::POST, "/bkt/k", "uploadId=x").operation,
            Operation::CompleteMultipartUpload
        );
        assert_eq!(
            op(Method::DELETE, "/bkt/k", "uploadId=x").operation,
            Operation::AbortMultipartUpload
        );
        assert_eq!(
            op(Method::GET, "/bkt/k", "uploadId=x").operation,
            Operation::ListParts
        );
        assert_eq!(
            op(Method::GET, "/bkt/k", "tagging").operation,
            Operation::ObjectConfig
        );
        assert_eq!(
            op(Method::DELETE, "/bkt/k", "").operation,
            Operation::DeleteObject
        );
        let mut h = HeaderMap::new();
        h.insert("x-amz-copy-source", "/bkt/src".parse().unwrap());
        let r = classify(&Method::PUT, None, "/bkt/k", &[], &h, &[]).unwrap();
        assert_eq!(r.operation, Operation::CopyObject);
        let r = classify(
            &Method::PUT,
            None,
            "/bkt/k",
            &q("partNumber=2&uploadId=u"),
            &h,
            &[],
        )
        .unwrap();
        assert_eq!(r.operation, Operation::UploadPartCopy);
    }

    #[test]
    fn virtual_hosted_style() {
        let domains = vec!["s3.example.com".to_string()];
        let r = classify(
            &Method::GET,
            Some("my.bucket.s3.example.com:8443"),
            "/photos/x.jpg",
            &[],
            &HeaderMap::new(),
            &domains,
        )
        .unwrap();
        assert_eq!(r.bucket.as_deref(), Some("my.bucket"));
        assert_eq!(r.key.as_deref(), Some("photos/x.jpg"));
        assert_eq!(r.addressing, Addressing::VirtualHosted);
        let r = classify(
            &Method::GET,
            Some("s3.example.com"),
            "/bkt/k",
            &[],
            &HeaderMap::new(),
            &domains,
        )
        .unwrap();
        assert_eq!(
            (r.bucket.as_deref(), r.addressing),
            (Some("bkt"), Addressing::Path)
        );
    }

    #[test]
    fn foreign_subresources_never_become_plain_object_calls() {
        assert_eq!(
            op(Method::PUT, "/bkt/k", "attributes").operation,
            Operation::Unknown
        );
        assert_eq!(
            op(Method::GET, "/bkt/k", "torrent").operation,
            Operation::Unknown
        );
        assert_eq!(
            op(Method::GET, "/bkt/k", "attributes").operation,
            Operation::GetObjectAttributes
        );
        assert_eq!(
            op(Method::PUT, "/bkt/k", "tagging").operation,
            Operation::ObjectConfig
        );
    }

    #[test]
    fn bad_path_encoding_is_invalid_uri() {
        let e = classify(&Method::GET, None, "/bkt/%FF", &[], &HeaderMap::new(), &[]).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidURI);
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn op(method: Method, path: &str, query: &str) -> S3Request {
        classify(
            &method,
            Some("localhost:8080"),
            path,
            &uri::parse_query(query).unwrap(),
            &HeaderMap::new(),
            &[],
        )
        .unwrap()
    }

    fn classify_host(host: &str, path: &str) -> Result<S3Request, S3Error> {
        classify(
            &Method::PUT,
            Some(host),
            path,
            &[],
            &HeaderMap::new(),
            &["s3.sealgate.test".to_string()],
        )
    }

    /// The finding: a virtual host with `/` and `?` in it made a bucket-level
    /// call of a PUT; an encoded `/` moved the bucket boundary.
    #[test]
    fn crafted_hosts_and_paths_are_refused() {
        for (host, path) in [
            ("demo/x?acl.s3.sealgate.test", "/k"),
            ("demo?x.s3.sealgate.test", "/k"),
            ("de mo.s3.sealgate.test", "/k"),
            ("..s3.sealgate.test", "/k"),
            ("gateway:8080", "/de%2Fmo/k"),
            ("gateway:8080", "/../k"),
            ("gateway:8080", "/%2E%2E/k"),
            ("gateway:8080", "/de%3Fmo/k"),
            ("gateway:8080", "/ab/k"),
        ] {
            let err = classify_host(host, path).unwrap_err();
            assert_eq!(err.code, S3ErrorCode::InvalidBucketName, "{host} {path}");
        }
        let legacy = classify_host("gateway", "/Legacy_Bucket/k").unwrap();
        assert_eq!(legacy.bucket.as_deref(), Some("Legacy_Bucket"));
    }

    /// The finding: `?uploads&select` was CreateMultipartUpload here and
    /// may be SelectObjectContent at the backend (a write checked as one
    /// thing, run as another).
    #[test]
    fn requests_naming_two_operations_are_unknown() {
        for (method, query) in [
            (Method::POST, "uploads&select"),
            (Method::POST, "select&restore"),
            (Method::POST, "uploadId=x&restore"),
            (Method::PUT, "acl&tagging"),
            (Method::PUT, "tagging&retention"),
            (Method::GET, "attributes&acl"),
            (Method::DELETE, "uploadId=x&tagging"),
        ] {
            assert_eq!(
                op(method.clone(), "/bkt/k", query).operation,
                Operation::Unknown,
                "{method} {query}"
            );
        }
        for (method, query) in [
            (Method::GET, "uploads&acl"),
            (Method::GET, "versions&policy"),
            (Method::GET, "location&acl"),
            (Method::POST, "delete&uploads"),
            (Method::PUT, "tagging&versioning"),
            (Method::GET, "uploads&session"),
            (Method::GET, "versions&metadata=true"),
            (Method::POST, "delete&events=x"),
        ] {
            assert_eq!(
                op(method.clone(), "/bkt", query).operation,
                Operation::Unknown,
                "{method} {query}"
            );
        }
        assert_eq!(
            op(Method::GET, "/bkt", "uploads&prefix=a").operation,
            Operation::ListMultipartUploads
        );
        assert_eq!(
            op(Method::PUT, "/bkt/k", "partNumber=2&uploadId=x").operation,
            Operation::UploadPart
        );
        assert_eq!(
            op(Method::GET, "/bkt/k", "partNumber=2").operation,
            Operation::GetObject
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the Host and path, a bucket the classifier names is a
        /// valid bucket name (so it can neither leave the path segment nor
        /// change the upstream host), and nothing panics.
        #[test]
        fn any_host_and_path_yield_a_valid_bucket_or_an_error(
            host in "[a-zA-Z0-9./?#%:_ -]{0,40}(\\.s3\\.sealgate\\.test)?",
            path in "/[a-zA-Z0-9./?#%_-]{0,40}",
        ) {
            if let Ok(r) = classify_host(&host, &path) {
                if let Some(b) = r.bucket {
                    prop_assert!(check_bucket(&b).is_ok(), "{b}");
                    prop_assert!(!b.contains(['/', '?', '#', '%', ':', ' ']));
                }
            }
        }
    }
}
