//! A multipart object of a rewrap: its stored parts copied one by one onto
//! a new upload under the new envelope, every step pinned to the ETag the
//! run read; an abandoned upload is aborted.

use super::*;

impl Target<'_> {
    /// A multipart object, part by part with its stored part ranges, every
    /// step pinned to `etag`.
    pub(super) async fn copy_parts(
        &self,
        path: &str,
        source: &str,
        etag: &str,
        stored_len: u64,
        headers: &[(String, String)],
    ) -> Result<Outcome, String> {
        let range = format!("bytes=0-{}", PART_HEADER_LEN - 1);
        let (probe, first) = self
            .request(
                "GET",
                path,
                &[("range", &range), ("if-match", etag)],
                Bytes::new(),
            )
            .await?;
        let status = probe.status.as_u16();
        if status != 206 {
            let what = format!("reading its first part header answered {}", probe.status);
            return match write_answer(status, &first, "") {
                WriteAnswer::Changed => Ok(Outcome::Changed(what)),
                _ => Err(what),
            };
        }
        // Some backends ignore If-Match on GET: the ETag is compared too.
        if header_value(&probe, "etag").is_some_and(|e| e != etag) {
            return Ok(Outcome::Changed("its ETag changed since its HEAD".into()));
        }
        let first_header = PartHeader::decode(&first)
            .filter(|h| h.number == 1)
            .ok_or("its first part header is unreadable")?;
        // CreateMultipartUpload does not copy the source's tags: carry them.
        let (tag_resp, tag_body) = self
            .request("GET", &format!("{path}?tagging"), &[], Bytes::new())
            .await?;
        let tagging = (tag_resp.status.as_u16() == 200)
            .then(|| sealgate_filters::ops::rewrap::tagging_header(&tag_body))
            .flatten();
        let up = &self.upstream;
        let layout = up.part_layout(&self.host, path, &first_header, stored_len, Some(etag));
        let layout = match layout.await {
            Ok(l) => l,
            Err(LayoutError::Changed) => {
                return Ok(Outcome::Changed(
                    "it changed while its part headers were read".into(),
                ))
            }
            Err(e) => return Err(format!("unreadable parts: {e:?}")),
        };
        let ranges = part_ranges(&layout);
        let mut create: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| n != "x-amz-metadata-directive")
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Some(t) = &tagging {
            create.push(("x-amz-tagging", t));
        }
        let (resp, body) = self
            .request("POST", &format!("{path}?uploads"), &create, Bytes::new())
            .await?;
        let upload_id = element_text(&body, "UploadId")
            .filter(|_| resp.status.as_u16() == 200)
            .ok_or_else(|| format!("starting the part copy answered {}", resp.status))?;
        let id = uri::encode(&upload_id);
        let result = async {
            let mut etags = Vec::with_capacity(ranges.len());
            for (i, (start, end)) in ranges.iter().enumerate() {
                let range = format!("bytes={start}-{end}");
                let h = [
                    ("x-amz-copy-source", source),
                    ("x-amz-copy-source-range", range.as_str()),
                    ("x-amz-copy-source-if-match", etag),
                ];
                let (resp, body) = self
                    .request(
                        "PUT",
                        &format!("{path}?partNumber={}&uploadId={id}", i + 1),
                        &h,
                        Bytes::new(),
                    )
                    .await?;
                let what = format!("copying part {}", i + 1);
                if let Some(why) = pinned_answer(&what, &resp, &body, "CopyPartResult")? {
                    return Ok(Outcome::Changed(why));
                }
                let part_etag = element_text(&body, "ETag")
                    .ok_or_else(|| format!("{what} answered no ETag"))?;
                etags.push(part_etag);
            }
            // Backends that ignore If-Match at CompleteMultipartUpload still
            // see a write made before this HEAD.
            let (head, _) = self.request("HEAD", path, &[], Bytes::new()).await?;
            match head.status.as_u16() {
                200 if header_value(&head, "etag") == Some(etag) => {}
                200 => {
                    return Ok(Outcome::Changed(
                        "its ETag changed while its parts were copied".into(),
                    ))
                }
                404 => {
                    return Ok(Outcome::Changed(
                        "it was deleted while its parts were copied".into(),
                    ))
                }
                _ => return Err(format!("HEAD before completing answered {}", head.status)),
            }
            let (resp, body) = self
                .request(
                    "POST",
                    &format!("{path}?uploadId={id}"),
                    &[("if-match", etag)],
                    Bytes::from(complete_body(&etags)),
                )
                .await?;
            let root = "CompleteMultipartUploadResult";
            Ok(
                match pinned_answer("completing the part copy", &resp, &body, root)? {
                    None => Outcome::Moved,
                    Some(why) => Outcome::Changed(why),
                },
            )
        }
        .await;
        if !matches!(result, Ok(Outcome::Moved)) {
            self.abort(path, &upload_id).await;
        }
        result
    }

    /// Aborts an abandoned part copy; one the backend no longer has (it
    /// answers 404) is gone already.
    async fn abort(&self, path: &str, upload_id: &str) {
        let id = uri::encode(upload_id);
        let answer = self
            .request(
                "DELETE",
                &format!("{path}?uploadId={id}"),
                &[],
                Bytes::new(),
            )
            .await;
        let status = match answer {
            Ok((resp, _)) if resp.status.is_success() || resp.status.as_u16() == 404 => return,
            Ok((resp, _)) => resp.status.to_string(),
            Err(e) => e,
        };
        eprintln!(
            "aborting the part copy {upload_id} of {path} answered {status}: abort it by hand"
        );
    }
}
