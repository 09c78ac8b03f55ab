use super::*;
use crate::aead::Backend;
use crate::format::{ciphertext_len, plan_range};
use crate::keys::{context_hash, ObjectKey};
use proptest::prelude::*;

fn key(seed: u8) -> ObjectKey {
    ObjectKey::derive(
        &[seed; 32],
        &[seed.wrapping_add(1); 32],
        &context_hash([]),
        Backend::default_backend(),
    )
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Encrypts `plain` feeding it in pieces cut at `cuts` (offsets, any order),
/// then an empty end.
fn encrypt(k: &ObjectKey, part: u32, plain: &[u8], cuts: &[usize]) -> Vec<u8> {
    encrypt_with(k, part, plain, cuts, false)
}

/// Like [`encrypt`]; with `end_on_last` the last piece carries the end
/// (the encryptor may then seal the final frame straight from it).
fn encrypt_with(
    k: &ObjectKey,
    part: u32,
    plain: &[u8],
    cuts: &[usize],
    end_on_last: bool,
) -> Vec<u8> {
    let mut enc = Encryptor::new(clone_cipher(k), part, plain.len() as u64);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (plain.len() + 1)).collect();
    points.push(0);
    points.push(plain.len());
    points.sort();
    points.dedup();
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = points.windows(2).map(|w| &plain[w[0]..w[1]]).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let end = end_on_last && i + 1 == pieces.len();
        out.extend_from_slice(&enc.push(piece, end).unwrap());
    }
    if !end_on_last || pieces.is_empty() {
        out.extend_from_slice(&enc.push(&[], true).unwrap());
    }
    out
}

/// Test keys are derived from a seed, so "cloning" is re-deriving.
fn clone_cipher(k: &ObjectKey) -> FrameKey {
    for seed in 0..=255u8 {
        let c = key(seed);
        if c.commitment == k.commitment {
            return c.cipher;
        }
    }
    unreachable!("test keys come from key(seed)")
}

fn decrypt(
    k: &ObjectKey,
    part: u32,
    total: u64,
    cipher: &[u8],
    piece: usize,
) -> Result<Vec<u8>, StreamError> {
    let mut dec = Decryptor::new(clone_cipher(k), part, total);
    let mut out = Vec::new();
    let piece = piece.max(1);
    let chunks: Vec<&[u8]> = cipher.chunks(piece).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.extend_from_slice(&dec.push(c, i + 1 == chunks.len())?);
    }
    if chunks.is_empty() {
        out.extend_from_slice(&dec.push(&[], true)?);
    }
    Ok(out)
}

#[test]
fn edge_sizes_round_trip() {
    let k = key(1);
    for len in [
        0usize,
        1,
        65_535,
        65_536,
        65_537,
        3 * 65_536,
        10 * 1024 * 1024 + 7,
    ] {
        let plain = data(len);
        let c = encrypt(&k, 0, &plain, &[]);
        assert_eq!(c.len() as u64, ciphertext_len(len as u64), "len {len}");
        if len > 0 {
            assert_ne!(&c[..len], &plain[..], "ciphertext differs from plaintext");
        }
        assert_eq!(
            decrypt(&k, 0, len as u64, &c, 70_000).unwrap(),
            plain,
            "len {len}"
        );
    }
}

#[test]
fn an_empty_object_still_has_its_tag_checked() {
    let k = key(1);
    let c = encrypt(&k, 0, &[], &[]);
    assert_eq!(c.len(), 16);
    assert_eq!(decrypt(&k, 0, 0, &c, 16).unwrap(), Vec::<u8>::new());
    let mut bad = c.clone();
    bad[3] ^= 1;
    assert!(decrypt(&k, 0, 0, &bad, 16).is_err());
    assert!(
        decrypt(&k, 0, 0, &[], 16).is_err(),
        "the missing empty frame is a truncation"
    );
}

#[test]
fn length_mismatches_are_refused() {
    let k = key(1);
    let mut enc = Encryptor::new(clone_cipher(&k), 0, 10);
    assert_eq!(
        enc.push(&[0; 11], false),
        Err(StreamError::TooLong { declared: 10 })
    );
    let mut enc = Encryptor::new(clone_cipher(&k), 0, 10);
    enc.push(&[0; 4], false).unwrap();
    assert_eq!(
        enc.push(&[], true),
        Err(StreamError::TooShort {
            declared: 10,
            got: 4
        })
    );
}

