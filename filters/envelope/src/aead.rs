//! The one small trait the format needs from AES-256-GCM, and its two
//! backends: aws-lc-rs (default: fastest here, FIPS-capable) and RustCrypto's
//! `aes-gcm` (pure Rust, feature `rustcrypto`). Both seal and open either in
//! place or from one buffer into another, so the stream never copies a frame
//! just to encrypt it.

use zeroize::Zeroizing;

/// GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// AES-256 key length.
pub const KEY_LEN: usize = 32;

/// A frame failed authentication (wrong key, tampered or misplaced bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame authentication failed")]
pub struct AuthFailed;

/// AES-256-GCM with a fixed key.
pub trait FrameCipher: Send + Sync {
    /// Encrypts `buf` in place; returns the tag.
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN];
    /// Decrypts `buf` (ciphertext followed by its tag) in place; returns the
    /// plaintext length. On failure the buffer holds no plaintext worth reading.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, AuthFailed>;
    /// Encrypts `plain` into `out` (the same length); returns the tag. The
    /// stream seals frames straight from the client's piece into the
    /// upstream buffer this way.
    fn seal_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plain: &[u8],
        out: &mut [u8],
    ) -> [u8; TAG_LEN];
    /// Decrypts `sealed` (ciphertext followed by its tag) into `out`, which
    /// is exactly the ciphertext's length. On failure `out` may hold
    /// unauthenticated bytes: the caller must discard it.
    fn open_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<(), AuthFailed>;
}

/// AES-256-GCM over one frame fed in pieces, for a backend that can: the
/// stream then encrypts and decrypts each piece of a body straight into the
/// frame's output buffer, whatever the pieces' sizes, so no byte is copied
/// to be gathered into a frame first.
///
/// Crate-private: opened bytes are unauthenticated until `check_tag`, and
/// only the stream state machines, which hold them back, may use it.
pub(crate) trait FrameStream: Send + Sync {
    /// Starts a frame: sealing when `seal`, else opening.
    fn begin(&mut self, seal: bool, nonce: &[u8; NONCE_LEN], aad: &[u8]);
    /// Encrypts or decrypts `input`, appending exactly `input.len()` bytes
    /// to `out`. Opened bytes are unauthenticated until [`Self::check_tag`].
    fn update(&mut self, input: &[u8], out: &mut bytes::BytesMut);
    /// Ends a sealed frame; returns its tag.
    fn seal_tag(&mut self) -> [u8; TAG_LEN];
    /// Ends an opened frame: checks its tag.
    fn check_tag(&mut self, tag: &[u8; TAG_LEN]) -> Result<(), AuthFailed>;
}

/// An object key ready to seal and open frames: streaming where the
/// backend can, else one frame at a time. Opaque: only the encryptor and
/// decryptor use it.
pub struct FrameKey(FrameKeyKind);

enum FrameKeyKind {
    Stream(Box<dyn FrameStream>),
    OneShot(Box<dyn FrameCipher>),
}

impl FrameKey {
    /// The streaming form, if this key has one.
    pub(crate) fn stream_mut(&mut self) -> Option<&mut (dyn FrameStream + 'static)> {
        match &mut self.0 {
            FrameKeyKind::Stream(s) => Some(s.as_mut()),
            FrameKeyKind::OneShot(_) => None,
        }
    }

    /// The one-shot form, if this key has one.
    pub(crate) fn one_shot(&self) -> Option<&dyn FrameCipher> {
        match &self.0 {
            FrameKeyKind::Stream(_) => None,
            FrameKeyKind::OneShot(c) => Some(c.as_ref()),
        }
    }
}

/// Which implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    #[cfg(any(feature = "aws-lc", test))]
    AwsLc,
    #[cfg(any(feature = "rustcrypto", test))]
    RustCrypto,
}

impl Backend {
    /// The build's default: aws-lc-rs when compiled in.
    pub const fn default_backend() -> Self {
        #[cfg(any(feature = "aws-lc", test))]
        {
            Backend::AwsLc
        }
        #[cfg(not(any(feature = "aws-lc", test)))]
        {
            Backend::RustCrypto
        }
    }

