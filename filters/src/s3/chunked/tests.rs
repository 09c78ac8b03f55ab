//! The signed example is the worked example of the S3 API reference
//! ("Signature Calculations for the Authorization Header: Transferring
//! Payload in Multiple Chunks"): 66,560 bytes of `a` in 64 KiB chunks.

use super::*;
use crate::s3::sigv4::signing_key;

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
