//! Backend error documents, made fit for the client.
//!
//! Backends differ in what their errors say: Ceph RGW sends every error
//! with an empty `<Message>` (the aws cli then fails on it with
//! "argument of type 'NoneType' is not iterable"), and a refusal of the
//! body encoding the gateway chose (RGW 16 refusing aws-chunked trailers
//! with `XAmzContentSHA256Mismatch`) would blame the client's payload,
//! which was fine. So an error document from the backend is passed on with
//! S3's standard message where it has none, and an encoding refusal of a
//! body the gateway encoded becomes an `InternalError` that says so. The
//! backend's own code is kept for the access line.

use crate::s3::xml::{walk, Node};

/// Codes with which a backend refuses a body for its encoding or payload
/// hash: never the client's doing when the gateway encoded the body.
const ENCODING_REFUSALS: [&str; 2] = ["XAmzContentSHA256Mismatch", "InvalidContentEncoding"];

/// S3's standard messages for the codes backends commonly answer.
const STANDARD_MESSAGES: &[(&str, &str)] = &[
    ("AccessDenied", "Access Denied"),
    ("BadDigest", "The Content-MD5 or checksum value that you specified did not match what the server received."),
    ("BucketAlreadyExists", "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."),
    ("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it."),
    ("BucketNotEmpty", "The bucket you tried to delete is not empty"),
    ("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"),
    ("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size."),
    ("InternalError", "We encountered an internal error. Please try again."),
    ("InvalidArgument", "Invalid Argument"),
    ("InvalidBucketName", "The specified bucket is not valid."),
    ("InvalidDigest", "The Content-MD5 or checksum value that you specified is not valid."),
    ("InvalidObjectState", "The operation is not valid for the object's storage class."),
    ("InvalidPart", "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."),
    ("InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be specified in order by part number."),
    ("InvalidRange", "The requested range is not satisfiable"),
    ("InvalidRequest", "Invalid Request"),
    ("KeyTooLongError", "Your key is too long"),
    ("MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema."),
    ("MethodNotAllowed", "The specified method is not allowed against this resource."),
    ("NoSuchBucket", "The specified bucket does not exist"),
    ("NoSuchKey", "The specified key does not exist."),
    ("NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."),
    ("NoSuchVersion", "The specified version does not exist."),
    ("NotImplemented", "A header you provided implies functionality that is not implemented."),
    ("PreconditionFailed", "At least one of the preconditions you specified did not hold."),
    ("RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period."),
    ("ServiceUnavailable", "Service is unable to handle request."),
    ("SlowDown", "Please reduce your request rate."),
    ("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed."),
];

/// The code and message of an S3 error document, if it is one.
pub fn code_and_message(xml: &[u8]) -> Option<(String, String)> {
    let (mut code, mut message) = (None, String::new());
    walk(xml, |node| {
        if let Node::Close(path, text) = node {
            match (path.len(), path.last().map(String::as_str)) {
                (2, Some("Code")) if path[0] == "Error" => code = Some(text.to_string()),
                (2, Some("Message")) if path[0] == "Error" => message = text.to_string(),
                _ => {}
            }
        }
        Ok(())
    })
    .ok()?;
    Some((code?, message))
}

/// What the client is answered for a backend error document `xml`:
/// `gateway_encoded` when the gateway chose the body's encoding (an
/// encrypted write). `None`: pass the document on as it is.
pub fn for_client(xml: &[u8], gateway_encoded: bool) -> Option<String> {
    let (code, message) = code_and_message(xml)?;
    let text = std::str::from_utf8(xml).ok()?;
    if gateway_encoded && ENCODING_REFUSALS.contains(&code.as_str()) {
        let message = format!(
            "the storage backend refused the body encoding the gateway sent ({code}); \
             the gateway's storage.s3.stored_checksum must be auto or none for this backend"
        );
        return replace_element(
            &replace_element(text, "Code", "InternalError")?,
            "Message",
            &message,
        );
    }
    if !message.trim().is_empty() {
        return None;
    }
    let standard = STANDARD_MESSAGES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, m)| (*m).to_string())
        .unwrap_or_else(|| format!("The storage backend answered {code}."));
    replace_element(text, "Message", &standard)
}

/// `text` with the first `<name>` element's content replaced (an empty
/// `<name/>` too), or the element added after `</Code>` when it is absent.
fn replace_element(text: &str, name: &str, value: &str) -> Option<String> {
    let value = crate::s3::responses::error::xml_escape(value);
    let (open, close, empty) = (
        format!("<{name}>"),
        format!("</{name}>"),
        format!("<{name}/>"),
    );
    if let Some(at) = text.find(&open) {
        let end = text[at..].find(&close)? + at;
        return Some(format!("{}{open}{value}{}", &text[..at], &text[end..]));
    }
    if let Some(at) = text.find(&empty) {
        return Some(format!(
            "{}{open}{value}{close}{}",
            &text[..at],
            &text[at + empty.len()..]
        ));
    }
    let after = text.find("</Code>")? + "</Code>".len();
    Some(format!(
        "{}{open}{value}{close}{}",
        &text[..after],
        &text[after..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RGW_404: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message></Message><BucketName>demo</BucketName><RequestId>tx1</RequestId><HostId>h</HostId></Error>";

    #[test]
    fn an_empty_message_gets_s3s_own() {
        let out = for_client(RGW_404, false).unwrap();
        assert_eq!(
            code_and_message(out.as_bytes()).unwrap(),
            (
                "NoSuchKey".into(),
                "The specified key does not exist.".into()
            )
        );
        assert!(out.contains("<RequestId>tx1</RequestId>"), "{out}");
        for empty in [
            &b"<Error><Code>SlowDown</Code><Message/></Error>"[..],
            b"<Error><Code>SlowDown</Code></Error>",
            b"<Error><Code>SlowDown</Code><Message>  </Message></Error>",
        ] {
            let out = for_client(empty, false).unwrap();
            assert_eq!(
                code_and_message(out.as_bytes()).unwrap().1,
                "Please reduce your request rate."
            );
        }
        let odd = for_client(
            b"<Error><Code>Weird&amp;</Code><Message></Message></Error>",
            false,
        )
        .unwrap();
        assert!(
            odd.contains("The storage backend answered Weird&amp;."),
            "{odd}"
        );
    }

    #[test]
    fn a_message_of_the_backends_own_is_kept() {
        let doc = b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        assert_eq!(for_client(doc, false), None);
        assert_eq!(for_client(b"not xml", false), None);
        assert_eq!(for_client(b"<Other><Code>X</Code></Other>", false), None);
    }

    #[test]
    fn an_encoding_refusal_of_the_gateways_body_does_not_blame_the_client() {
        let doc = b"<Error><Code>XAmzContentSHA256Mismatch</Code><Message></Message><RequestId>tx</RequestId></Error>";
        let out = for_client(doc, true).unwrap();
        let (code, message) = code_and_message(out.as_bytes()).unwrap();
        assert_eq!(code, "InternalError");
        assert!(
            message.contains("XAmzContentSHA256Mismatch") && message.contains("stored_checksum")
        );
        // The client's own payload hash, passed through: the client's error.
        let passed = for_client(doc, false).unwrap();
        assert_eq!(
            code_and_message(passed.as_bytes()).unwrap().0,
            "XAmzContentSHA256Mismatch"
        );
    }
}