    /// Name for logs and benchmarks.
    pub fn as_str(self) -> &'static str {
        match self {
            #[cfg(any(feature = "aws-lc", test))]
            Backend::AwsLc => "aws-lc-rs",
            #[cfg(any(feature = "rustcrypto", test))]
            Backend::RustCrypto => "rustcrypto-aes-gcm",
        }
    }

    /// The frame key for `key`: streaming when the backend can.
    pub fn frame_key(self, key: &Zeroizing<[u8; KEY_LEN]>) -> FrameKey {
        match self.stream(key) {
            Some(s) => FrameKey(FrameKeyKind::Stream(s)),
            None => FrameKey(FrameKeyKind::OneShot(self.cipher(key))),
        }
    }

    /// A frame stream for `key` when the backend has one (aws-lc-rs).
    pub(crate) fn stream(self, key: &Zeroizing<[u8; KEY_LEN]>) -> Option<Box<dyn FrameStream>> {
        match self {
            #[cfg(any(feature = "aws-lc", test))]
            Backend::AwsLc => Some(Box::new(awslc::GcmStream::new(key))),
            #[cfg(any(feature = "rustcrypto", test))]
            Backend::RustCrypto => None,
        }
    }

    /// A cipher for `key`.
    pub fn cipher(self, key: &Zeroizing<[u8; KEY_LEN]>) -> Box<dyn FrameCipher> {
        match self {
            #[cfg(any(feature = "aws-lc", test))]
            Backend::AwsLc => Box::new(awslc::Cipher::new(key)),
            #[cfg(any(feature = "rustcrypto", test))]
            Backend::RustCrypto => Box::new(rustcrypto::Cipher::new(key)),
        }
    }
}

#[cfg(any(feature = "aws-lc", test))]
mod awslc {
    use super::*;
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    use aws_lc_sys as sys;
    use std::os::raw::{c_int, c_void};
    use std::ptr::{self, NonNull};

    /// AWS-LC's EVP AES-256-GCM context, which accepts a frame in pieces
    /// (aws-lc-rs's AEAD API takes a frame in one slice only). The key
    /// schedule is set once; each frame only sets its nonce.
    pub struct GcmStream {
        ctx: NonNull<sys::EVP_CIPHER_CTX>,
    }

    // SAFETY: the context is owned by this value alone and only used
    // through `&mut self`; AWS-LC contexts may move between threads.
    unsafe impl Send for GcmStream {}
    // SAFETY: no method takes `&self`, so a shared reference can do nothing
    // with the context.
    unsafe impl Sync for GcmStream {}

    /// AWS-LC reports success as 1; anything else here is a broken
    /// invariant (lengths are bounded by the frame size), not bad input.
    fn ok(ret: c_int, what: &str) {
        assert_eq!(ret, 1, "AWS-LC {what} failed");
    }

    impl GcmStream {
        pub fn new(key: &[u8; KEY_LEN]) -> Self {
            // SAFETY: a fresh context is checked for null before use; the
            // key is 32 bytes, as AES-256-GCM requires, and is copied into
            // the context's key schedule (cleansed by EVP_CIPHER_CTX_free,
            // which `Drop` calls, also when the setup fails).
            unsafe {
                let ctx = NonNull::new(sys::EVP_CIPHER_CTX_new()).expect("EVP_CIPHER_CTX_new");
                let stream = Self { ctx };
                ok(
                    sys::EVP_CipherInit_ex(
                        stream.ctx.as_ptr(),
                        sys::EVP_aes_256_gcm(),
                        ptr::null_mut(),
                        key.as_ptr(),
                        ptr::null(),
                        1,
                    ),
                    "key setup",
                );
                stream
            }
        }
    }

    impl Drop for GcmStream {
        fn drop(&mut self) {
            // SAFETY: the context came from EVP_CIPHER_CTX_new and is freed once.
            unsafe { sys::EVP_CIPHER_CTX_free(self.ctx.as_ptr()) }
        }
    }

