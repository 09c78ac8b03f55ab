//! S3 errors and the one place that renders them as S3's XML error document.

use http::StatusCode;

/// The S3 error codes sealgate answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ErrorCode {
    AccessDenied,
    /// A CORS preflight no rule allows (S3's `CORSResponse` refusals).
    AccessForbidden,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    /// A CORS preflight without its `Origin` or with an unknown method.
    BadRequest,
    EntityTooLarge,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidPart,
    InvalidPartOrder,
    /// `partNumber` beyond the object's parts.
    InvalidPartNumber,
    InvalidRange,
    InvalidRequest,
    InvalidURI,
    /// An object key over 1,024 bytes.
    KeyTooLongError,
    /// The KMS key is disabled (S3's answer for SSE-KMS).
    KmsDisabled,
    /// The KMS key is in a state that does not allow the operation (pending deletion, ...).
    KmsInvalidState,
    /// The KMS key does not exist.
    KmsNotFound,
    MalformedXML,
    /// A browser POST upload whose form is not valid.
    MalformedPOSTRequest,
    /// A request XML document longer than the gateway reads.
    MaxMessageLengthExceeded,
    /// A POST form's fields before its file longer than the gateway reads.
    MaxPostPreDataLengthExceededError,
    /// A POST form without exactly one file.
    IncorrectNumberOfFilesInPostRequest,
    /// A POST policy that does not parse.
    InvalidPolicyDocument,
    /// A POST that is not `multipart/form-data`.
    RequestIsNotMultiPartContent,
    /// Smaller than the POST policy's content-length-range allows.
    EntityTooSmall,
    MethodNotAllowed,
    MissingContentLength,
    NoSuchKey,
    NoSuchUpload,
    NotImplemented,
    PreconditionFailed,
    /// Another conditional write to the same key was under way (S3's 409).
    ConditionalRequestConflict,
    RequestTimeTooSkewed,
    /// The client sent too slowly.
    RequestTimeout,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    /// Throttled (by the key provider): retry with backoff.
    SlowDown,
    XAmzContentSHA256Mismatch,
}

impl S3ErrorCode {
    /// The code as S3 spells it (also a closed metric label set).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "AccessDenied",
            Self::AccessForbidden => "AccessForbidden",
            Self::AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            Self::AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            Self::BadDigest => "BadDigest",
            Self::BadRequest => "BadRequest",
            Self::EntityTooLarge => "EntityTooLarge",
            Self::IncompleteBody => "IncompleteBody",
            Self::InternalError => "InternalError",
            Self::InvalidAccessKeyId => "InvalidAccessKeyId",
            Self::InvalidArgument => "InvalidArgument",
            Self::InvalidBucketName => "InvalidBucketName",
            Self::InvalidDigest => "InvalidDigest",
            Self::InvalidPart => "InvalidPart",
            Self::InvalidPartOrder => "InvalidPartOrder",
            Self::InvalidPartNumber => "InvalidPartNumber",
            Self::InvalidRange => "InvalidRange",
            Self::InvalidRequest => "InvalidRequest",
            Self::InvalidURI => "InvalidURI",
            Self::KeyTooLongError => "KeyTooLongError",
            Self::KmsDisabled => "KMS.DisabledException",
            Self::KmsInvalidState => "KMS.KMSInvalidStateException",
            Self::KmsNotFound => "KMS.NotFoundException",
            Self::MalformedXML => "MalformedXML",
            Self::MalformedPOSTRequest => "MalformedPOSTRequest",
            Self::MaxMessageLengthExceeded => "MaxMessageLengthExceeded",
            Self::MaxPostPreDataLengthExceededError => "MaxPostPreDataLengthExceededError",
            Self::IncorrectNumberOfFilesInPostRequest => "IncorrectNumberOfFilesInPostRequest",
            Self::InvalidPolicyDocument => "InvalidPolicyDocument",
            Self::RequestIsNotMultiPartContent => "RequestIsNotMultiPartContent",
            Self::EntityTooSmall => "EntityTooSmall",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::MissingContentLength => "MissingContentLength",
            Self::NoSuchKey => "NoSuchKey",
            Self::NoSuchUpload => "NoSuchUpload",
            Self::NotImplemented => "NotImplemented",
            Self::PreconditionFailed => "PreconditionFailed",
            Self::ConditionalRequestConflict => "ConditionalRequestConflict",
            Self::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Self::RequestTimeout => "RequestTimeout",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::SlowDown => "SlowDown",
            Self::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// The HTTP status S3 uses for the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::AccessDenied
            | Self::AccessForbidden
            | Self::InvalidAccessKeyId
            | Self::RequestTimeTooSkewed
            | Self::SignatureDoesNotMatch => StatusCode::FORBIDDEN,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NoSuchUpload | Self::NoSuchKey => StatusCode::NOT_FOUND,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::ConditionalRequestConflict => StatusCode::CONFLICT,
            Self::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::ServiceUnavailable | Self::SlowDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingContentLength => StatusCode::LENGTH_REQUIRED,
            Self::InvalidRange | Self::InvalidPartNumber => StatusCode::RANGE_NOT_SATISFIABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answered to the client. The message is for humans and never
/// carries secrets, keys or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct S3Error {
    pub code: S3ErrorCode,
    pub message: String,
}

