//! The signed example is the worked example of the S3 API reference
//! ("Signature Calculations for the Authorization Header: Transferring
//! Payload in Multiple Chunks"): 66,560 bytes of `a` in 64 KiB chunks.

use super::*;
use crate::s3::auth::sigv4::signing_key;

const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const SIG1: &str = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
const SIG2: &str = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497";
const SIG3: &str = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9";

fn signer() -> ChunkSigner {
    ChunkSigner {
        signing_key: signing_key(
            b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524",
            "us-east-1",
            "s3",
        ),
        amz_date: "20130524T000000Z".into(),
        scope: "20130524/us-east-1/s3/aws4_request".into(),
        previous: SEED.into(),
    }
}

fn aws_example_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(format!("10000;chunk-signature={SIG1}\r\n").as_bytes());
    b.extend_from_slice(&[b'a'; 65536]);
    b.extend_from_slice(format!("\r\n400;chunk-signature={SIG2}\r\n").as_bytes());
    b.extend_from_slice(&[b'a'; 1024]);
    b.extend_from_slice(format!("\r\n0;chunk-signature={SIG3}\r\n\r\n").as_bytes());
    b
}

fn decode(d: &mut ChunkedDecoder, body: &[u8], piece: usize) -> Result<Vec<u8>, S3Error> {
    let mut out = Vec::new();
    for c in body.chunks(piece.max(1)) {
        d.push(c, |x| out.extend_from_slice(x))?;
    }
    d.finish()?;
    Ok(out)
}

#[test]
fn aws_signed_chunk_example_decodes_in_any_pieces() {
    for piece in [1, 7, 100, 65_536, 1 << 20] {
        let mut d = ChunkedDecoder::new(Some(signer()));
        let out = decode(&mut d, &aws_example_body(), piece).unwrap();
        assert_eq!(out.len(), 66_560);
        assert!(out.iter().all(|&b| b == b'a'));
    }
}

#[test]
fn a_changed_byte_or_signature_fails() {
    let mut body = aws_example_body();
    let at = body.len() - 200; // inside the 1 KiB chunk
    body[at] = b'b';
    let err = decode(&mut ChunkedDecoder::new(Some(signer())), &body, 4096).unwrap_err();
    assert_eq!(err.code, S3ErrorCode::SignatureDoesNotMatch);
    let body = String::from_utf8(aws_example_body())
        .unwrap()
        .replace(SIG3, &SIG3.replace('b', "c"));
    let err = decode(
        &mut ChunkedDecoder::new(Some(signer())),
        body.as_bytes(),
        4096,
    )
    .unwrap_err();
    assert_eq!(err.code, S3ErrorCode::SignatureDoesNotMatch);
    // Unsigned chunks in a signed stream are refused.
    let err = decode(
        &mut ChunkedDecoder::new(Some(signer())),
        b"3\r\nabc\r\n0\r\n\r\n",
        100,
    )
    .unwrap_err();
    assert_eq!(err.code, S3ErrorCode::IncompleteBody);
}