#[test]
fn final_frame_is_withheld_until_end() {
    let k = key(1);
    let mut enc = Encryptor::new(clone_cipher(&k), 0, 2 * FRAME_SIZE);
    let first = enc.push(&data(2 * FRAME_SIZE as usize), false).unwrap();
    assert_eq!(
        first.len() as u64,
        SEALED_FRAME_SIZE,
        "only the non-final frame is released"
    );
    assert_eq!(enc.push(&[], true).unwrap().len() as u64, SEALED_FRAME_SIZE);
}

#[test]
fn frames_swapped_between_objects_or_parts_fail() {
    let (a, b) = (key(1), key(2));
    let plain = data(3 * FRAME_SIZE as usize);
    let ca = encrypt(&a, 0, &plain, &[]);
    let cb = encrypt(&b, 0, &plain, &[]);
    let f = SEALED_FRAME_SIZE as usize;
    let mut mixed = ca.clone();
    mixed[f..2 * f].copy_from_slice(&cb[f..2 * f]);
    assert!(matches!(
        decrypt(&a, 0, plain.len() as u64, &mixed, 4096),
        Err(StreamError::Auth { frame: 1 })
    ));
    // Same key, another part number: every frame fails.
    assert!(decrypt(&a, 1, plain.len() as u64, &ca, 4096).is_err());
    // Reordered frames fail.
    let mut swapped = ca.clone();
    swapped[..f].copy_from_slice(&ca[f..2 * f]);
    swapped[f..2 * f].copy_from_slice(&ca[..f]);
    assert!(decrypt(&a, 0, plain.len() as u64, &swapped, 4096).is_err());
}

#[test]
fn truncation_at_a_frame_boundary_fails_on_the_final_flag() {
    let k = key(3);
    let plain = data(2 * FRAME_SIZE as usize + 100);
    let c = encrypt(&k, 0, &plain, &[]);
    // Drop the last frame: the stream now looks like 2 full frames.
    let cut = &c[..2 * SEALED_FRAME_SIZE as usize];
    let err = decrypt(&k, 0, 2 * FRAME_SIZE, cut, 10_000).unwrap_err();
    assert_eq!(err, StreamError::Auth { frame: 1 });
}

