//! What each S3 operation needs of the client's grant on its bucket.
//!
//! Bucket patterns in `auth.clients[].buckets` grant `read`, `write` and
//! `delete` unless they list permissions; `admin` is never implied. Object
//! data goes under the first three; everything that changes how a bucket
//! behaves (policies, ACLs, lifecycle, replication, creating and deleting
//! buckets) needs `admin`, because a data client that could add a lifecycle
//! rule or a replication target could destroy or exfiltrate what the
//! gateway protects. Requests the classifier does not know need a right no
//! grant gives.

use http::{HeaderMap, Method};
use sealgate_config::Permission;

use crate::s3::request::{Operation, BUCKET_SUBRESOURCES};

/// Bucket configuration reads that clients make as part of ordinary data
/// access (region discovery), so `read` covers them.
const DATA_BUCKET_READS: &[&str] = &["location"];

/// Object sub-resources a data writer changes (PutObjectTagging,
/// DeleteObjectTagging); other object sub-resource writes (ACLs, retention,
/// legal holds) need `admin`.
const DATA_OBJECT_WRITES: &[&str] = &["tagging"];

/// Sub-resources that read nothing but a bucket's configuration: `read`
/// covers them only alone (GetBucketLocation); with any other in the same
/// request the backend might act on the other.
const READ_SUBRESOURCES: &[&str] = &["location"];

/// Object sub-resources whose change is an administrator's (ACLs can make
/// objects public; retention and legal holds can make them undeletable).
const ADMIN_OBJECT_SUBRESOURCES: &[&str] = &["acl", "legal-hold", "retention"];

/// Canned ACLs that widen nobody's access (what S3 applies anyway; some
/// clients send them on every upload).
const DATA_CANNED_ACLS: &[&str] = &["private", "bucket-owner-full-control"];

/// Headers (or presigned query parameters) that make a data write change
/// access or retention, or a delete skip governance retention: `admin`
/// whatever the operation.
fn is_admin_header(name: &str, value: &str) -> bool {
    // Runs over every header of every request: compared in place, no
    // lowercase copy (header names are lowercase already; query names may
    // not be).
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    let starts = |p: &str| {
        name.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    };
    (is("x-amz-acl") && !DATA_CANNED_ACLS.contains(&value.trim()))
        || starts("x-amz-grant-")
        || starts("x-amz-object-lock-")
        || is("x-amz-bypass-governance-retention")
}

/// True when a request names a sub-resource or header that changes who may
/// reach objects or how long they live: such a request needs `admin`
/// whatever else it names, since a backend may act on any one of several
/// sub-resources in one request.
fn needs_admin(method: &Method, query: &[(String, String)], headers: &HeaderMap) -> bool {
    let reading = matches!(*method, Method::GET | Method::HEAD);
    let bucket_config = query.iter().any(|(k, _)| {
        let k = k.as_str();
        // Object ACL and tagging reads are `read` (their bucket-level forms
        // are BucketConfig, `admin` below); object tagging writes `write`.
        let data_level = READ_SUBRESOURCES.contains(&k)
            || (reading && matches!(k, "acl" | "tagging"))
            || (!reading && k == "tagging");
        BUCKET_SUBRESOURCES.contains(&k) && !data_level
    });
    let object_admin = !reading
        && query
            .iter()
            .any(|(k, _)| ADMIN_OBJECT_SUBRESOURCES.contains(&k.as_str()));
    let admin_parameter = headers
        .iter()
        .any(|(h, v)| is_admin_header(h.as_str(), v.to_str().unwrap_or("")))
        || query.iter().any(|(k, v)| is_admin_header(k, v));
    let several = query
        .iter()
        .filter(|(k, _)| BUCKET_SUBRESOURCES.contains(&k.as_str()))
        .count()
        > 1;
    bucket_config || object_admin || admin_parameter || several
}

