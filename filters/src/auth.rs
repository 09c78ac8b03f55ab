//! Who the client is (SigV4 or SigV2 against the configured client keys) and whether
//! it may use the bucket it names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sealgate_config::{BucketGrant, ClientCredential, Permission, Permissions};
use zeroize::Zeroizing;

use crate::s3::auth::sigv2;
use crate::s3::auth::sigv4::{self, RequestParts, Verified};
use crate::s3::responses::error::{S3Error, S3ErrorCode};

/// The configured client keys, by access key id.
pub struct Clients {
    by_id: HashMap<String, Client>,
    max_skew_secs: i64,
    /// Signature Version 2 accepted (`auth.signature_v2`).
    signature_v2: bool,
}

/// One configured client and the signing key it used last.
struct Client {
    credential: ClientCredential,
    grants: Arc<[BucketGrant]>,
    /// The derived SigV4 key of the last (date, region) this client signed
    /// for: a client signs with the same one all day, so the four HMACs of
    /// the derivation run once a day instead of once a request.
    last_key: Mutex<Option<ScopeKey>>,
}

/// A derived signing key and the scope it belongs to (zeroized on drop).
struct ScopeKey {
    date: String,
    region: String,
    key: Zeroizing<[u8; 32]>,
}

impl Client {
    fn identity(&self, verified: Verified) -> Identity {
        Identity {
            access_key_id: self.credential.access_key_id.clone(),
            verified,
            grants: self.grants.clone(),
        }
    }

    /// The signing key for (`date`, `region`), derived only when the scope
    /// differs from the last request's.
    fn signing_key(&self, date: &str, region: &str) -> Zeroizing<[u8; 32]> {
        let mut last = self.last_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = last
            .as_ref()
            .filter(|k| k.date == date && k.region == region)
        {
            return k.key.clone();
        }
        let key = sigv4::signing_key(
            self.credential.secret_access_key.expose(),
            date,
            region,
            "s3",
        );
        *last = Some(ScopeKey {
            date: date.to_string(),
            region: region.to_string(),
            key: key.clone(),
        });
        key
    }
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Identity {
    pub access_key_id: String,
    pub verified: Verified,
    grants: Arc<[BucketGrant]>,
}

impl Identity {
    /// What this client may do in `bucket` (the name rules follow: the
    /// alias of an aliased bucket): the union of every matching grant.
    pub fn permissions(&self, bucket: &str) -> Permissions {
        permissions_in(&self.grants, bucket)
    }

    /// The client's grants (shared, cheap to keep for a response).
    pub fn grants(&self) -> Arc<[BucketGrant]> {
        self.grants.clone()
    }

    /// Refuses with S3's AccessDenied unless the client holds `needed` in
    /// `bucket`; `None` (a request no grant covers) is always refused.
    pub fn authorize(&self, bucket: &str, needed: Option<Permission>) -> Result<(), S3Error> {
        if needed.is_some_and(|p| self.permissions(bucket).contains(p)) {
            return Ok(());
        }
        let what = needed.map_or("make this request", |p| match p {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Delete => "delete",
            Permission::Admin => "administer",
        });
        Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            format!(
                "access key {} may not {what} in bucket {bucket}",
                self.access_key_id
            ),
        ))
    }
}

/// The union of the permissions every grant matching `bucket` gives.
pub fn permissions_in(grants: &[BucketGrant], bucket: &str) -> Permissions {
    grants
        .iter()
        .filter(|g| g.pattern.matches(bucket))
        .fold(Permissions::NONE, |acc, g| acc.union(g.permissions))
}

impl Clients {
    pub fn new(
        clients: &[ClientCredential],
        max_skew: std::time::Duration,
        signature_v2: bool,
    ) -> Self {
        Self {
            by_id: clients
                .iter()
                .map(|c| {
                    let client = Client {
                        credential: c.clone(),
                        grants: c.buckets.clone().into(),
                        last_key: Mutex::new(None),
                    };
                    (c.access_key_id.clone(), client)
                })
                .collect(),
            max_skew_secs: max_skew.as_secs() as i64,
            signature_v2,
        }
    }

    /// Authenticates a request; anonymous requests are refused (the gateway
    /// never serves objects without credentials). `virtual_bucket` is the
    /// bucket a virtual-hosted request names in its Host (Signature
    /// Version 2 signs it). `now` is Unix seconds.
    pub fn authenticate(
        &self,
        req: &RequestParts,
        virtual_bucket: Option<&str>,
        now: i64,
    ) -> Result<Identity, S3Error> {
        // With V2 off, its requests reach the V4 parser, which refuses them.
        if self.signature_v2 {
            if let Some(auth) = sigv2::parse(req.query, req.headers)? {
                return self.authenticate_v2(&auth, req, virtual_bucket, now);
            }
        }
        let auth = sigv4::parse(req.query, req.headers)?.ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::AccessDenied,
                "anonymous requests are not allowed; sign the request",
            )
        })?;
        let client = self.client(&auth.access_key_id)?;
        let verified = sigv4::verify_with(
            &auth,
            req,
            |date, region| client.signing_key(date, region),
            now,
            self.max_skew_secs,
        )?;
        Ok(client.identity(verified))
    }
}