#[test]
fn nothing_is_released_after_a_failure() {
    let k = key(4);
    let plain = data(3 * FRAME_SIZE as usize);
    let mut c = encrypt(&k, 0, &plain, &[]);
    c[SEALED_FRAME_SIZE as usize + 5] ^= 0x40;
    let mut dec = Decryptor::new(clone_cipher(&k), 0, plain.len() as u64);
    let first = dec.push(&c[..SEALED_FRAME_SIZE as usize], false).unwrap();
    assert_eq!(&first[..], &plain[..FRAME_SIZE as usize]);
    assert!(dec.push(&c[SEALED_FRAME_SIZE as usize..], false).is_err());
    assert!(dec
        .push(&c[2 * SEALED_FRAME_SIZE as usize..], true)
        .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn output_is_independent_of_input_splits(len in 0usize..300_000, cuts in prop::collection::vec(0usize..300_000, 0..8)) {
        let k = key(5);
        let plain = data(len);
        let reference = encrypt(&k, 7, &plain, &[]);
        prop_assert_eq!(&encrypt(&k, 7, &plain, &cuts), &reference);
        prop_assert_eq!(&encrypt_with(&k, 7, &plain, &cuts, true), &reference);
        prop_assert_eq!(decrypt(&k, 7, len as u64, &reference, 70_000).unwrap(), plain);
    }

    #[test]
    fn every_truncation_fails(len in 0usize..200_000, cut in 0usize..200_100) {
        let k = key(6);
        let plain = data(len);
        let c = encrypt(&k, 0, &plain, &[]);
        let cut = cut % c.len();
        // The decryptor sizes frames from the (claimed) total: claim the
        // plaintext length a truncated object would report, where one exists.
        let claimed = crate::format::plaintext_len(cut as u64);
        match claimed {
            Some(p) => prop_assert!(decrypt(&k, 0, p, &c[..cut], 9_999).is_err()),
            None => prop_assert!(decrypt(&k, 0, len as u64, &c[..cut], 9_999).is_err()),
        }
    }

    #[test]
    fn every_bit_flip_fails(len in 1usize..150_000, at in 0usize..160_000, bit in 0u8..8) {
        let k = key(7);
        let plain = data(len);
        let mut c = encrypt(&k, 0, &plain, &[]);
        let at = at % c.len();
        c[at] ^= 1 << bit;
        prop_assert!(decrypt(&k, 0, len as u64, &c, 8192).is_err());
    }

    #[test]
    fn ranges_decrypt_exact_bytes(len in 1usize..400_000, a in 0usize..400_000, span in 1usize..200_000, piece in 1usize..100_000) {
        let k = key(8);
        let plain = data(len);
        let c = encrypt(&k, 0, &plain, &[]);
        let start = a % len;
        let end = (start + span - 1).min(len - 1);
        let plan = plan_range(start as u64, end as u64, len as u64);
        let fetched = &c[plan.cipher_start as usize..=plan.cipher_end as usize];
        let mut dec = Decryptor::for_plan(clone_cipher(&k), 0, len as u64, plan);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = fetched.chunks(piece).collect();
        for (i, ch) in chunks.iter().enumerate() {
            out.extend_from_slice(&dec.push(ch, i + 1 == chunks.len()).unwrap());
        }
        prop_assert_eq!(&out[..], &plain[start..=end]);
    }
}

#[test]
fn swapped_metadata_fails() {
    // Object A's body under object B's envelope (salt + commitment): the
    // commitment check passes for B's own values, but A's frames do not open.
    let dek = [9u8; 32];
    let ctx = context_hash([]);
    let a = ObjectKey::derive(&dek, &[1; 32], &ctx, Backend::default_backend());
    let b = ObjectKey::derive(&dek, &[2; 32], &ctx, Backend::default_backend());
    let plain = data(1000);
    let mut enc = Encryptor::new(a.cipher, 0, 1000);
    let mut body = enc.push(&plain, false).unwrap().to_vec();
    body.extend_from_slice(&enc.push(&[], true).unwrap());
    let b_checked = ObjectKey::derive_checked(
        &dek,
        &[2; 32],
        &ctx,
        &b.commitment,
        Backend::default_backend(),
    )
    .unwrap();
    let mut dec = Decryptor::new(b_checked.cipher, 0, 1000);
    assert_eq!(dec.push(&body, true), Err(StreamError::Auth { frame: 0 }));
    // And A's salt with B's commitment fails the commitment check itself.
    assert!(ObjectKey::derive_checked(
        &dek,
        &[1; 32],
        &ctx,
        &b.commitment,
        Backend::default_backend()
    )
    .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Property target for the frame decoder: arbitrary bytes, lengths and
    /// piece sizes never panic and never yield plaintext.
    #[test]
    fn random_ciphertext_never_decrypts(bytes in prop::collection::vec(any::<u8>(), 0..140_000), total in 0u64..200_000, piece in 1usize..70_000) {
        let k = key(9);
        let mut dec = Decryptor::new(clone_cipher(&k), 0, total);
        let mut released = 0usize;
        let chunks: Vec<&[u8]> = bytes.chunks(piece).collect();
        let mut failed = false;
        for (i, c) in chunks.iter().enumerate() {
            match dec.push(c, i + 1 == chunks.len()) {
                Ok(p) => released += p.len(),
                Err(_) => { failed = true; break; }
            }
        }
        if chunks.is_empty() {
            failed = dec.push(&[], true).is_err();
        }
        prop_assert!(failed, "random bytes were accepted");
        prop_assert_eq!(released, 0);
    }
}

/// The same object key on `backend` (one-shot for RustCrypto, streaming for aws-lc).
fn key_on(backend: Backend) -> FrameKey {
    ObjectKey::derive(&[9; 32], &[10; 32], &context_hash([]), backend).cipher
}

/// Feeds `pieces` to an encryptor on `backend`, the end with the last.
fn encrypt_on(backend: Backend, part: u32, pieces: &[&[u8]]) -> Vec<u8> {
    let total = pieces.iter().map(|p| p.len()).sum::<usize>() as u64;
    let mut enc = Encryptor::new(key_on(backend), part, total);
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        out.extend_from_slice(&enc.push(p, i + 1 == pieces.len()).unwrap());
    }
    if pieces.is_empty() {
        out.extend_from_slice(&enc.push(&[], true).unwrap());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Streaming (aws-lc) and one-shot (RustCrypto) framing produce the
    /// same bytes for any piece sizes, and each reads the other's, whole
    /// and by range, tampered or not.
    #[test]
    fn streaming_and_one_shot_backends_agree(
        len in 0usize..300_000,
        cuts in prop::collection::vec(0usize..300_000, 0..6),
        piece in 1usize..100_000,
        a in 0usize..300_000,
        span in 1usize..150_000,
        flip in 0usize..400_000,
    ) {
        let plain = data(len);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        points.extend([0, len]);
        points.sort();
        points.dedup();
        let pieces: Vec<&[u8]> = points.windows(2).map(|w| &plain[w[0]..w[1]]).collect();
        let backends = [Backend::AwsLc, Backend::RustCrypto];
        let sealed = encrypt_on(Backend::AwsLc, 3, &pieces);
        prop_assert_eq!(&encrypt_on(Backend::RustCrypto, 3, &pieces), &sealed);
        for backend in backends {
            let mut dec = Decryptor::new(key_on(backend), 3, len as u64);
            let chunks: Vec<&[u8]> = sealed.chunks(piece).collect();
            let mut out = Vec::new();
            for (i, c) in chunks.iter().enumerate() {
                out.extend_from_slice(&dec.push(c, i + 1 == chunks.len()).unwrap());
            }
            prop_assert_eq!(&out, &plain, "{}", backend.as_str());
            if len > 0 {
                let start = a % len;
                let end = (start + span - 1).min(len - 1);
                let plan = plan_range(start as u64, end as u64, len as u64);
                let fetched = &sealed[plan.cipher_start as usize..=plan.cipher_end as usize];
                let mut dec = Decryptor::for_plan(key_on(backend), 3, len as u64, plan);
                let mut out = Vec::new();
                let chunks: Vec<&[u8]> = fetched.chunks(piece).collect();
                for (i, c) in chunks.iter().enumerate() {
                    out.extend_from_slice(&dec.push(c, i + 1 == chunks.len()).unwrap());
                }
                prop_assert_eq!(&out[..], &plain[start..=end], "{} range", backend.as_str());
            }
            let mut tampered = sealed.clone();
            let at = flip % tampered.len();
            tampered[at] ^= 0x40;
            let mut dec = Decryptor::new(key_on(backend), 3, len as u64);
            let mut released = 0;
            let mut failed = false;
            let chunks: Vec<&[u8]> = tampered.chunks(piece).collect();
            for (i, c) in chunks.iter().enumerate() {
                match dec.push(c, i + 1 == chunks.len()) {
                    Ok(b) => released += b.len(),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            prop_assert!(failed, "{}: a flipped bit must fail", backend.as_str());
            // Only whole frames before the flipped one may have been released.
            prop_assert!(released as u64 <= (at as u64 / SEALED_FRAME_SIZE) * FRAME_SIZE);
        }
    }
}

/// The one-shot path (RustCrypto) withholds and refuses exactly as the
/// streaming path the other tests exercise.
#[test]
fn one_shot_backend_withholds_the_final_frame_and_refuses_bad_lengths() {
    let total = 2 * FRAME_SIZE as usize + 100;
    let plain = data(total);
    for backend in [Backend::RustCrypto, Backend::AwsLc] {
        let mut enc = Encryptor::new(key_on(backend), 0, total as u64);
        let early = enc.push(&plain, false).unwrap();
        assert_eq!(
            early.len() as u64,
            2 * SEALED_FRAME_SIZE,
            "{}",
            backend.as_str()
        );
        let last = enc.push(&[], true).unwrap();
        assert_eq!(last.len(), 100 + TAG_LEN, "{}", backend.as_str());
        let sealed = [early, last].concat();

        let mut long = Encryptor::new(key_on(backend), 0, 10);
        assert!(matches!(
            long.push(&[0; 11], false),
            Err(StreamError::TooLong { .. })
        ));
        let mut short = Encryptor::new(key_on(backend), 0, 10);
        assert!(matches!(
            short.push(&[0; 9], true),
            Err(StreamError::TooShort { .. })
        ));

        let read = |bytes: &[u8]| {
            let mut dec = Decryptor::new(key_on(backend), 0, total as u64);
            dec.push(bytes, true).map(|b| b.to_vec())
        };
        assert_eq!(read(&sealed).unwrap(), plain, "{}", backend.as_str());
        assert!(read(&sealed[..sealed.len() - 1]).is_err(), "truncated");
        assert!(
            read(&[&sealed[..], b"x"].concat()).is_err(),
            "trailing data"
        );
        let mut flipped = sealed.clone();
        flipped[5] ^= 1;
        assert!(read(&flipped).is_err(), "tampered");
    }
}

/// A test framing: the sealed length (4 bytes BE) before each frame, `|`
/// after it, and the count of frames seen at the end.
struct Marks {
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    frames: u8,
}

impl FrameWrap for Marks {
    fn before(&mut self, sealed_len: usize, out: &mut BytesMut) {
        out.extend_from_slice(&(sealed_len as u32).to_be_bytes());
    }
    fn after(&mut self, sealed: &[u8]) -> &'static [u8] {
        self.seen.lock().unwrap().extend_from_slice(sealed);
        self.frames += 1;
        b"|"
    }
    fn finish(&mut self) -> Bytes {
        Bytes::from(vec![b'#', self.frames])
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A wrapped stream is the plain stream with each frame wrapped, on
    /// both backends and for any piece sizes; the wrap sees every sealed
    /// byte once, and its finish comes last.
    #[test]
    fn wrapped_frames_carry_the_same_sealed_bytes(
        len in 0usize..300_000,
        cuts in prop::collection::vec(0usize..300_000, 0..6),
        end_on_last in any::<bool>(),
    ) {
        let plain = data(len);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        points.extend([0, len]);
        points.sort();
        points.dedup();
        let pieces: Vec<&[u8]> = points.windows(2).map(|w| &plain[w[0]..w[1]]).collect();
        let sealed = encrypt_on(Backend::AwsLc, 2, &pieces);
        for backend in [Backend::AwsLc, Backend::RustCrypto] {
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let wrap = Marks { seen: seen.clone(), frames: 0 };
            let mut enc = Encryptor::new(key_on(backend), 2, len as u64).with_wrap(Box::new(wrap));
            let mut out = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                out.extend_from_slice(&enc.push(p, end_on_last && i + 1 == pieces.len()).unwrap());
            }
            if !end_on_last || pieces.is_empty() {
                out.extend_from_slice(&enc.push(&[], true).unwrap());
            }
            let mut expected = Vec::new();
            let mut frames = 0u8;
            for frame in sealed.chunks(SEALED_FRAME_SIZE as usize) {
                expected.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                expected.extend_from_slice(frame);
                expected.push(b'|');
                frames += 1;
            }
            expected.extend_from_slice(&[b'#', frames]);
            prop_assert_eq!(&out, &expected, "{}", backend.as_str());
            prop_assert_eq!(&*seen.lock().unwrap(), &sealed, "{}", backend.as_str());
        }
    }
}

/// Known answers for docs/FORMAT.md, computed by the independent Python
/// reader (`gateway/tests/py/format_reader.py kat`, written from the
/// document with the `cryptography` package): DEK 00 01 .. 1f, salt 5a x 32,
/// context {bucket: demo}, plaintext "sealgate known answer" as one frame of
/// part 0 and of part 3.
#[test]
fn format_known_answers() {
    let dek: [u8; 32] = std::array::from_fn(|i| i as u8);
    let ctx = context_hash([("bucket", "demo")]);
    assert_eq!(
        hex::encode(ctx),
        "3df497bde346637022392b4eebbc8251b49a4b704c520ff3258f80b237568ddc"
    );
    for backend in [Backend::AwsLc, Backend::RustCrypto] {
        let k = ObjectKey::derive(&dek, &[0x5a; 32], &ctx, backend);
        assert_eq!(
            hex::encode(k.commitment),
            "73e383af7a58744860a35b8ecc5c4738d5f4167e5918bd518a0f5fb1e135cee0"
        );
        let plain = b"sealgate known answer";
        for (part, expected) in [
            (
                0,
                "bbb3e571958f1e03ddaae845365f92fcecfbc7da6af01e5fff4ea726e438867d791a1ae058",
            ),
            (
                3,
                "7eae5686ff797b6bf56262aba52025f733b9a7c4be30b5e370bc86610d519982940824f9eb",
            ),
        ] {
            let cipher = ObjectKey::derive(&dek, &[0x5a; 32], &ctx, backend).cipher;
            let mut enc = Encryptor::new(cipher, part, plain.len() as u64);
            let sealed = enc.push(plain, true).unwrap();
            assert_eq!(hex::encode(&sealed), expected, "{backend:?} part {part}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Each piece of plaintext releases, as one piece, exactly the frames
    /// it completed (the final one only with the end), wrapped or not, on
    /// both backends: nothing sealed is held back past the call.
    #[test]
    fn each_piece_seals_the_frames_it_completed(
        len in 0usize..700_000,
        piece in 1usize..300_000,
        wrapped in any::<bool>(),
    ) {
        let plain = data(len);
        let wrapped_frame = SEALED_FRAME_SIZE as usize + if wrapped { 5 } else { 0 };
        let expected = {
            let mut enc = Encryptor::new(key_on(Backend::AwsLc), 1, len as u64);
            if wrapped {
                let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                enc = enc.with_wrap(Box::new(Marks { seen, frames: 0 }));
            }
            enc.push(&plain, true).unwrap()
        };
        for backend in [Backend::AwsLc, Backend::RustCrypto] {
            let mut enc = Encryptor::new(key_on(backend), 1, len as u64);
            if wrapped {
                let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                enc = enc.with_wrap(Box::new(Marks { seen, frames: 0 }));
            }
            let mut out = Vec::new();
            let mut fed = 0usize;
            for c in plain.chunks(piece) {
                let before = out.len();
                out.extend_from_slice(&enc.push(c, false).unwrap());
                fed += c.len();
                // Every full frame but the final one (which waits for the end).
                let sealable = (fed / FRAME_SIZE as usize).min(frame_count(len as u64) as usize - 1);
                prop_assert_eq!(out.len(), sealable * wrapped_frame, "{}", backend.as_str());
                prop_assert!(out.len() >= before);
            }
            out.extend_from_slice(&enc.push(&[], true).unwrap());
            prop_assert_eq!(&out, &expected.to_vec(), "{}", backend.as_str());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Each piece of ciphertext releases, as one piece, exactly the
    /// plaintext of the frames it completed: nothing authenticated is held
    /// back, nothing unauthenticated leaks, on both backends.
    #[test]
    fn each_piece_releases_the_frames_it_completed(
        len in 0usize..700_000,
        piece in 1usize..300_000,
    ) {
        let plain = data(len);
        let sealed = encrypt_on(Backend::AwsLc, 0, &[&plain]);
        for backend in [Backend::AwsLc, Backend::RustCrypto] {
            let mut dec = Decryptor::new(key_on(backend), 0, len as u64);
            let mut fed = 0usize;
            let mut released = Vec::new();
            let chunks: Vec<&[u8]> = sealed.chunks(piece).collect();
            for (i, c) in chunks.iter().enumerate() {
                released.extend_from_slice(&dec.push(c, i + 1 == chunks.len()).unwrap());
                fed += c.len();
                let whole_frames = if fed == sealed.len() {
                    len
                } else {
                    (fed / SEALED_FRAME_SIZE as usize) * FRAME_SIZE as usize
                };
                prop_assert_eq!(released.len(), whole_frames.min(len), "{}", backend.as_str());
            }
            prop_assert_eq!(&released, &plain);
        }
    }
}

/// Output buffers are sized for the frames a piece completes: one frame
/// for Pingora's 64 KiB pieces (a frame never completes twice in one), four
/// or five for 256 KiB pieces, all that are left when the piece reaches the
/// end (a short last frame included).
#[test]
fn buffers_hold_the_frames_a_piece_completes() {
    let f = FRAME_SIZE as usize;
    let s = SEALED_FRAME_SIZE as usize;
    let far = usize::MAX;
    // Encrypting: a 64 KiB piece that starts a frame completes it alone.
    assert_eq!(frames_for_buffer(f, f, f, f, far, 100), 1);
    // A frame begun 1,000 bytes before a 64 KiB piece ends: the next piece
    // completes it and nothing more.
    assert_eq!(frames_for_buffer(f, f, 1_000, f, far, 100), 1);
    // 256 KiB pieces: the rest of this one, or this frame plus the next's.
    assert_eq!(frames_for_buffer(f, f, 256 << 10, 256 << 10, far, 100), 4);
    assert_eq!(frames_for_buffer(f, f, 1_000, 256 << 10, far, 100), 4);
    assert_eq!(frames_for_buffer(f, f, 1_000, (256 << 10) + f, far, 100), 5);
    // A piece reaching the end holds every frame left, the short last one
    // included (one full frame and 100 bytes: two frames).
    assert_eq!(frames_for_buffer(f, f, f + 100, f, f + 100, 2), 2);
    // Decrypting: sealed frames in, 64 KiB + 16 pieces line up one to one.
    assert_eq!(frames_for_buffer(s, s, s, s, far, 100), 1);
    assert_eq!(frames_for_buffer(s, s, 10, f, far, 100), 1);
    assert_eq!(frames_for_buffer(s, s, s + 116, s, s + 116, 2), 2);
    // Never more than the frames left.
    assert_eq!(frames_for_buffer(f, f, 1 << 20, 1 << 20, far, 3), 3);
    assert_eq!(frames_for_buffer(0, f, 0, 0, 0, 0), 1);
}