    impl FrameStream for GcmStream {
        fn begin(&mut self, seal: bool, nonce: &[u8; NONCE_LEN], aad: &[u8]) {
            let mut written: c_int = 0;
            // SAFETY: the nonce is GCM's default 12 bytes; a null key keeps
            // the schedule set in `new`; the AAD is passed by pointer and
            // length with a null output, as EVP takes AAD.
            unsafe {
                ok(
                    sys::EVP_CipherInit_ex(
                        self.ctx.as_ptr(),
                        ptr::null(),
                        ptr::null_mut(),
                        ptr::null(),
                        nonce.as_ptr(),
                        c_int::from(seal),
                    ),
                    "nonce setup",
                );
                ok(
                    sys::EVP_CipherUpdate(
                        self.ctx.as_ptr(),
                        ptr::null_mut(),
                        &mut written,
                        aad.as_ptr(),
                        c_int::try_from(aad.len()).expect("short AAD"),
                    ),
                    "AAD",
                );
            }
        }

        fn update(&mut self, input: &[u8], out: &mut bytes::BytesMut) {
            if input.is_empty() {
                return;
            }
            let len = c_int::try_from(input.len()).expect("pieces are at most a frame");
            out.reserve(input.len());
            let spare = out.spare_capacity_mut();
            let mut written: c_int = 0;
            // SAFETY: `spare` has room for `input.len()` bytes (reserved
            // above); GCM is a stream cipher, so EVP writes exactly `len`
            // bytes there and reads none of it; only then are they counted
            // as initialised.
            unsafe {
                ok(
                    sys::EVP_CipherUpdate(
                        self.ctx.as_ptr(),
                        spare.as_mut_ptr().cast::<u8>(),
                        &mut written,
                        input.as_ptr(),
                        len,
                    ),
                    "update",
                );
                assert_eq!(written, len, "GCM writes what it reads");
                out.set_len(out.len() + input.len());
            }
        }

        fn seal_tag(&mut self) -> [u8; TAG_LEN] {
            let mut tag = [0u8; TAG_LEN];
            let mut written: c_int = 0;
            let mut none = [0u8; 16];
            // SAFETY: GCM's final step writes no bytes; the tag buffer holds
            // the 16 bytes asked for.
            unsafe {
                ok(
                    sys::EVP_CipherFinal_ex(self.ctx.as_ptr(), none.as_mut_ptr(), &mut written),
                    "final",
                );
                ok(
                    sys::EVP_CIPHER_CTX_ctrl(
                        self.ctx.as_ptr(),
                        sys::EVP_CTRL_GCM_GET_TAG,
                        TAG_LEN as c_int,
                        tag.as_mut_ptr().cast::<c_void>(),
                    ),
                    "tag",
                );
            }
            tag
        }

        fn check_tag(&mut self, tag: &[u8; TAG_LEN]) -> Result<(), AuthFailed> {
            let mut expected = *tag;
            let mut written: c_int = 0;
            let mut none = [0u8; 16];
            // SAFETY: the tag is 16 bytes (copied, as the ctrl takes a
            // mutable pointer); GCM's final step writes no bytes and
            // compares the tag in constant time.
            unsafe {
                ok(
                    sys::EVP_CIPHER_CTX_ctrl(
                        self.ctx.as_ptr(),
                        sys::EVP_CTRL_GCM_SET_TAG,
                        TAG_LEN as c_int,
                        expected.as_mut_ptr().cast::<c_void>(),
                    ),
                    "set tag",
                );
                if sys::EVP_CipherFinal_ex(self.ctx.as_ptr(), none.as_mut_ptr(), &mut written) == 1
                {
                    Ok(())
                } else {
                    Err(AuthFailed)
                }
            }
        }
    }

    pub struct Cipher(LessSafeKey);

    impl Cipher {
        pub fn new(key: &[u8; KEY_LEN]) -> Self {
            let unbound =
                UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is valid for AES-256-GCM");
            Self(LessSafeKey::new(unbound))
        }
    }

