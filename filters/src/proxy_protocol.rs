//! The PROXY protocol, version 2 (binary), as an AWS NLB or haproxy
//! sends it at the start of each connection: the real client's address.
//! Client input once a listener expects it: strictly checked and bounded;
//! a connection that does not start with a valid header is refused.
//!
//! ```text
//! header = signature (12) || ver_cmd (1) || fam (1) || u16be(len) || len bytes
//! ver_cmd: 0x20 LOCAL (the balancer's own connection, e.g. a health check)
//!          0x21 PROXY
//! fam:     0x11 TCP over IPv4: src (4) dst (4) src port (2) dst port (2)
//!          0x21 TCP over IPv6: src (16) dst (16) src port (2) dst port (2)
//! then TLVs (ignored)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Bytes before the variable part (signature, version and command,
/// family, length).
pub const V2_FIXED_LEN: usize = 16;

/// Longest variable part accepted: addresses and the TLVs a balancer adds
/// (an NLB's endpoint id, haproxy's SSL and unique-id TLVs fit well).
pub const MAX_V2_PAYLOAD: usize = 2048;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer's own connection: the socket's address is the peer.
    Local,
    /// A client's connection, relayed.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
}

/// Why a connection's first bytes are no acceptable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection does not start with a PROXY protocol v2 header")]
    NoHeader,
    #[error("PROXY protocol version or command not supported")]
    Unsupported,
    #[error("PROXY protocol header longer than allowed")]
    TooLong,
    #[error("PROXY protocol addresses do not fit their family")]
    Malformed,
}

/// The length of the variable part the fixed 16 bytes announce.
pub fn v2_payload_len(fixed: &[u8; V2_FIXED_LEN]) -> Result<usize, ProxyError> {
    if fixed[..12] != V2_SIGNATURE {
        return Err(ProxyError::NoHeader);
    }
    if !matches!(fixed[12], 0x20 | 0x21) {
        return Err(ProxyError::Unsupported);
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_V2_PAYLOAD {
        return Err(ProxyError::TooLong);
    }
    Ok(len)
}

/// Reads a whole header: the fixed part and the `payload` it announced.
pub fn parse_v2(fixed: &[u8; V2_FIXED_LEN], payload: &[u8]) -> Result<ProxyHeader, ProxyError> {
    if v2_payload_len(fixed)? != payload.len() {
        return Err(ProxyError::Malformed);
    }
    if fixed[12] == 0x20 {
        return Ok(ProxyHeader::Local);
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match fixed[13] {
        0x11 if payload.len() >= 12 => {
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            Ok(ProxyHeader::Proxied {
                source: SocketAddr::new(ip(&payload[0..4]), port(&payload[8..10])),
                destination: SocketAddr::new(ip(&payload[4..8]), port(&payload[10..12])),
            })
        }
        0x21 if payload.len() >= 36 => {
            let ip = |b: &[u8]| {
                let octets: [u8; 16] = b.try_into().expect("16 bytes sliced");
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Ok(ProxyHeader::Proxied {
                source: SocketAddr::new(ip(&payload[0..16]), port(&payload[32..34])),
                destination: SocketAddr::new(ip(&payload[16..32]), port(&payload[34..36])),
            })
        }
        0x11 | 0x21 => Err(ProxyError::Malformed),
        // UDP, UNIX sockets, unspecified: no client address to use.
        _ => Err(ProxyError::Unsupported),
    }
}

/// A version 2 header for `source` → `destination` (tests, and clients
/// written against this gateway).
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(h: &[u8]) -> ([u8; V2_FIXED_LEN], &[u8]) {
        (h[..V2_FIXED_LEN].try_into().unwrap(), &h[V2_FIXED_LEN..])
    }

    #[test]
    fn addresses_round_trip_v4_and_v6() {
        for (s, d) in [
            ("203.0.113.7:4242", "10.0.0.5:8080"),
            ("[2001:db8::1]:443", "[2001:db8::2]:8080"),
        ] {
            let (s, d): (SocketAddr, SocketAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let h = encode_v2(s, d);
            let (fixed, payload) = split(&h);
            assert_eq!(v2_payload_len(&fixed).unwrap(), payload.len());
            assert_eq!(
                parse_v2(&fixed, payload).unwrap(),
                ProxyHeader::Proxied {
                    source: s,
                    destination: d
                }
            );
        }
    }

    #[test]
    fn tlvs_are_skipped_and_local_has_no_address() {
        let mut h = encode_v2(
            "198.51.100.1:1".parse().unwrap(),
            "10.0.0.1:2".parse().unwrap(),
        );
        // An NLB's VPC endpoint TLV (type 0xEA) after the addresses.
        let tlv = [0xEA, 0x00, 0x04, b'v', b'p', b'c', b'e'];
        h.extend_from_slice(&tlv);
        let len = (12 + tlv.len()) as u16;
        h[14..16].copy_from_slice(&len.to_be_bytes());
        let (fixed, payload) = split(&h);
        assert!(matches!(
            parse_v2(&fixed, payload),
            Ok(ProxyHeader::Proxied { .. })
        ));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        let (fixed, payload) = split(&local);
        assert_eq!(parse_v2(&fixed, payload), Ok(ProxyHeader::Local));
    }

    #[test]
    fn anything_else_is_refused() {
        let mut http = [0u8; V2_FIXED_LEN];
        http.copy_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(v2_payload_len(&http), Err(ProxyError::NoHeader));
        let good = encode_v2("1.2.3.4:5".parse().unwrap(), "6.7.8.9:10".parse().unwrap());
        let (mut fixed, payload) = split(&good);
        fixed[12] = 0x11; // version 1 in a binary header
        assert_eq!(v2_payload_len(&fixed), Err(ProxyError::Unsupported));
        let (mut fixed, _) = split(&good);
        fixed[14..16].copy_from_slice(&(MAX_V2_PAYLOAD as u16 + 1).to_be_bytes());
        assert_eq!(v2_payload_len(&fixed), Err(ProxyError::TooLong));
        let (mut fixed, _) = split(&good);
        fixed[15] = 4; // too short for IPv4 addresses
        assert_eq!(parse_v2(&fixed, &payload[..4]), Err(ProxyError::Malformed));
        let (mut fixed, _) = split(&good);
        fixed[13] = 0x12; // UDP
        assert_eq!(parse_v2(&fixed, payload), Err(ProxyError::Unsupported));
        let (fixed, _) = split(&good);
        assert_eq!(parse_v2(&fixed, &payload[..11]), Err(ProxyError::Malformed));
    }
}
