//! Handshake packets (distribution protocol version 6). Every packet is
//! framed by a 2-byte big-endian length; the first byte is a tag.

use super::HandshakeError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Handshake packets are small; anything bigger is a confused or hostile
/// peer, not a node name.
const MAX_PACKET: usize = 2048;

/// `'N'` send_name (OTP 23+ form).
#[derive(Debug, Clone, PartialEq)]
pub struct SendName {
    pub flags: u64,
    pub creation: u32,
    pub name: String,
}

/// `'N'` challenge (OTP 23+ form).
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    pub flags: u64,
    pub challenge: u32,
    pub creation: u32,
    pub name: String,
}

/// Writes one handshake packet behind a length of `header` bytes: 2 over
/// TCP (`inet_tcp_dist`), 4 over TLS (`inet_tls_dist` runs its handshake
/// with `{packet, 4}`).
pub async fn write_packet<S: AsyncWrite + Unpin>(s: &mut S, header: usize, body: &[u8]) -> Result<(), HandshakeError> {
    let mut buf = Vec::with_capacity(body.len() + 4);
    if header == 4 {
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    } else {
        buf.extend_from_slice(&(body.len() as u16).to_be_bytes());
    }
    buf.extend_from_slice(body);
    s.write_all(&buf).await?;
    s.flush().await?;
    Ok(())
}

pub async fn read_packet<S: AsyncRead + Unpin>(s: &mut S, header: usize) -> Result<Vec<u8>, HandshakeError> {
    let len = if header == 4 { s.read_u32().await? as usize } else { s.read_u16().await? as usize };
    if len == 0 || len > MAX_PACKET {
        return Err(HandshakeError::Protocol(format!("handshake packet length {len}")));
    }
    let mut buf = vec![0; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

impl SendName {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(15 + self.name.len());
        b.push(b'N');
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&self.creation.to_be_bytes());
        b.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        b.extend_from_slice(self.name.as_bytes());
        b
    }

    pub fn decode(p: &[u8]) -> Result<SendName, HandshakeError> {
        match p.first() {
            Some(b'N') => {
                let mut r = Reader(&p[1..]);
                let flags = r.u64()?;
                let creation = r.u32()?;
                let name = r.name()?;
                Ok(SendName { flags, creation, name })
            }
            Some(b'n') => Err(HandshakeError::Protocol(
                "peer uses the pre-OTP-23 handshake (version 5); erlnode speaks version 6 only".into(),
            )),
            _ => Err(HandshakeError::Protocol(format!("expected send_name, got {:?}", p.first()))),
        }
    }
}

impl Challenge {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(19 + self.name.len());
        b.push(b'N');
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&self.challenge.to_be_bytes());
        b.extend_from_slice(&self.creation.to_be_bytes());
        b.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        b.extend_from_slice(self.name.as_bytes());
        b
    }

    pub fn decode(p: &[u8]) -> Result<Challenge, HandshakeError> {
        if p.first() != Some(&b'N') {
            return Err(HandshakeError::Protocol(format!("expected challenge, got {:?}", p.first())));
        }
        let mut r = Reader(&p[1..]);
        let flags = r.u64()?;
        let challenge = r.u32()?;
        let creation = r.u32()?;
        let name = r.name()?;
        Ok(Challenge { flags, challenge, creation, name })
    }
}

/// `'r'` challenge_reply: our challenge to the peer and our digest of its.
pub fn encode_challenge_reply(challenge: u32, digest: &[u8; 16]) -> Vec<u8> {
    let mut b = Vec::with_capacity(21);
    b.push(b'r');
    b.extend_from_slice(&challenge.to_be_bytes());
    b.extend_from_slice(digest);
    b
}

pub fn decode_challenge_reply(p: &[u8]) -> Result<(u32, [u8; 16]), HandshakeError> {
    if p.len() != 21 || p[0] != b'r' {
        return Err(HandshakeError::Protocol("malformed challenge_reply".into()));
    }
    let challenge = u32::from_be_bytes(p[1..5].try_into().unwrap());
    Ok((challenge, p[5..21].try_into().unwrap()))
}

pub fn encode_challenge_ack(digest: &[u8; 16]) -> Vec<u8> {
    let mut b = Vec::with_capacity(17);
    b.push(b'a');
    b.extend_from_slice(digest);
    b
}

pub fn decode_challenge_ack(p: &[u8]) -> Result<[u8; 16], HandshakeError> {
    if p.len() != 17 || p[0] != b'a' {
        return Err(HandshakeError::Protocol("malformed challenge_ack".into()));
    }
    Ok(p[1..17].try_into().unwrap())
}

pub fn encode_status(status: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + status.len());
    b.push(b's');
    b.extend_from_slice(status.as_bytes());
    b
}

pub fn decode_status(p: &[u8]) -> Result<String, HandshakeError> {
    if p.first() != Some(&b's') {
        return Err(HandshakeError::Protocol(format!("expected status, got {:?}", p.first())));
    }
    Ok(String::from_utf8_lossy(&p[1..]).into_owned())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], HandshakeError> {
        if self.0.len() < n {
            return Err(HandshakeError::Protocol("truncated handshake packet".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u64(&mut self) -> Result<u64, HandshakeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, HandshakeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn name(&mut self) -> Result<String, HandshakeError> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().unwrap()) as usize;
        let bytes = self.take(len)?;
        let name = std::str::from_utf8(bytes)
            .map_err(|_| HandshakeError::Protocol("node name is not UTF-8".into()))?;
        if !name.contains('@') || name.len() > 255 {
            return Err(HandshakeError::Protocol(format!("invalid node name {name:?}")));
        }
        Ok(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_name_round_trip() {
        let m = SendName { flags: 0x1_0000_0001, creation: 7, name: "a@b".into() };
        assert_eq!(SendName::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn challenge_round_trip_and_truncation() {
        let c = Challenge { flags: 5, challenge: 99, creation: 3, name: "x@y".into() };
        let enc = c.encode();
        assert_eq!(Challenge::decode(&enc).unwrap(), c);
        for cut in 1..enc.len() {
            assert!(Challenge::decode(&enc[..cut]).is_err());
        }
    }

    #[test]
    fn rejects_old_handshake_with_reason() {
        let err = SendName::decode(b"n\x00\x05\x00\x00\x00\x00a@b").unwrap_err();
        assert!(err.to_string().contains("version 5"));
    }
}
