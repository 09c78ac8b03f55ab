//! Token stage: an upload-id token is trusted only once the key provider
//! unwrapped its data key for the bucket's policy, the key matched the
//! token's commitment, and the token's MAC (under a key derived from that
//! data key) matched this bucket and object key. A forged token, one moved
//! to another object, or one from an earlier version without a MAC is
//! answered as S3 answers an unknown upload: `NoSuchUpload`.

use sealgate_envelope::{Backend, ObjectKey};
use sealgate_filters::keys::KeyError;
use sealgate_filters::policy::BucketEncryption;
use sealgate_filters::s3::multipart::upload_id::{TokenKey, UploadToken};
use sealgate_filters::s3::{S3Error, S3ErrorCode};
use zeroize::Zeroizing;

use super::route::Route;
use super::Gateway;
use crate::keys::key_error;

/// A token that passed every check: its data key and context hash.
pub struct OpenedToken {
    pub dek: Zeroizing<[u8; sealgate_filters::keys::DEK_LEN]>,
    pub ctx_hash: [u8; 32],
}

fn no_such_upload() -> S3Error {
    S3Error::new(
        S3ErrorCode::NoSuchUpload,
        "the specified upload does not exist",
    )
}

impl Gateway {
    /// Unwraps and checks `token` for the request's bucket and object key.
    pub(super) async fn open_token(
        &self,
        live: &crate::live::Live,
        token: &UploadToken,
        enc: Option<&BucketEncryption>,
        route: &Route,
        object: Option<&str>,
    ) -> Result<OpenedToken, S3Error> {
        // A bucket that no longer encrypts, or encrypts under another
        // provider, has no upload this token could belong to.
        let enc = enc
            .filter(|e| e.provider == token.provider)
            .ok_or_else(no_such_upload)?;
        let (bucket, object) = route
            .bucket
            .as_deref()
            .zip(object)
            .ok_or_else(no_such_upload)?;
        let provider = live.provider(&enc.provider)?;
        // Only a key this bucket writes with (or still reads after a
        // rotation) can have sealed one of its uploads: any other key id a
        // forged token names never reaches the provider (the bucket's own
        // configured ids are resolved, as for reads, not the token's).
        let bound = self
            .key_bound(
                live,
                enc,
                provider.default_key_id(),
                &token.provider,
                &token.key_id,
                &enc.write_context,
            )
            .await?;
        if bound.is_err() {
            self.metrics
                .binding_refusals_total
                .with_label_values(&["token"])
                .inc();
            return Err(no_such_upload());
        }
        // Uploads begun before objects named their bucket in the context
        // were sealed under the bucket's context alone: tried second.
        let mut opened = None;
        for context in [&enc.write_context, &enc.context] {
            let dek = match provider
                .decrypt_data_key(&token.key_id, &token.wrapped_dek, context)
                .await
            {
                Ok(dek) => dek,
                // The wrapped key does not open for this bucket's key and
                // context: no upload of this bucket has that token.
                Err(KeyError::Denied(_) | KeyError::Invalid(_)) => continue,
                // The provider's state (unavailable, throttled, a disabled
                // key): the token may well be genuine.
                Err(other) => return Err(key_error(other)),
            };
            let ctx_hash = sealgate_envelope::context_hash(
                context.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            if ObjectKey::derive_checked(
                &dek,
                &token.salt,
                &ctx_hash,
                &token.commitment,
                Backend::default_backend(),
            )
            .is_ok()
            {
                opened = Some((dek, ctx_hash));
                break;
            }
        }
        let (dek, ctx_hash) = opened.ok_or_else(no_such_upload)?;
        if !token.verify(&TokenKey::derive(dek.as_ref(), &token.salt), bucket, object) {
            self.metrics
                .binding_refusals_total
                .with_label_values(&["token"])
                .inc();
            return Err(no_such_upload());
        }
        Ok(OpenedToken { dek, ctx_hash })
    }
}
