//! Helpers shared by the integration tests (`mod common;`). Each test
//! crate uses some of them, so the rest would warn as dead code there.
#![allow(dead_code)]

/// A TCP port nobody listened on a moment ago: for a private epmd or a
/// node's listener. (Another process can take it in between; on a test
/// machine that has not happened.)
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().unwrap().port()
}

/// Decodes standard base64 (padding optional), as the vector files use.
pub fn b64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = vec![];
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().take_while(|c| *c != b'=') {
        let v = T.iter().position(|x| *x == c).unwrap_or_else(|| panic!("not base64: {s}"));
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}