impl Clients {
    /// True when some client holds any permission in `bucket`: a bucket
    /// no client may use answers no browser either.
    pub fn any_grant(&self, bucket: &str) -> bool {
        self.by_id
            .values()
            .any(|c| !permissions_in(&c.grants, bucket).is_empty())
    }

    fn client(&self, access_key_id: &str) -> Result<&Client, S3Error> {
        self.by_id.get(access_key_id).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidAccessKeyId,
                "the access key id you provided does not exist in our records",
            )
        })
    }

    fn refuse_v2(&self) -> Result<(), S3Error> {
        if self.signature_v2 {
            return Ok(());
        }
        Err(S3Error::new(
            S3ErrorCode::InvalidRequest,
            "Signature Version 2 is turned off here (auth.signature_v2); use Signature Version 4",
        ))
    }

    /// A Signature Version 2 request: the same key, the same grants.
    fn authenticate_v2(
        &self,
        auth: &sigv2::Authorization,
        req: &RequestParts,
        virtual_bucket: Option<&str>,
        now: i64,
    ) -> Result<Identity, S3Error> {
        self.refuse_v2()?;
        let client = self.client(&auth.access_key_id)?;
        let payload = sigv2::verify(
            auth,
            req,
            &sigv2::Resource { virtual_bucket },
            client.credential.secret_access_key.expose(),
            now,
            self.max_skew_secs,
        )?;
        Ok(client.identity(Verified {
            access_key_id: auth.access_key_id.clone(),
            payload,
            signature: String::new(),
            amz_date: String::new(),
            scope: String::new(),
            signing_key: Zeroizing::new([0; 32]),
            signature_v2: true,
        }))
    }

    /// A browser POST upload signed with Signature Version 2: the base64
    /// HMAC-SHA1 of the base64 policy under the client's secret.
    fn authenticate_post_v2(&self, fields: &[(String, String)]) -> Result<Identity, S3Error> {
        self.refuse_v2()?;
        let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let missing = |n: &str| {
            S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("a POST upload needs the form field {n}"),
            )
        };
        let key_id = field("awsaccesskeyid").ok_or_else(|| missing("AWSAccessKeyId"))?;
        let signature = field("signature").ok_or_else(|| missing("signature"))?;
        let policy = field("policy").ok_or_else(|| missing("policy"))?;
        let client = self.client(key_id)?;
        sigv2::verify_post(
            policy,
            signature,
            client.credential.secret_access_key.expose(),
        )?;
        Ok(client.identity(Verified {
            access_key_id: key_id.to_string(),
            payload: sigv4::PayloadHash::Unsigned,
            signature: String::new(),
            amz_date: String::new(),
            scope: String::new(),
            signing_key: Zeroizing::new([0; 32]),
            signature_v2: true,
        }))
    }

    /// Authenticates a browser POST upload by its form fields (names
    /// lower-cased): SigV4's POST signature, an HMAC of the base64 policy
    /// under the client's signing key for the credential's date and region.
    /// The policy's own conditions are checked by `post_policy`.
    pub fn authenticate_post(&self, fields: &[(String, String)]) -> Result<Identity, S3Error> {
        let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let missing = |n: &str| {
            S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("a POST upload needs the form field {n}"),
            )
        };
        if field("x-amz-algorithm").is_none() && field("awsaccesskeyid").is_some() {
            return self.authenticate_post_v2(fields);
        }
        if field("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                "a POST upload is signed with x-amz-algorithm AWS4-HMAC-SHA256",
            ));
        }
        let credential = field("x-amz-credential").ok_or_else(|| missing("x-amz-credential"))?;
        let signature = field("x-amz-signature").ok_or_else(|| missing("x-amz-signature"))?;
        let policy = field("policy").ok_or_else(|| missing("policy"))?;
        let amz_date = field("x-amz-date").ok_or_else(|| missing("x-amz-date"))?;
        let parts: Vec<&str> = credential.split('/').collect();
        let [key_id, date, region, "s3", "aws4_request"] = parts[..] else {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                "x-amz-credential must be <key>/<yyyymmdd>/<region>/s3/aws4_request",
            ));
        };
        if !amz_date.starts_with(date) {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                "x-amz-date does not fall on the credential's date",
            ));
        }
        let client = self.by_id.get(key_id).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidAccessKeyId,
                "the access key id you provided does not exist in our records",
            )
        })?;
        let key = client.signing_key(date, region);
        let expected = sigv4::hex32(&sigv4::hmac(key.as_ref(), policy.as_bytes()));
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            signature.as_bytes(),
        )) {
            return Err(S3Error::new(
                S3ErrorCode::SignatureDoesNotMatch,
                "the POST policy's signature does not match",
            ));
        }
        Ok(Identity {
            access_key_id: client.credential.access_key_id.clone(),
            verified: Verified {
                access_key_id: key_id.to_string(),
                payload: sigv4::PayloadHash::Unsigned,
                signature: signature.to_string(),
                amz_date: amz_date.to_string(),
                scope: format!("{date}/{region}/s3/aws4_request"),
                signing_key: key,
                signature_v2: false,
            },
            grants: client.grants.clone(),
        })
    }
}

