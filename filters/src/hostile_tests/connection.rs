//! A connection's first bytes, before any request is read: the PROXY
//! protocol header (from anyone who reaches the listener past the
//! balancer) and the request-header watcher.

use proptest::prelude::*;

use super::{cut, syntax};
use crate::header_watch::HeaderWatch;
use crate::proxy_protocol::{
    encode_v2, parse_v2, v2_payload_len, ProxyHeader, MAX_V2_PAYLOAD, V2_FIXED_LEN, V2_SIGNATURE,
};
use std::net::{IpAddr, SocketAddr};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Any header: the signature, version and family mostly right, the
    /// announced length mostly the payload's, so that the address code is
    /// reached. The announced length stays within the limit, and parsing
    /// answers.
    #[test]
    fn any_proxy_header_is_parsed_or_refused(
        mut fixed in any::<[u8; V2_FIXED_LEN]>(),
        signed in prop::bool::weighted(0.9),
        version in prop_oneof![2 => Just(0x21u8), 1 => Just(0x20u8), 1 => any::<u8>()],
        family in prop_oneof![Just(0x11u8), Just(0x21), Just(0x12), Just(0x00), any::<u8>()],
        payload in prop::collection::vec(any::<u8>(), 0..300),
        announced in prop::option::weighted(0.2, any::<u16>()),
    ) {
        if signed {
            fixed[..V2_SIGNATURE.len()].copy_from_slice(&V2_SIGNATURE);
        }
        fixed[12] = version;
        fixed[13] = family;
        let len = announced.unwrap_or(payload.len() as u16);
        fixed[14..16].copy_from_slice(&len.to_be_bytes());
        if let Ok(n) = v2_payload_len(&fixed) {
            prop_assert!(n <= MAX_V2_PAYLOAD);
            let _ = parse_v2(&fixed, &payload[..n.min(payload.len())]);
        }
        let _ = parse_v2(&fixed, &payload);
    }

    /// What the encoder writes, the parser reads back: the same addresses.
    #[test]
    fn proxy_headers_read_back(
        v4 in any::<bool>(),
        a in any::<[u8; 16]>(),
        b in any::<[u8; 16]>(),
        ports in any::<(u16, u16)>(),
    ) {
        let ip = |x: [u8; 16]| -> IpAddr {
            if v4 {
                IpAddr::from([x[0], x[1], x[2], x[3]])
            } else {
                IpAddr::from(x)
            }
        };
        let (source, destination) = (SocketAddr::new(ip(a), ports.0), SocketAddr::new(ip(b), ports.1));
        let bytes = encode_v2(source, destination);
        let fixed: [u8; V2_FIXED_LEN] = bytes[..V2_FIXED_LEN].try_into().unwrap();
        let n = v2_payload_len(&fixed).unwrap();
        prop_assert_eq!(n, bytes.len() - V2_FIXED_LEN);
        prop_assert_eq!(
            parse_v2(&fixed, &bytes[V2_FIXED_LEN..]).unwrap(),
            ProxyHeader::Proxied { source, destination }
        );
    }

    /// Any traffic in any pieces, both ways: the watcher follows it.
    #[test]
    fn any_traffic_is_watched(
        reads in syntax(&["GET / HTTP/1.1\r\n", "Host: a\r\n", "\r\n", "\r", "\n", "Content-Length: 3\r\n", "abc", "\r\n\r\n"], 40),
        writes in syntax(&["HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 200 OK\r\n", "HTTP/1.0 ", "Content-Length: 0\r\n", "\r\n", "\r\n\r\n"], 40),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut w = HeaderWatch::new();
        let (reads, writes) = (cut(&reads, &cuts), cut(&writes, &cuts));
        for (r, wr) in reads.iter().zip(writes.iter()) {
            w.on_read(r);
            let _ = w.header_open();
            w.on_write(wr);
            let _ = w.header_open();
        }
    }
}