/// The permission `operation` needs on its bucket; `None` when no grant
/// allows it (requests the gateway does not understand).
pub fn required(
    operation: Operation,
    method: &Method,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Option<Permission> {
    use Operation::*;
    // A preflight is never authorised as a request: it is answered from
    // the bucket's CORS rules and goes no further.
    if operation == Unknown || operation == CorsPreflight {
        return None;
    }
    if operation != ListBuckets && needs_admin(method, query, headers) {
        return Some(Permission::Admin);
    }
    let has_any = |names: &[&str]| query.iter().any(|(k, _)| names.contains(&k.as_str()));
    Some(match operation {
        ListBuckets | HeadBucket | ListObjects | ListObjectsV2 | ListObjectVersions
        | ListMultipartUploads | GetObject | HeadObject | GetObjectAttributes | ListParts
        | SelectObjectContent => Permission::Read,
        PutObject
        | CopyObject
        | CreateMultipartUpload
        | UploadPart
        | UploadPartCopy
        | CompleteMultipartUpload
        | AbortMultipartUpload
        | PostObject
        | RestoreObject => Permission::Write,
        DeleteObject | DeleteObjects => Permission::Delete,
        CreateBucket | DeleteBucket => Permission::Admin,
        BucketConfig if *method == Method::GET && has_any(DATA_BUCKET_READS) => Permission::Read,
        BucketConfig => Permission::Admin,
        ObjectConfig if *method == Method::GET => Permission::Read,
        ObjectConfig if has_any(DATA_OBJECT_WRITES) => Permission::Write,
        ObjectConfig => Permission::Admin,
        Unknown | CorsPreflight => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::request::classify;
    use http::HeaderMap;
    use sealgate_config::Permissions;

    /// Every operation the classifier knows, as a request, with the
    /// permission it needs (`None`: refused whatever the grant).
    const MATRIX: &[(&str, &str, &str, Operation, Option<Permission>)] = {
        use Operation::*;
        use Permission::*;
        &[
            ("GET", "/", "", ListBuckets, Some(Read)),
            (
                "GET",
                "/",
                "max-buckets=10&x-id=ListBuckets",
                ListBuckets,
                Some(Read),
            ),
            ("GET", "/", "lifecycle", Unknown, None),
            ("OPTIONS", "/bk1/k", "", CorsPreflight, None),
            ("OPTIONS", "/bk1", "uploads", CorsPreflight, None),
            ("PUT", "/bk1", "", CreateBucket, Some(Admin)),
            ("DELETE", "/bk1", "", DeleteBucket, Some(Admin)),
            ("HEAD", "/bk1", "", HeadBucket, Some(Read)),
            ("GET", "/bk1", "", ListObjects, Some(Read)),
            (
                "GET",
                "/bk1",
                "list-type=2&prefix=a",
                ListObjectsV2,
                Some(Read),
            ),
            ("GET", "/bk1", "versions", ListObjectVersions, Some(Read)),
            ("GET", "/bk1", "uploads", ListMultipartUploads, Some(Read)),
            ("POST", "/bk1", "delete", DeleteObjects, Some(Delete)),
            ("GET", "/bk1", "location", BucketConfig, Some(Read)),
            ("GET", "/bk1", "policy", BucketConfig, Some(Admin)),
            ("PUT", "/bk1", "policy", BucketConfig, Some(Admin)),
            ("DELETE", "/bk1", "policy", BucketConfig, Some(Admin)),
            ("PUT", "/bk1", "acl", BucketConfig, Some(Admin)),
            ("PUT", "/bk1", "lifecycle", BucketConfig, Some(Admin)),
            ("PUT", "/bk1", "replication", BucketConfig, Some(Admin)),
            (
                "PUT",
                "/bk1",
                "publicAccessBlock",
                BucketConfig,
                Some(Admin),
            ),
            ("PUT", "/bk1", "encryption", BucketConfig, Some(Admin)),
            ("PUT", "/bk1", "versioning", BucketConfig, Some(Admin)),
            ("PUT", "/bk1", "tagging", BucketConfig, Some(Admin)),
            ("GET", "/bk1", "lifecycle", BucketConfig, Some(Admin)),
            ("GET", "/bk1", "unknownsub", BucketConfig, Some(Admin)),
            ("PUT", "/bk1", "unknownsub", BucketConfig, Some(Admin)),
            ("GET", "/bk1/k", "", GetObject, Some(Read)),
            (
                "GET",
                "/bk1/k",
                "versionId=v&x-id=GetObject",
                GetObject,
                Some(Read),
            ),
            ("HEAD", "/bk1/k", "", HeadObject, Some(Read)),
            ("PUT", "/bk1/k", "", PutObject, Some(Write)),
            ("PUT", "/bk1/k", "copy", CopyObject, Some(Write)),
            ("DELETE", "/bk1/k", "", DeleteObject, Some(Delete)),
            (
                "POST",
                "/bk1/k",
                "uploads",
                CreateMultipartUpload,
                Some(Write),
            ),
            (
                "PUT",
                "/bk1/k",
                "uploadId=u&partNumber=1",
                UploadPart,
                Some(Write),
            ),
            (
                "PUT",
                "/bk1/k",
                "uploadId=u&partNumber=1&copy",
                UploadPartCopy,
                Some(Write),
            ),
            (
                "POST",
                "/bk1/k",
                "uploadId=u",
                CompleteMultipartUpload,
                Some(Write),
            ),
            (
                "DELETE",
                "/bk1/k",
                "uploadId=u",
                AbortMultipartUpload,
                Some(Write),
            ),
            ("GET", "/bk1/k", "uploadId=u", ListParts, Some(Read)),
            ("GET", "/bk1/k", "tagging", ObjectConfig, Some(Read)),
            ("GET", "/bk1/k", "acl", ObjectConfig, Some(Read)),
            (
                "GET",
                "/bk1/k",
                "attributes",
                GetObjectAttributes,
                Some(Read),
            ),
            ("PUT", "/bk1/k", "tagging", ObjectConfig, Some(Write)),
            ("DELETE", "/bk1/k", "tagging", ObjectConfig, Some(Write)),
            ("PUT", "/bk1/k", "acl", ObjectConfig, Some(Admin)),
            ("PUT", "/bk1/k", "retention", ObjectConfig, Some(Admin)),
            ("PUT", "/bk1/k", "legal-hold", ObjectConfig, Some(Admin)),
            (
                "POST",
                "/bk1/k",
                "select&select-type=2",
                SelectObjectContent,
                Some(Read),
            ),
            ("POST", "/bk1/k", "restore", RestoreObject, Some(Write)),
            ("POST", "/bk1", "", PostObject, Some(Write)),
            // Several sub-resources, or admin-level parameters: `admin`.
            ("GET", "/bk1", "uploads&policy", Unknown, None),
            ("GET", "/bk1", "versions&lifecycle", Unknown, None),
            ("GET", "/bk1", "location&acl", Unknown, None),
            ("PUT", "/bk1/k", "acl&tagging", Unknown, None),
            (
                "PUT",
                "/bk1/k",
                "uploadId=u&partNumber=1&acl",
                Unknown,
                None,
            ),
            ("GET", "/bk1/k", "policy", GetObject, Some(Admin)),
            (
                "PUT",
                "/bk1/k",
                "x-amz-acl=public-read",
                PutObject,
                Some(Admin),
            ),
            ("GET", "/bk1/k", "tagging&acl", Unknown, None),
            (
                "PUT",
                "/bk1/k",
                "X-Amz-Grant-Read=uri",
                PutObject,
                Some(Admin),
            ),
            ("PUT", "/bk1/k", "X-Amz-Acl=private", PutObject, Some(Write)),
            ("GET", "/bk1/k", "torrent", Unknown, None),
            ("PUT", "/bk1/k", "torrent", Unknown, None),
            ("PATCH", "/bk1/k", "", Unknown, None),
            ("POST", "/bk1", "unknownsub", Unknown, None),
            ("POST", "/", "", Unknown, None),
        ]
    };

    fn classified(method: &str, path: &str, query: &str) -> (Operation, Option<Permission>) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let query = crate::s3::uri::parse_query(query).unwrap();
        // `copy` in the table stands for the x-amz-copy-source header.
        let mut headers = HeaderMap::new();
        if query.iter().any(|(k, _)| k == "copy") {
            headers.insert("x-amz-copy-source", "/src/k".parse().unwrap());
        }
        let query: Vec<_> = query.into_iter().filter(|(k, _)| k != "copy").collect();
        let op = classify(&method, Some("gw:8080"), path, &query, &headers, &[])
            .unwrap()
            .operation;
        (op, required(op, &method, &query, &headers))
    }

    #[test]
    fn every_operation_against_every_permission() {
        let sets: Vec<(String, Permissions)> = Permission::ALL
            .iter()
            .map(|p| (p.as_str().to_string(), Permissions::NONE.with(*p)))
            .chain([
                ("data".to_string(), Permissions::DATA),
                ("none".to_string(), Permissions::NONE),
                ("all".to_string(), Permission::ALL.into_iter().collect()),
            ])
            .collect();
        for &(method, path, query, op, needed) in MATRIX {
            let (got_op, got) = classified(method, path, query);
            assert_eq!(got_op, op, "{method} {path}?{query}");
            assert_eq!(got, needed, "{method} {path}?{query}");
            for (name, set) in &sets {
                let allowed = got.is_some_and(|p| set.contains(p));
                let expected = needed.is_some_and(|p| set.contains(p));
                assert_eq!(allowed, expected, "{method} {path}?{query} with {name}");
            }
            // Bucket-level configuration changes never come with data rights.
            if op == Operation::BucketConfig && method != "GET" {
                assert!(!got.is_some_and(|p| Permissions::DATA.contains(p)));
            }
        }
    }

    #[test]
    fn headers_that_change_access_or_retention_need_admin() {
        let method = Method::PUT;
        for (name, value, expected) in [
            ("x-amz-acl", "public-read", Permission::Admin),
            ("x-amz-acl", "authenticated-read", Permission::Admin),
            ("x-amz-acl", "private", Permission::Write),
            ("x-amz-acl", "bucket-owner-full-control", Permission::Write),
            (
                "x-amz-grant-read",
                "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
                Permission::Admin,
            ),
            ("x-amz-object-lock-mode", "COMPLIANCE", Permission::Admin),
            ("x-amz-object-lock-legal-hold", "ON", Permission::Admin),
            ("x-amz-storage-class", "STANDARD_IA", Permission::Write),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            for op in [
                Operation::PutObject,
                Operation::CopyObject,
                Operation::CreateMultipartUpload,
            ] {
                assert_eq!(
                    required(op, &method, &[], &h),
                    Some(expected),
                    "{name}: {value}"
                );
            }
        }
        let mut h = HeaderMap::new();
        h.insert("x-amz-bypass-governance-retention", "true".parse().unwrap());
        assert_eq!(
            required(Operation::DeleteObject, &Method::DELETE, &[], &h),
            Some(Permission::Admin)
        );
        assert_eq!(
            required(
                Operation::DeleteObjects,
                &Method::POST,
                &[("delete".into(), String::new())],
                &h
            ),
            Some(Permission::Admin)
        );
    }

    #[test]
    fn the_matrix_names_every_operation() {
        use Operation::*;
        let all = [
            ListBuckets,
            CreateBucket,
            DeleteBucket,
            HeadBucket,
            ListObjects,
            ListObjectsV2,
            ListObjectVersions,
            ListMultipartUploads,
            DeleteObjects,
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
            GetObjectAttributes,
            ObjectConfig,
            SelectObjectContent,
            RestoreObject,
            PostObject,
            CorsPreflight,
            Unknown,
        ];
        for op in all {
            // A new operation must be added here and to the matrix: this
            // match fails to compile without it.
            match op {
                ListBuckets
                | CreateBucket
                | DeleteBucket
                | HeadBucket
                | ListObjects
                | ListObjectsV2
                | ListObjectVersions
                | ListMultipartUploads
                | DeleteObjects
                | BucketConfig
                | GetObject
                | HeadObject
                | PutObject
                | CopyObject
                | DeleteObject
                | CreateMultipartUpload
                | UploadPart
                | UploadPartCopy
                | CompleteMultipartUpload
                | AbortMultipartUpload
                | ListParts
                | GetObjectAttributes
                | ObjectConfig
                | SelectObjectContent
                | RestoreObject
                | PostObject
                | CorsPreflight
                | Unknown => {}
            }
            assert!(
                MATRIX.iter().any(|row| row.3 == op),
                "{} has no row in the permission matrix",
                op.as_str()
            );
        }
    }
}