impl S3Error {
    pub fn new(code: S3ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// S3's error document. `resource` is the request path; `request_id` is ours.
    pub fn to_xml(&self, resource: &str, request_id: &str) -> String {
        let (resource, message) = (clip(resource), clip(&self.message));
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId></Error>",
            self.code.as_str(),
            xml_escape(message),
            xml_escape(resource),
            xml_escape(request_id)
        )
    }
}

/// Longest client-influenced text (the path, a message naming a key) an
/// error document carries: every error then fits a socket buffer, so a
/// client that never reads cannot hold the write of one (a 64 KiB path of
/// `&` would otherwise escape to 320 KiB).
const MAX_ERROR_TEXT: usize = 1024;

/// `s` cut to [`MAX_ERROR_TEXT`] bytes at a character boundary.
fn clip(s: &str) -> &str {
    if s.len() <= MAX_ERROR_TEXT {
        return s;
    }
    let mut end = MAX_ERROR_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Escapes text for XML element content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code, for the table check: the match below fails to compile
    /// when a code is added without it.
    const ALL: &[S3ErrorCode] = &[
        S3ErrorCode::AccessDenied,
        S3ErrorCode::AccessForbidden,
        S3ErrorCode::AuthorizationHeaderMalformed,
        S3ErrorCode::AuthorizationQueryParametersError,
        S3ErrorCode::BadDigest,
        S3ErrorCode::BadRequest,
        S3ErrorCode::EntityTooLarge,
        S3ErrorCode::IncompleteBody,
        S3ErrorCode::InternalError,
        S3ErrorCode::InvalidAccessKeyId,
        S3ErrorCode::InvalidArgument,
        S3ErrorCode::InvalidBucketName,
        S3ErrorCode::InvalidDigest,
        S3ErrorCode::InvalidPart,
        S3ErrorCode::InvalidPartOrder,
        S3ErrorCode::InvalidPartNumber,
        S3ErrorCode::InvalidRange,
        S3ErrorCode::InvalidRequest,
        S3ErrorCode::InvalidURI,
        S3ErrorCode::KeyTooLongError,
        S3ErrorCode::KmsDisabled,
        S3ErrorCode::KmsInvalidState,
        S3ErrorCode::KmsNotFound,
        S3ErrorCode::MalformedXML,
        S3ErrorCode::MalformedPOSTRequest,
        S3ErrorCode::MaxMessageLengthExceeded,
        S3ErrorCode::MaxPostPreDataLengthExceededError,
        S3ErrorCode::IncorrectNumberOfFilesInPostRequest,
        S3ErrorCode::InvalidPolicyDocument,
        S3ErrorCode::RequestIsNotMultiPartContent,
        S3ErrorCode::EntityTooSmall,
        S3ErrorCode::MethodNotAllowed,
        S3ErrorCode::MissingContentLength,
        S3ErrorCode::NoSuchKey,
        S3ErrorCode::NoSuchUpload,
        S3ErrorCode::NotImplemented,
        S3ErrorCode::PreconditionFailed,
        S3ErrorCode::ConditionalRequestConflict,
        S3ErrorCode::RequestTimeTooSkewed,
        S3ErrorCode::RequestTimeout,
        S3ErrorCode::ServiceUnavailable,
        S3ErrorCode::SignatureDoesNotMatch,
        S3ErrorCode::SlowDown,
        S3ErrorCode::XAmzContentSHA256Mismatch,
    ];

    #[test]
    fn docs_errors_table_matches_every_code_and_status() {
        for c in ALL {
            match c {
                S3ErrorCode::AccessDenied
                | S3ErrorCode::AccessForbidden
                | S3ErrorCode::AuthorizationHeaderMalformed
                | S3ErrorCode::AuthorizationQueryParametersError
                | S3ErrorCode::BadDigest
                | S3ErrorCode::BadRequest
                | S3ErrorCode::EntityTooLarge
                | S3ErrorCode::IncompleteBody
                | S3ErrorCode::InternalError
                | S3ErrorCode::InvalidAccessKeyId
                | S3ErrorCode::InvalidArgument
                | S3ErrorCode::InvalidBucketName
                | S3ErrorCode::InvalidDigest
                | S3ErrorCode::InvalidPart
                | S3ErrorCode::InvalidPartOrder
                | S3ErrorCode::InvalidPartNumber
                | S3ErrorCode::InvalidRange
                | S3ErrorCode::InvalidRequest
                | S3ErrorCode::InvalidURI
                | S3ErrorCode::KeyTooLongError
                | S3ErrorCode::KmsDisabled
                | S3ErrorCode::KmsInvalidState
                | S3ErrorCode::KmsNotFound
                | S3ErrorCode::MalformedXML
                | S3ErrorCode::MalformedPOSTRequest
                | S3ErrorCode::MaxMessageLengthExceeded
                | S3ErrorCode::MaxPostPreDataLengthExceededError
                | S3ErrorCode::IncorrectNumberOfFilesInPostRequest
                | S3ErrorCode::InvalidPolicyDocument
                | S3ErrorCode::RequestIsNotMultiPartContent
                | S3ErrorCode::EntityTooSmall
                | S3ErrorCode::MethodNotAllowed
                | S3ErrorCode::MissingContentLength
                | S3ErrorCode::NoSuchKey
                | S3ErrorCode::NoSuchUpload
                | S3ErrorCode::NotImplemented
                | S3ErrorCode::PreconditionFailed
                | S3ErrorCode::ConditionalRequestConflict
                | S3ErrorCode::RequestTimeTooSkewed
                | S3ErrorCode::RequestTimeout
                | S3ErrorCode::ServiceUnavailable
                | S3ErrorCode::SignatureDoesNotMatch
                | S3ErrorCode::SlowDown
                | S3ErrorCode::XAmzContentSHA256Mismatch => {}
            }
        }
        let doc = include_str!("../../../../docs/ERRORS.md");
        let mut listed = std::collections::HashSet::new();
        let mut rows = 0;
        for line in doc
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| case"))
        {
            let cells: Vec<&str> = line.split(" | ").collect();
            let Some(status) = cells.get(2).and_then(|s| s.trim().parse::<u16>().ok()) else {
                continue;
            };
            rows += 1;
            // Every code the row names answers with the row's status.
            for code in cells[1].split('`').skip(1).step_by(2) {
                let c = ALL
                    .iter()
                    .find(|c| c.as_str() == code)
                    .unwrap_or_else(|| panic!("{code} is no code of the gateway's: {line}"));
                assert_eq!(c.status().as_u16(), status, "{line}");
                listed.insert(c.as_str());
            }
        }
        assert!(rows > 100, "{rows} rows");
        for c in ALL {
            assert!(
                listed.contains(c.as_str()),
                "{} has no row in docs/ERRORS.md",
                c.as_str()
            );
        }
    }

    #[test]
    fn error_documents_stay_small_whatever_the_path() {
        let path = format!("/b/{}", "&é".repeat(40_000));
        let xml = S3Error::new(S3ErrorCode::AccessDenied, "denied").to_xml(&path, "id");
        assert!(xml.len() < 8 * 1024, "{}", xml.len());
        assert!(xml.contains("<Resource>/b/&amp;é&amp;"));
    }

    #[test]
    fn renders_s3_error_xml() {
        let e = S3Error::new(S3ErrorCode::SignatureDoesNotMatch, "bad <sig>");
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let xml = e.to_xml("/b/k&1", "req-1");
        assert!(xml.contains("<Code>SignatureDoesNotMatch</Code>"));
        assert!(xml.contains("<Message>bad &lt;sig&gt;</Message>"));
        assert!(xml.contains("<Resource>/b/k&amp;1</Resource>"));
        assert!(xml.contains("<RequestId>req-1</RequestId>"));
    }

    #[test]
    fn statuses() {
        assert_eq!(
            S3ErrorCode::InvalidRange.status(),
            StatusCode::RANGE_NOT_SATISFIABLE
        );
        assert_eq!(
            S3ErrorCode::AuthorizationHeaderMalformed.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            S3ErrorCode::NotImplemented.status(),
            StatusCode::NOT_IMPLEMENTED
        );
    }
}