/// Splits an `x-amz-copy-source` value (`/bucket/key`, `bucket/key`, with an
/// optional `?versionId=`) into bucket and the rest, still encoded.
pub fn split_copy_source(value: &str) -> Option<(&str, &str)> {
    let v = value.strip_prefix('/').unwrap_or(value);
    let (bucket, rest) = v.split_once('/')?;
    (!bucket.is_empty() && !rest.is_empty()).then_some((bucket, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use sealgate_config::{Glob, Secret};

    fn clients() -> Clients {
        Clients::new(
            &[ClientCredential {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: Secret::new(
                    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_vec(),
                ),
                buckets: vec![
                    BucketGrant::data(Glob::new("example*").unwrap()),
                    BucketGrant {
                        pattern: Glob::new("examplebucket").unwrap(),
                        permissions: Permissions::NONE.with(Permission::Admin),
                    },
                    BucketGrant {
                        pattern: Glob::new("readonly").unwrap(),
                        permissions: Permissions::NONE.with(Permission::Read),
                    },
                ],
                rate_limit: None,
            }],
            std::time::Duration::from_secs(900),
            true,
        )
    }

    fn presigned(query: &str) -> Result<Identity, S3Error> {
        let q = crate::s3::uri::parse_query(query).unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        clients().authenticate(
            &RequestParts {
                method: "GET",
                raw_path: "/test.txt",
                query: &q,
                headers: &h,
            },
            Some("examplebucket"),
            1_369_353_600,
        )
    }

    const Q: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn known_key_authenticates_and_is_authorised_by_pattern() {
        let id = presigned(Q).unwrap();
        for p in Permission::ALL {
            // Grants add up: data from the pattern, admin from the name.
            assert!(id.authorize("examplebucket", Some(p)).is_ok(), "{p:?}");
            assert_eq!(
                id.authorize("other", Some(p)).unwrap_err().code,
                S3ErrorCode::AccessDenied
            );
        }
        assert!(id.authorize("example-two", Some(Permission::Write)).is_ok());
        assert!(id
            .authorize("example-two", Some(Permission::Admin))
            .is_err());
        assert!(id.authorize("readonly", Some(Permission::Read)).is_ok());
        assert!(id.authorize("readonly", Some(Permission::Write)).is_err());
        // A request no grant covers is refused even with every permission.
        assert!(id.authorize("examplebucket", None).is_err());
    }

    #[test]
    fn kept_signing_keys_follow_the_scope() {
        let clients = clients();
        let client = &clients.by_id["AKIAIOSFODNN7EXAMPLE"];
        let secret = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for (date, region) in [
            ("20130524", "us-east-1"),
            ("20130524", "us-east-1"),
            ("20130525", "us-east-1"),
            ("20130525", "eu-west-1"),
            ("20130524", "us-east-1"),
        ] {
            assert_eq!(
                client.signing_key(date, region),
                sigv4::signing_key(secret, date, region, "s3"),
                "{date} {region}"
            );
        }
    }

    #[test]
    fn unknown_key_and_anonymous() {
        let e = presigned(&Q.replace("AKIAIOSFODNN7EXAMPLE", "AKIDUNKNOWN")).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidAccessKeyId);
        let e = presigned("").unwrap_err();
        assert_eq!(e.code, S3ErrorCode::AccessDenied);
    }

    #[test]
    fn copy_source_split() {
        assert_eq!(split_copy_source("/b/k/x"), Some(("b", "k/x")));
        assert_eq!(
            split_copy_source("b/k?versionId=1"),
            Some(("b", "k?versionId=1"))
        );
        assert_eq!(split_copy_source("/b"), None);
    }
}
