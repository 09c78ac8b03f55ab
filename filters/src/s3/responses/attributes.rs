//! GetObjectAttributes of an encrypted object, rewritten for its client:
//! the backend describes the stored ciphertext, so `ObjectSize` becomes
//! the plaintext size, and `Checksum` and `ObjectParts` (checksums and
//! sizes of stored bytes) are left out rather than answered wrong.

/// Elements describing stored bytes only, dropped whole.
const STORED_ONLY: [&str; 2] = ["Checksum", "ObjectParts"];

/// The rewritten document; `None` when it is not the expected shape (one
/// root, each element at most once, no nesting surprises).
pub fn rewrite(xml: &str, plaintext_size: u64) -> Option<String> {
    let mut out = xml.to_string();
    for name in STORED_ONLY {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        if let Some(start) = out.find(&open) {
            let end = out[start..].find(&close)? + start + close.len();
            out.replace_range(start..end, "");
            if out.contains(&open) {
                return None;
            }
        }
    }
    let (open, close) = ("<ObjectSize>", "</ObjectSize>");
    if let Some(start) = out.find(open) {
        let value = start + open.len();
        let end = out[value..].find(close)? + value;
        // Both checks before the replacement: the new value's length is
        // not the old one's, so `end` is only good until then.
        if !out[value..end].bytes().all(|b| b.is_ascii_digit()) || out[end..].contains(open) {
            return None;
        }
        out.replace_range(value..end, &plaintext_size.to_string());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    const STORED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<GetObjectAttributesResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ETag>abc-2</ETag><Checksum><ChecksumCRC32C>AAAAAA==</ChecksumCRC32C></Checksum><ObjectParts><TotalPartsCount>2</TotalPartsCount><Part><PartNumber>1</PartNumber><Size>5243008</Size></Part></ObjectParts><StorageClass>STANDARD</StorageClass><ObjectSize>10485888</ObjectSize></GetObjectAttributesResponse>"#;

    #[test]
    fn sizes_become_plaintext_and_stored_details_go() {
        let out = rewrite(STORED, 10_485_760).unwrap();
        assert!(out.contains("<ObjectSize>10485760</ObjectSize>"), "{out}");
        assert!(out.contains("<ETag>abc-2</ETag>"));
        assert!(out.contains("<StorageClass>STANDARD</StorageClass>"));
        for gone in ["Checksum", "ObjectParts", "5243008", "10485888"] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
    }

    #[test]
    fn unexpected_shapes_are_not_rewritten() {
        for bad in [
            "<R><ObjectSize>12x</ObjectSize></R>",
            "<R><ObjectSize>1</ObjectSize><ObjectSize>2</ObjectSize></R>",
            "<R><Checksum><a/></R>",
            "<R><Checksum></Checksum><Checksum></Checksum></R>",
        ] {
            assert_eq!(rewrite(bad, 5), None, "{bad}");
        }
        assert_eq!(
            rewrite("<R><ETag>e</ETag></R>", 5).as_deref(),
            Some("<R><ETag>e</ETag></R>")
        );
    }

    /// A stored size written longer than the plaintext's (leading zeros)
    /// neither reaches past the document nor hides a second size.
    #[test]
    fn a_long_stored_size_is_checked_before_it_is_replaced() {
        let zeros = "0".repeat(40);
        let one = format!("<R><ObjectSize>{zeros}7</ObjectSize></R>");
        assert_eq!(
            rewrite(&one, 5).as_deref(),
            Some("<R><ObjectSize>5</ObjectSize></R>")
        );
        let two =
            format!("<R><ObjectSize>{zeros}</ObjectSize><ObjectSize>1048624</ObjectSize></R>");
        assert_eq!(rewrite(&two, 5), None);
        let short = format!(
            "<R><ObjectSize>{}</ObjectSize><ObjectSize>9</ObjectSize></R>",
            "0".repeat(30)
        );
        assert_eq!(rewrite(&short, 5), None);
    }
}