    impl FrameCipher for Cipher {
        fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
            let tag = self
                .0
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    buf,
                )
                .expect("sealing fails only for buffers beyond GCM's 64 GiB limit");
            let mut out = [0u8; TAG_LEN];
            out.copy_from_slice(tag.as_ref());
            out
        }

        fn open(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            buf: &mut [u8],
        ) -> Result<usize, AuthFailed> {
            self.0
                .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
                .map(|p| p.len())
                .map_err(|_| AuthFailed)
        }

        fn seal_into(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            plain: &[u8],
            out: &mut [u8],
        ) -> [u8; TAG_LEN] {
            let mut tag = [0u8; TAG_LEN];
            self.0
                .seal_out_of_place_scatter(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    plain,
                    out,
                    &[],
                    &mut tag,
                )
                .expect("the stream passes equal lengths below GCM's 64 GiB limit");
            tag
        }

        fn open_into(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            sealed: &[u8],
            out: &mut [u8],
        ) -> Result<(), AuthFailed> {
            let body = sealed.len().checked_sub(TAG_LEN).ok_or(AuthFailed)?;
            let (ct, tag) = sealed.split_at(body);
            self.0
                .open_separate_gather(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    ct,
                    tag,
                    out,
                )
                .map_err(|_| AuthFailed)
        }
    }
}

#[cfg(any(feature = "rustcrypto", test))]
mod rustcrypto {
    use super::*;
    use aes_gcm::aead::inout::InOutBuf;
    use aes_gcm::aead::AeadInOut;
    use aes_gcm::{Aes256Gcm, KeyInit};

    pub struct Cipher(Aes256Gcm);

    impl Cipher {
        pub fn new(key: &[u8; KEY_LEN]) -> Self {
            Self(Aes256Gcm::new(key.into()))
        }
    }

    impl FrameCipher for Cipher {
        fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
            let tag = self
                .0
                .encrypt_inout_detached(nonce.into(), aad, buf.into())
                .expect("sealing fails only for buffers beyond GCM's limit");
            tag.into()
        }

        fn open(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            buf: &mut [u8],
        ) -> Result<usize, AuthFailed> {
            if buf.len() < TAG_LEN {
                return Err(AuthFailed);
            }
            let (ct, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
            let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| AuthFailed)?;
            self.0
                .decrypt_inout_detached(nonce.into(), aad, ct.into(), &tag.into())
                .map_err(|_| AuthFailed)?;
            Ok(ct.len())
        }

        fn seal_into(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            plain: &[u8],
            out: &mut [u8],
        ) -> [u8; TAG_LEN] {
            let buf = InOutBuf::new(plain, out).expect("the stream passes equal lengths");
            self.0
                .encrypt_inout_detached(nonce.into(), aad, buf)
                .expect("sealing fails only for buffers beyond GCM's limit")
                .into()
        }

        fn open_into(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            sealed: &[u8],
            out: &mut [u8],
        ) -> Result<(), AuthFailed> {
            let body = sealed.len().checked_sub(TAG_LEN).ok_or(AuthFailed)?;
            let (ct, tag) = sealed.split_at(body);
            let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| AuthFailed)?;
            let buf = InOutBuf::new(ct, out).map_err(|_| AuthFailed)?;
            self.0
                .decrypt_inout_detached(nonce.into(), aad, buf, &tag.into())
                .map_err(|_| AuthFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new([7u8; KEY_LEN])
    }

    #[test]
    fn each_backend_opens_what_the_other_sealed() {
        let nonce = [1u8; NONCE_LEN];
        for (a, b) in [
            (Backend::AwsLc, Backend::RustCrypto),
            (Backend::RustCrypto, Backend::AwsLc),
        ] {
            let mut buf = b"attack at dawn, frame of plaintext".to_vec();
            let tag = a.cipher(&key()).seal(&nonce, b"aad", &mut buf);
            assert_ne!(&buf[..], b"attack at dawn, frame of plaintext");
            buf.extend_from_slice(&tag);
            let n = b.cipher(&key()).open(&nonce, b"aad", &mut buf).unwrap();
            assert_eq!(
                &buf[..n],
                b"attack at dawn, frame of plaintext",
                "{} -> {}",
                a.as_str(),
                b.as_str()
            );
        }
    }

