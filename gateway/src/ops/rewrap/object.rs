//! One object of a rewrap: checked against the bucket's policy before its
//! data key is touched, then re-wrapped and copied onto itself.

use super::*;

impl Target<'_> {
    /// Moves one object, or says why not.
    pub(super) async fn one(&self, key: &str, dry_run: bool) -> Result<Outcome, String> {
        let path = format!("{}/{}", self.bucket_path, encode_key(key));
        let (head, _) = self.request("HEAD", &path, &[], Bytes::new()).await?;
        if head.status.as_u16() != 200 {
            return Err(format!("HEAD answered {}", head.status));
        }
        let mut stored: Vec<(&str, &str)> = Vec::with_capacity(head.headers.len());
        for (n, v) in head.headers.iter() {
            match v.to_str() {
                Ok(v) => stored.push((n.as_str(), v)),
                // A copy that replaces metadata would drop it silently.
                Err(_) if n.as_str().starts_with("x-amz-meta-") => {
                    return Err(format!("its metadata {n} is not ASCII; move it by hand"))
                }
                Err(_) => {}
            }
        }
        if stored.iter().any(|(n, _)| *n == "x-amz-missing-meta") {
            return Err("the backend reports metadata it could not return".into());
        }
        let get = |name: &str| stored.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let Some(meta) = EnvelopeMeta::from_headers(get).map_err(|e| e.to_string())? else {
            return Ok(Outcome::Plaintext);
        };
        // As a GET in this bucket would: an object it refuses (moved in at
        // the storage level) is neither unwrapped nor written.
        self.binding
            .check(
                &meta.provider,
                &meta.key_id,
                &self.bucket_provider.binding_key_id(&meta.key_id),
                &meta.context,
            )
            .map_err(|reason| refusal(reason).to_string())?;
        let target = self
            .providers
            .get(self.provider_name)
            .ok_or("the target provider is not configured")?;
        // Under the target key: the very id, or (a target that names no
        // version of a versioned key) any version of it.
        let under_target = meta.key_id == self.canonical
            || (target.binding_key_id(&self.canonical) == self.canonical
                && target.binding_key_id(&meta.key_id) == self.canonical);
        if meta.provider == self.provider_name
            && under_target
            && target.is_current_wrap(&meta.wrapped_dek)
        {
            return Ok(Outcome::Already);
        }
        if dry_run {
            return Ok(Outcome::Moved);
        }
        let etag = get("etag").ok_or("the object has no ETag")?.to_string();
        let stored_len: u64 = get("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or("the object has no length")?;
        let new_meta = self.rewrapped(&meta).await?;
        let envelope = new_meta.to_headers().map_err(|e| e.to_string())?;
        let headers = copy_headers(stored.iter().copied(), &envelope);
        let source = format!("/{}/{}", self.real, encode_key(key));
        if meta.multipart {
            return self
                .copy_parts(&path, &source, &etag, stored_len, &headers)
                .await;
        }
        let mut h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        h.push(("x-amz-copy-source", &source));
        h.push(("x-amz-copy-source-if-match", &etag));
        let (resp, body) = self.request("PUT", &path, &h, Bytes::new()).await?;
        Ok(
            match pinned_answer("the copy", &resp, &body, "CopyObjectResult")? {
                None => Outcome::Moved,
                Some(why) => Outcome::Changed(why),
            },
        )
    }

    /// The envelope with the data key wrapped under the target key; the
    /// data key is checked against the commitment first.
    async fn rewrapped(&self, meta: &EnvelopeMeta) -> Result<EnvelopeMeta, String> {
        let from = self
            .providers
            .get(&meta.provider)
            .ok_or_else(|| format!("the object's provider {} is not configured", meta.provider))?;
        let (dek, _) = crate::ops::unwrap_checked(&**from, meta).await?;
        let to: &Arc<dyn KeyProvider> = self
            .providers
            .get(self.provider_name)
            .ok_or("the target provider is not configured")?;
        let wrapped = to
            .wrap_data_key(&self.key_id, &dek, &meta.context)
            .await
            .map_err(|e| format!("wrapping under {}: {e}", self.key_id))?;
        Ok(EnvelopeMeta {
            provider: self.provider_name.to_string(),
            key_id: wrapped.key_id,
            wrapped_dek: wrapped.wrapped,
            ..meta.clone()
        })
    }
}
