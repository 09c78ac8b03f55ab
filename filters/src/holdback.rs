//! A decoded upload forwarded as it is (signed aws-chunked bodies to
//! pass-through buckets): the last bytes are held back until the body's
//! checks pass, so a failed check leaves the upstream body short and the
//! backend stores nothing.

use bytes::{Bytes, BytesMut};
use sealgate_envelope::StreamError;

/// Bytes of decoded plaintext held back on a decode-only upload until the
/// body's checks pass, so a failed check leaves the upstream body short.
pub const HOLDBACK: usize = 64 * 1024;

/// Forwards decoded bytes, holding back the tail until the end.
pub struct Holdback {
    declared: u64,
    got: u64,
    buf: BytesMut,
    ended: bool,
}

impl Holdback {
    pub fn new(declared: u64) -> Self {
        Self {
            declared,
            got: 0,
            buf: BytesMut::new(),
            ended: false,
        }
    }

    pub fn feed(&mut self, input: &[u8], end: bool) -> Result<(), sealgate_envelope::StreamError> {
        self.got += input.len() as u64;
        if self.got > self.declared {
            return Err(StreamError::TooLong {
                declared: self.declared,
            });
        }
        self.buf.extend_from_slice(input);
        if end {
            if self.got != self.declared {
                return Err(StreamError::TooShort {
                    declared: self.declared,
                    got: self.got,
                });
            }
            self.ended = true;
        }
        Ok(())
    }

    pub fn take_ready(&mut self) -> Bytes {
        let keep = if self.ended {
            0
        } else {
            HOLDBACK.min(self.buf.len())
        };
        let n = self.buf.len() - keep;
        self.buf.split_to(n).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_the_tail_until_the_end_and_checks_the_length() {
        let mut h = Holdback::new(HOLDBACK as u64 + 10);
        h.feed(&vec![1; HOLDBACK + 5], false).unwrap();
        assert_eq!(h.take_ready().len(), 5, "all but the held-back tail");
        h.feed(&[2; 5], true).unwrap();
        assert_eq!(h.take_ready().len(), HOLDBACK + 5, "everything at the end");
        let mut long = Holdback::new(3);
        assert!(matches!(
            long.feed(&[0; 4], false),
            Err(StreamError::TooLong { .. })
        ));
        let mut short = Holdback::new(3);
        assert!(matches!(
            short.feed(&[0; 2], true),
            Err(StreamError::TooShort { .. })
        ));
    }
}