    #[test]
    fn out_of_place_matches_in_place_across_backends() {
        let nonce = [3u8; NONCE_LEN];
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for (a, b) in [
            (Backend::AwsLc, Backend::RustCrypto),
            (Backend::RustCrypto, Backend::AwsLc),
        ] {
            let mut in_place = plain.clone();
            let tag_in_place = a.cipher(&key()).seal(&nonce, b"aad", &mut in_place);
            let mut sealed = vec![0u8; plain.len()];
            let tag = a
                .cipher(&key())
                .seal_into(&nonce, b"aad", &plain, &mut sealed);
            assert_eq!((&sealed, tag), (&in_place, tag_in_place), "{}", a.as_str());
            sealed.extend_from_slice(&tag);
            let mut opened = vec![0u8; plain.len()];
            b.cipher(&key())
                .open_into(&nonce, b"aad", &sealed, &mut opened)
                .unwrap();
            assert_eq!(opened, plain, "{} -> {}", a.as_str(), b.as_str());
            sealed[10] ^= 1;
            assert_eq!(
                b.cipher(&key())
                    .open_into(&nonce, b"aad", &sealed, &mut opened),
                Err(AuthFailed)
            );
            assert_eq!(
                b.cipher(&key())
                    .open_into(&nonce, b"aad", &sealed[..TAG_LEN - 1], &mut []),
                Err(AuthFailed)
            );
        }
    }

    #[test]
    fn streamed_frames_match_one_shot_sealing_for_any_pieces() {
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let mut stream = Backend::AwsLc.stream(&key()).expect("aws-lc streams");
        assert!(Backend::RustCrypto.stream(&key()).is_none());
        for (frame, piece) in [(0u8, 1usize), (1, 29 * 1024 + 7), (2, 65_536), (3, 70_000)] {
            let nonce = [frame; NONCE_LEN];
            let mut one_shot = plain.clone();
            let tag = Backend::RustCrypto
                .cipher(&key())
                .seal(&nonce, b"aad", &mut one_shot);
            stream.begin(true, &nonce, b"aad");
            let mut sealed = bytes::BytesMut::new();
            for p in plain.chunks(piece) {
                stream.update(p, &mut sealed);
            }
            assert_eq!(&sealed[..], &one_shot[..], "piece {piece}");
            assert_eq!(stream.seal_tag(), tag, "piece {piece}");
            // And back, in other pieces, with the tag checked.
            stream.begin(false, &nonce, b"aad");
            let mut opened = bytes::BytesMut::new();
            for p in one_shot.chunks(piece / 2 + 1) {
                stream.update(p, &mut opened);
            }
            assert_eq!(stream.check_tag(&tag), Ok(()));
            assert_eq!(&opened[..], &plain[..]);
            let mut bad = tag;
            bad[0] ^= 1;
            stream.begin(false, &nonce, b"aad");
            stream.update(&one_shot, &mut bytes::BytesMut::new());
            assert_eq!(stream.check_tag(&bad), Err(AuthFailed));
            stream.begin(false, &nonce, b"other aad");
            stream.update(&one_shot, &mut bytes::BytesMut::new());
            assert_eq!(stream.check_tag(&tag), Err(AuthFailed));
        }
    }

    #[test]
    fn wrong_aad_nonce_or_bit_fails_in_both() {
        for backend in [Backend::AwsLc, Backend::RustCrypto] {
            let c = backend.cipher(&key());
            let mut sealed = b"hello".to_vec();
            let tag = c.seal(&[0; NONCE_LEN], b"a", &mut sealed);
            sealed.extend_from_slice(&tag);
            assert_eq!(
                c.open(&[0; NONCE_LEN], b"b", &mut sealed.clone()),
                Err(AuthFailed)
            );
            assert_eq!(
                c.open(&[1; NONCE_LEN], b"a", &mut sealed.clone()),
                Err(AuthFailed)
            );
            let mut flipped = sealed.clone();
            flipped[0] ^= 1;
            assert_eq!(c.open(&[0; NONCE_LEN], b"a", &mut flipped), Err(AuthFailed));
            assert_eq!(
                c.open(&[0; NONCE_LEN], b"a", &mut sealed[..3].to_vec()),
                Err(AuthFailed)
            );
        }
    }
}
