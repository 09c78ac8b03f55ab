//! The gateway's own exchanges with the backend (probes, part lists,
//! copies it makes, the `rewrap` tool): signed with its credentials over
//! pooled connections.

use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;

use super::{UpstreamError, UpstreamTarget, MAX_PROBE_BODY, OWN_EXCHANGE_IO_TIMEOUT};

/// A request of the gateway's own, under way (see [`UpstreamTarget::request`]).
pub type Exchange<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<(ResponseHeader, Bytes), UpstreamError>>
            + Send
            + 'a,
    >,
>;

impl UpstreamTarget {
    /// GETs stored bytes `start..=end` of the object at `host` +
    /// `path_and_query`, signed with the gateway's credentials, over a pooled
    /// connection. Returns the response header and up to MAX_PROBE_BODY bytes.
    pub async fn probe(
        &self,
        host: &str,
        path_and_query: &str,
        start: u64,
        end: u64,
    ) -> Result<(ResponseHeader, Bytes), UpstreamError> {
        self.get(host, path_and_query, Some((start, end)), MAX_PROBE_BODY)
            .await
    }

    /// A GET of the gateway's own (a probe, a ListParts page), signed with
    /// its credentials, the body read whole up to `max_body` bytes.
    pub async fn get(
        &self,
        host: &str,
        path_and_query: &str,
        range: Option<(u64, u64)>,
        max_body: usize,
    ) -> Result<(ResponseHeader, Bytes), UpstreamError> {
        let range = range.map(|(start, end)| format!("bytes={start}-{end}"));
        let headers: Vec<(&str, &str)> = range.iter().map(|r| ("range", r.as_str())).collect();
        self.request(
            "GET",
            host,
            path_and_query,
            &headers,
            Bytes::new(),
            max_body,
        )
        .await
    }

    /// A connection for an exchange the gateway streams itself (a part
    /// copy): the caller writes the signed header and the body, and reads
    /// the answer. Give it back with [`Self::release`] only once the
    /// exchange completed; a session dropped midway is closed.
    pub async fn session(&self) -> Result<HttpSession, UpstreamError> {
        // Boxed: the connector's future is ~9 KB, and every future that
        // awaits this one inline would carry (and move) it, even on the
        // requests that never make an exchange of their own.
        let (mut session, _) = Box::pin(self.connector.get_http_session(&*self.peer()))
            .await
            .map_err(|e| UpstreamError::Probe(e.etype().as_str().to_string()))?;
        session.set_read_timeout(Some(OWN_EXCHANGE_IO_TIMEOUT));
        session.set_write_timeout(Some(OWN_EXCHANGE_IO_TIMEOUT));
        Ok(session)
    }

    /// Returns a completed session to the pool.
    pub async fn release(&self, session: HttpSession) {
        let peer = self.peer_of(&session);
        // Boxed for the same reason as the connector's future in `session`.
        Box::pin(self.connector.release_http_session(
            session,
            &peer,
            self.peer.options.idle_timeout,
        ))
        .await;
    }

    /// The pool a session goes back to: the address it is connected to
    /// (the endpoint's current one may have changed since).
    fn peer_of(&self, session: &HttpSession) -> HttpPeer {
        let mut peer = *self.peer();
        if let Some(addr) = session.server_addr() {
            peer._address = addr.clone();
        }
        peer
    }

    /// A request of the gateway's own (probes, part lists, the `rewrap`
    /// tool's copies), signed with its credentials over a pooled
    /// connection, the response body read whole up to `max_body` bytes.
    ///
    /// Boxed: the exchange's state (a session, a request header) would
    /// otherwise be carried inline by every caller's future, and moved with
    /// it on requests that make no exchange of their own.
    pub fn request<'a>(
        &'a self,
        method: &'a str,
        host: &'a str,
        path_and_query: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: Bytes,
        max_body: usize,
    ) -> Exchange<'a> {
        let payload_hash = if body.is_empty() {
            sealgate_filters::s3::auth::sigv4::EMPTY_SHA256.to_string()
        } else {
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
        };
        self.request_hashed(
            method,
            host,
            path_and_query,
            headers,
            body,
            payload_hash,
            max_body,
        )
    }

    /// [`Self::request`] with the `x-amz-content-sha256` given (an
    /// aws-chunked body's `STREAMING-…`).
    #[allow(clippy::too_many_arguments)]
    pub fn request_hashed<'a>(
        &'a self,
        method: &'a str,
        host: &'a str,
        path_and_query: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: Bytes,
        payload_hash: impl Into<String>,
        max_body: usize,
    ) -> Exchange<'a> {
        let payload_hash: String = payload_hash.into();
        Box::pin(async move {
            let io = |e: Box<pingora::Error>| UpstreamError::Probe(e.etype().as_str().to_string());
            let mut req =
                RequestHeader::build(method, path_and_query.as_bytes(), None).map_err(io)?;
            req.insert_header(http::header::HOST, host).map_err(io)?;
            for (name, value) in headers {
                req.append_header(name.to_string(), *value).map_err(io)?;
            }
            if !body.is_empty() || matches!(method, "PUT" | "POST") {
                req.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())
                    .map_err(io)?;
            }
            self.sign(&mut req, &payload_hash).await?;
            let mut session = self.session().await?;
            session
                .write_request_header(Box::new(req))
                .await
                .map_err(io)?;
            if !body.is_empty() {
                session.write_request_body(body, true).await.map_err(io)?;
            }
            session.finish_request_body().await.map_err(io)?;
            session.read_response_header().await.map_err(io)?;
            let header = session
                .response_header()
                .cloned()
                .ok_or_else(|| UpstreamError::Probe("no response header".into()))?;
            let mut body = BytesMut::new();
            if method != "HEAD" {
                while let Some(chunk) = session.read_response_body().await.map_err(io)? {
                    body.extend_from_slice(&chunk);
                    if body.len() > max_body {
                        return Err(UpstreamError::Probe("response body too large".into()));
                    }
                }
            }
            self.release(session).await;
            Ok((header, body.freeze()))
        })
    }
}