#[test]
fn unsigned_trailer_variant() {
    let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
    for piece in [1, 3, 1000] {
        let mut d = ChunkedDecoder::new(None);
        assert_eq!(decode(&mut d, body, piece).unwrap(), b"hello world");
        assert_eq!(
            d.trailers(),
            &[("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())]
        );
    }
}

#[test]
fn signed_trailer_is_verified() {
    // Build a signed-trailer body with the example's key and check that the
    // decoder accepts it and refuses a changed trailer value.
    let mut s = signer();
    let data = b"hello world";
    let sig1 = s.chunk_signature(&Sha256::digest(data));
    s.previous = sig1.clone();
    let sig0 = s.chunk_signature(&Sha256::digest(b""));
    s.previous = sig0.clone();
    let trailer = "x-amz-checksum-crc32:DUoRhQ==";
    let tsig = s.trailer_signature(&Sha256::digest(format!("{trailer}\n").as_bytes()));
    let body = format!("b;chunk-signature={sig1}\r\nhello world\r\n0;chunk-signature={sig0}\r\n{trailer}\r\nx-amz-trailer-signature:{tsig}\r\n\r\n");
    let mut d = ChunkedDecoder::new(Some(signer()));
    assert_eq!(decode(&mut d, body.as_bytes(), 5).unwrap(), data);
    assert_eq!(d.trailers().len(), 1);
    let tampered = body.replace("DUoRhQ==", "AAAAAA==");
    assert_eq!(
        decode(
            &mut ChunkedDecoder::new(Some(signer())),
            tampered.as_bytes(),
            5
        )
        .unwrap_err()
        .code,
        S3ErrorCode::SignatureDoesNotMatch
    );
}

#[test]
fn malformed_and_truncated_bodies_fail() {
    let cases: [&[u8]; 5] = [
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcd\r\n0\r\n\r\n",
        b"3\r\nabc\r\n",
        b"3\r\nabc\r\n0\r\n\r\nextra",
        b"3\r\nab",
    ];
    for body in cases {
        assert!(
            decode(&mut ChunkedDecoder::new(None), body, 2).is_err(),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let huge = format!("{:x}\r\n", MAX_CHUNK_SIZE + 1);
    let err = decode(&mut ChunkedDecoder::new(None), huge.as_bytes(), 100).unwrap_err();
    assert!(err.message.contains("exceeds the limit"), "{}", err.message);
    let long = vec![b'1'; MAX_CHUNK_LINE + 10];
    assert!(decode(&mut ChunkedDecoder::new(None), &long, 100).is_err());
}

/// An unsigned body of "hello" whose size line carries `ext_len` bytes of
/// extension and whose one trailer line carries `pad` bytes of value.
fn padded_body(ext_len: usize, pad: usize) -> Vec<u8> {
    let mut b = format!("5;{}\r\nhello\r\n0\r\n", "e".repeat(ext_len)).into_bytes();
    b.extend_from_slice(format!("x-amz-meta-a:{}\r\n\r\n", "v".repeat(pad)).as_bytes());
    b
}

#[test]
fn the_line_limit_is_exact() {
    // "5;" plus the extension: exactly MAX_CHUNK_LINE bytes before the CRLF.
    let at_limit = padded_body(MAX_CHUNK_LINE - 2, 1);
    for piece in [1, 7, at_limit.len()] {
        assert_eq!(
            decode(&mut ChunkedDecoder::new(None), &at_limit, piece).unwrap(),
            b"hello"
        );
    }
    let over = padded_body(MAX_CHUNK_LINE - 1, 1);
    for piece in [1, 7, over.len()] {
        let err = decode(&mut ChunkedDecoder::new(None), &over, piece).unwrap_err();
        assert!(
            err.message.contains("line exceeds the limit"),
            "{}",
            err.message
        );
    }
}

#[test]
fn the_trailer_limit_is_exact() {
    // The trailer line (13 + pad + CRLF) and the empty closing line (CRLF)
    // total MAX_TRAILER_BYTES exactly.
    let pad = MAX_TRAILER_BYTES - 17;
    let mut d = ChunkedDecoder::new(None);
    assert_eq!(
        decode(&mut d, &padded_body(1, pad), 1000).unwrap(),
        b"hello"
    );
    assert_eq!(d.trailers()[0].1.len(), pad);
    let err = decode(
        &mut ChunkedDecoder::new(None),
        &padded_body(1, pad + 1),
        1000,
    )
    .unwrap_err();
    assert!(
        err.message.contains("trailers exceed the limit"),
        "{}",
        err.message
    );
}

#[test]
fn the_crlf_after_data_is_exactly_crlf() {
    for body in [
        &b"5\r\nhello\n\r\n0\r\n\r\n"[..],
        b"5\r\nhello \r\n0\r\n\r\n",
    ] {
        assert!(decode(&mut ChunkedDecoder::new(None), body, 3).is_err());
    }
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that look like aws-chunked framing more often than noise does.
    fn chunked_like() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b"0".to_vec()),
            Just(b"5".to_vec()),
            Just(b"ffffffff".to_vec()),
            Just(b";chunk-signature=".to_vec()),
            Just(b"x-amz-checksum-crc32c:".to_vec()),
            Just(b"x-amz-trailer-signature:".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ];
        proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever a client sends, in whatever pieces: no panic, never
        /// more data out than in, and the held line stays within its limit.
        #[test]
        fn any_body_in_any_pieces_is_bounded(
            body in prop_oneof![chunked_like(), proptest::collection::vec(any::<u8>(), 0..2048)],
            piece in 1usize..300,
            signed in any::<bool>(),
        ) {
            let mut d = ChunkedDecoder::new(signed.then(signer));
            let mut out = 0usize;
            for c in body.chunks(piece) {
                if d.push(c, |x| out += x.len()).is_err() {
                    break;
                }
                prop_assert!(d.line.len() <= MAX_TRAILER_BYTES + 2);
                prop_assert!(d.trailers.len() <= MAX_TRAILER_BYTES / 3);
            }
            let _ = d.finish();
            prop_assert!(out <= body.len());
            prop_assert_eq!(out as u64, d.decoded());
        }

        /// A signed body with one byte changed never decodes to other data:
        /// it fails, or (a hex digit's case) yields exactly the original.
        #[test]
        fn a_changed_signed_body_never_yields_other_data(
            at in 0usize..aws_example_body().len(),
            bit in 0u8..8,
        ) {
            let mut body = aws_example_body();
            body[at] ^= 1 << bit;
            if let Ok(out) = decode(&mut ChunkedDecoder::new(Some(signer())), &body, 4096) {
                prop_assert!(out == vec![b'a'; 66_560]);
            }
        }
    }
}

#[test]
fn aws_chunked_leaves_the_rest_byte_exact() {
    use super::without_aws_chunked as w;
    assert_eq!(w("gzip, br").as_deref(), Some("gzip, br"));
    assert_eq!(w("aws-chunked,gzip, br").as_deref(), Some("gzip, br"));
    assert_eq!(
        w("aws-chunked, x-custom;q=1").as_deref(),
        Some("x-custom;q=1")
    );
    assert_eq!(w("gzip, AWS-Chunked").as_deref(), Some("gzip"));
    assert_eq!(w("aws-chunked").as_deref(), None);
    assert_eq!(w(" aws-chunked , ").as_deref(), None);
    assert_eq!(w("identity").as_deref(), Some("identity"));
}
