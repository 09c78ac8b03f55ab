//! Every parser of bytes an attacker or a broken backend controls, fed
//! arbitrary input: each one answers or refuses, never panics, and keeps
//! to its limits. The inputs mix random bytes with pieces of the format's
//! own syntax, or are built in the format's own shape (fields repeated,
//! left out or of any value) with one byte changed, so that they reach past
//! the first check: in a run of 512 cases, dozens of CORS configurations,
//! error documents, policies, presigned queries and PROXY headers parse
//! whole. (The aws-chunked decoder, the listing rewriter, the part-list
//! parsers, request classification and the envelope metadata have such
//! tests beside them.) Grouped by where the input comes from: the
//! connection, the client, the backend. The helpers below build inputs.

mod backend;
mod client;
mod connection;

use proptest::prelude::*;

/// Input made of `pieces` (the format's own syntax) and random bytes, up
/// to `max` of them.
fn syntax(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(pieces).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..4),
        ],
        0..max,
    )
    .prop_map(|v| v.concat())
}

fn text(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    syntax(pieces, max).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `input` with the byte at `flip`'s offset (modulo its length) replaced.
fn changed(input: &mut [u8], flip: Option<(usize, u8)>) {
    if let (Some((at, byte)), false) = (flip, input.is_empty()) {
        let at = at % input.len();
        input[at] = byte;
    }
}

/// The input cut at arbitrary points.
fn cut(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for a in at.into_iter().chain([input.len()]) {
        pieces.push(input[from..a].to_vec());
        from = a;
    }
    pieces
}
