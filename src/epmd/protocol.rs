//! EPMD wire format: pure encode/decode, no I/O.
//!
//! Kept free of sockets so the client and the embedded server share one
//! definition of the format and so every corner of it can be unit tested.
//! Layouts and limits follow OTP's `erl_epmd.erl` and `epmd_srv.c`: every
//! integer is big-endian, every request is prefixed by a 2-byte length that
//! does not count itself, and replies carry no length prefix at all (the
//! server closes the connection after one reply, except for ALIVE2).

use bytes::{BufMut, Bytes, BytesMut};

/// Port EPMD listens on unless `ERL_EPMD_PORT` / `-port` says otherwise.
pub const DEFAULT_PORT: u16 = 4369;

/// Request tags (first byte of a request body).
pub const ALIVE2_REQ: u8 = 120;
pub const PORT_PLEASE2_REQ: u8 = 122;
pub const NAMES_REQ: u8 = 110;
pub const DUMP_REQ: u8 = 100;
pub const KILL_REQ: u8 = 107;
pub const STOP_REQ: u8 = 115;

/// Reply tags (first byte of a reply).
pub const ALIVE2_RESP: u8 = 121;
pub const ALIVE2_X_RESP: u8 = 118;
pub const PORT2_RESP: u8 = 119;

/// The only transport EPMD has ever defined: TCP over IPv4.
pub const PROTOCOL_TCP_IPV4: u8 = 0;

/// Distribution version 6 is the only one OTP 25+ speaks; it is also the
/// threshold at which epmd switches to 32-bit creations (ALIVE2_X_RESP).
pub const DIST_VERSION_6: u16 = 6;

/// Node names are atoms: at most 255 characters, UTF-8, so at most
/// 255 * 4 bytes (epmd's `MAXSYMLEN`). The same byte limit bounds `extra`.
pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_NAME_BYTES: usize = 255 * 4;
pub const MAX_EXTRA_BYTES: usize = 255 * 4;

/// Largest request body epmd accepts. Its input buffer is `3 * MAXSYMLEN`
/// bytes including the 2-byte header and it rejects `len + 2 >= buffer`;
/// matching it means anything real epmd serves, we serve, and nothing
/// larger can make us buffer more.
pub const MAX_REQUEST_LEN: usize = 3 * MAX_NAME_BYTES - 3;

/// Creation epmd sends back when registration fails (`epmd_srv.c`).
pub const FAILED_CREATION: u32 = 99;

/// What kind of node is registered: epmd stores the byte verbatim, so an
/// unexpected value from a foreign registrant is kept rather than refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// `M` (77): a normal Erlang node.
    Normal,
    /// `H` (72): a hidden node (C nodes, `-hidden`, most foreign nodes).
    Hidden,
    /// Any other byte a registrant chose to send.
    Other(u8),
}

impl NodeKind {
    pub const fn to_byte(self) -> u8 {
        match self {
            NodeKind::Normal => 77,
            NodeKind::Hidden => 72,
            NodeKind::Other(b) => b,
        }
    }

    pub const fn from_byte(b: u8) -> Self {
        match b {
            77 => NodeKind::Normal,
            72 => NodeKind::Hidden,
            other => NodeKind::Other(other),
        }
    }
}

impl From<u8> for NodeKind {
    fn from(b: u8) -> Self {
        NodeKind::from_byte(b)
    }
}

impl From<NodeKind> for u8 {
    fn from(k: NodeKind) -> u8 {
        k.to_byte()
    }
}

/// One registered node, as carried by ALIVE2_REQ and PORT2_RESP (the two
/// messages have the same fields in the same order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// Distribution listen port of the node.
    pub port: u16,
    pub kind: NodeKind,
    pub protocol: u8,
    pub highest_version: u16,
    pub lowest_version: u16,
    /// The part of the node name before `@`.
    pub name: String,
    pub extra: Vec<u8>,
}

impl NodeEntry {
    /// An entry with the values an OTP 25 node registers with: TCP/IPv4,
    /// distribution version 6 only, no extra data.
    pub fn new(name: impl Into<String>, port: u16, kind: NodeKind) -> Self {
        NodeEntry {
            port,
            kind,
            protocol: PROTOCOL_TCP_IPV4,
            highest_version: DIST_VERSION_6,
            lowest_version: DIST_VERSION_6,
            name: name.into(),
            extra: Vec::new(),
        }
    }

    /// Whether epmd answers this registrant with a 32-bit creation.
    pub fn wants_extended_creation(&self) -> bool {
        self.highest_version >= DIST_VERSION_6
    }
}

/// Why bytes could not be encoded or decoded as EPMD messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("request length {0} is outside 1..={MAX_REQUEST_LEN}")]
    BadLength(usize),
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("unknown request type {0}")]
    UnknownRequest(u8),
    #[error("expected {expected} reply, got tag {got}")]
    UnexpectedReply { expected: &'static str, got: u8 },
    #[error("invalid node name: {0}")]
    InvalidName(&'static str),
    #[error("extra data is {0} bytes, limit is {MAX_EXTRA_BYTES}")]
    ExtraTooLong(usize),
    #[error("reply is larger than the {0}-byte limit")]
    ReplyTooLarge(usize),
}

/// Checks a node name the way epmd does before it will store or look one
/// up, so we fail locally with a clear reason instead of getting epmd's
/// uninformative error byte (which OTP reports as "duplicate name").
pub fn validate_name(name: &str) -> Result<(), ProtocolError> {
    if name.is_empty() {
        return Err(ProtocolError::InvalidName("empty"));
    }
    if name.as_bytes().contains(&0) {
        return Err(ProtocolError::InvalidName("contains a NUL byte"));
    }
    if name.len() > MAX_NAME_BYTES || name.chars().count() > MAX_NAME_CHARS {
        return Err(ProtocolError::InvalidName("longer than 255 characters"));
    }
    Ok(())
}

fn name_from_bytes(bytes: &[u8]) -> Result<String, ProtocolError> {
    let name =
        std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidName("not valid UTF-8"))?;
    validate_name(name)?;
    Ok(name.to_owned())
}

/// A request as sent by a client to EPMD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Alive2(NodeEntry),
    PortPlease2 { name: String },
    Names,
    Dump,
    Kill,
    Stop { name: String },
}

impl Request {
    /// Encodes the request including its 2-byte length prefix.
    pub fn encode(&self) -> Result<Bytes, ProtocolError> {
        let mut body = BytesMut::with_capacity(64);
        match self {
            Request::Alive2(e) => {
                validate_name(&e.name)?;
                if e.extra.len() > MAX_EXTRA_BYTES {
                    return Err(ProtocolError::ExtraTooLong(e.extra.len()));
                }
                body.put_u8(ALIVE2_REQ);
                body.put_u16(e.port);
                body.put_u8(e.kind.to_byte());
                body.put_u8(e.protocol);
                body.put_u16(e.highest_version);
                body.put_u16(e.lowest_version);
                // Lengths fit: both are bounded by 1020 above.
                body.put_u16(e.name.len() as u16);
                body.put_slice(e.name.as_bytes());
                body.put_u16(e.extra.len() as u16);
                body.put_slice(&e.extra);
            }
            Request::PortPlease2 { name } => {
                validate_name(name)?;
                body.put_u8(PORT_PLEASE2_REQ);
                body.put_slice(name.as_bytes());
            }
            Request::Names => body.put_u8(NAMES_REQ),
            Request::Dump => body.put_u8(DUMP_REQ),
            Request::Kill => body.put_u8(KILL_REQ),
            Request::Stop { name } => {
                validate_name(name)?;
                body.put_u8(STOP_REQ);
                body.put_slice(name.as_bytes());
            }
        }
        let mut out = BytesMut::with_capacity(body.len() + 2);
        out.put_u16(body.len() as u16);
        out.put_slice(&body);
        Ok(out.freeze())
    }

    /// Decodes a request body (the bytes after the length prefix).
    ///
    /// Bytes after a complete request are ignored, as epmd ignores them.
    pub fn decode(body: &[u8]) -> Result<Request, ProtocolError> {
        let (&tag, rest) = body
            .split_first()
            .ok_or(ProtocolError::Truncated("request"))?;
        match tag {
            ALIVE2_REQ => decode_alive2(rest).map(Request::Alive2),
            PORT_PLEASE2_REQ => {
                // Very old clients NUL-terminate the name; epmd strips it.
                let name = rest.strip_suffix(&[0]).unwrap_or(rest);
                Ok(Request::PortPlease2 {
                    name: name_from_bytes(name)?,
                })
            }
            NAMES_REQ => Ok(Request::Names),
            DUMP_REQ => Ok(Request::Dump),
            KILL_REQ => Ok(Request::Kill),
            STOP_REQ => {
                let name = rest.strip_suffix(&[0]).unwrap_or(rest);
                Ok(Request::Stop {
                    name: name_from_bytes(name)?,
                })
            }
            other => Err(ProtocolError::UnknownRequest(other)),
        }
    }
}

/// Validates a request's 2-byte length prefix and returns the body length.
pub fn request_body_len(header: [u8; 2]) -> Result<usize, ProtocolError> {
    let len = u16::from_be_bytes(header) as usize;
    if len == 0 || len > MAX_REQUEST_LEN {
        return Err(ProtocolError::BadLength(len));
    }
    Ok(len)
}

/// A cursor over a byte slice whose reads fail with `Truncated(what)`.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::Truncated(self.what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Decodes the node fields shared by ALIVE2_REQ and PORT2_RESP.
fn decode_entry(r: &mut Reader<'_>) -> Result<NodeEntry, ProtocolError> {
    let port = r.u16()?;
    let kind = NodeKind::from_byte(r.u8()?);
    let protocol = r.u8()?;
    let highest_version = r.u16()?;
    let lowest_version = r.u16()?;
    let name_len = r.u16()? as usize;
    let name = name_from_bytes(r.take(name_len)?)?;
    let extra_len = r.u16()? as usize;
    if extra_len > MAX_EXTRA_BYTES {
        return Err(ProtocolError::ExtraTooLong(extra_len));
    }
    let extra = r.take(extra_len)?.to_vec();
    Ok(NodeEntry {
        port,
        kind,
        protocol,
        highest_version,
        lowest_version,
        name,
        extra,
    })
}

fn decode_alive2(rest: &[u8]) -> Result<NodeEntry, ProtocolError> {
    decode_entry(&mut Reader {
        buf: rest,
        what: "ALIVE2_REQ",
    })
}

fn put_entry(out: &mut BytesMut, e: &NodeEntry) {
    out.put_u16(e.port);
    out.put_u8(e.kind.to_byte());
    out.put_u8(e.protocol);
    out.put_u16(e.highest_version);
    out.put_u16(e.lowest_version);
    out.put_u16(e.name.len() as u16);
    out.put_slice(e.name.as_bytes());
    out.put_u16(e.extra.len() as u16);
    out.put_slice(&e.extra);
}

/// Reply to ALIVE2_REQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliveResponse {
    /// 0 on success; anything else is a refusal (epmd does not say why).
    pub result: u8,
    pub creation: u32,
    /// ALIVE2_X_RESP (32-bit creation) rather than ALIVE2_RESP (16-bit).
    pub extended: bool,
}

impl AliveResponse {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(6);
        if self.extended {
            out.put_u8(ALIVE2_X_RESP);
            out.put_u8(self.result);
            out.put_u32(self.creation);
        } else {
            out.put_u8(ALIVE2_RESP);
            out.put_u8(self.result);
            // ALIVE2_RESP only has room for 16 bits; epmd sends 1..=3 here.
            out.put_u16(self.creation as u16);
        }
        out.freeze()
    }

    /// Decodes a reply from the start of `buf`; `Ok(None)` means more
    /// bytes are needed.
    pub fn decode(buf: &[u8]) -> Result<Option<AliveResponse>, ProtocolError> {
        let Some(&tag) = buf.first() else {
            return Ok(None);
        };
        let (extended, need) = match tag {
            ALIVE2_X_RESP => (true, 6),
            ALIVE2_RESP => (false, 4),
            got => {
                return Err(ProtocolError::UnexpectedReply {
                    expected: "ALIVE2_RESP/ALIVE2_X_RESP",
                    got,
                })
            }
        };
        if buf.len() < need {
            return Ok(None);
        }
        let mut r = Reader {
            buf: &buf[1..need],
            what: "ALIVE2 reply",
        };
        let result = r.u8()?;
        let creation = if extended { r.u32()? } else { r.u16()? as u32 };
        Ok(Some(AliveResponse {
            result,
            creation,
            extended,
        }))
    }
}

/// Reply to PORT_PLEASE2_REQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortResponse {
    Found(NodeEntry),
    /// The name is not registered (epmd sends result 1 and nothing else).
    NotFound,
}

impl PortResponse {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(PORT2_RESP);
        match self {
            PortResponse::Found(e) => {
                out.put_u8(0);
                put_entry(&mut out, e);
            }
            PortResponse::NotFound => out.put_u8(1),
        }
        out.freeze()
    }

    /// Decodes a reply from the start of `buf`; `Ok(None)` means more
    /// bytes are needed.
    pub fn decode(buf: &[u8]) -> Result<Option<PortResponse>, ProtocolError> {
        let Some(&tag) = buf.first() else {
            return Ok(None);
        };
        if tag != PORT2_RESP {
            return Err(ProtocolError::UnexpectedReply {
                expected: "PORT2_RESP",
                got: tag,
            });
        }
        let Some(&result) = buf.get(1) else {
            return Ok(None);
        };
        if result != 0 {
            return Ok(Some(PortResponse::NotFound));
        }
        let mut r = Reader {
            buf: &buf[2..],
            what: "PORT2_RESP",
        };
        match decode_entry(&mut r) {
            Ok(e) => Ok(Some(PortResponse::Found(e))),
            Err(ProtocolError::Truncated(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Largest well-formed reply, so a reader can stop a babbling peer.
    pub const MAX_LEN: usize = 2 + 10 + MAX_NAME_BYTES + 2 + MAX_EXTRA_BYTES;
}

/// Encodes a NAMES reply exactly as epmd does: the 4-byte port epmd
/// listens on, then one `name <name> at port <port>\n` line per node.
/// `erl_epmd:names/1` and `epmd -names` both parse this text.
pub fn encode_names_reply<'a>(
    epmd_port: u32,
    nodes: impl IntoIterator<Item = (&'a str, u16)>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    out.put_u32(epmd_port);
    for (name, port) in nodes {
        out.put_slice(format!("name {name} at port {port}\n").as_bytes());
    }
    out.freeze()
}

/// Parses a complete NAMES reply (read until the server closed) into the
/// port epmd reports and the `(name, port)` pairs.
///
/// Lines that do not match the format, and a final line without newline,
/// are skipped, as `erl_epmd` skips them.
pub fn parse_names_reply(buf: &[u8]) -> Result<(u32, Vec<(String, u16)>), ProtocolError> {
    let mut r = Reader {
        buf,
        what: "NAMES reply (no 4-byte port header)",
    };
    let epmd_port = r.u32()?;
    let mut body = r.buf;
    let mut names = Vec::new();
    while let Some(nl) = body.iter().position(|&b| b == b'\n') {
        if let Some(entry) = parse_names_line(&body[..nl]) {
            names.push(entry);
        }
        body = &body[nl + 1..];
    }
    Ok((epmd_port, names))
}

fn parse_names_line(line: &[u8]) -> Option<(String, u16)> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("name ")?;
    // Like erl_epmd: the name ends at the first space.
    let (name, rest) = rest.split_once(' ')?;
    let port = rest.strip_prefix("at port ")?.parse().ok()?;
    Some((name.to_owned(), port))
}

/// Encodes a DUMP reply in epmd's format (each line NUL-terminated).
/// We have no file descriptors, so a connection id stands in for `fd`.
pub fn encode_dump_reply<'a>(
    epmd_port: u32,
    nodes: impl IntoIterator<Item = (&'a str, u16, u64)>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    out.put_u32(epmd_port);
    for (name, port, id) in nodes {
        out.put_slice(format!("active name     <{name}> at port {port}, fd = {id}\n\0").as_bytes());
    }
    out.freeze()
}

/// epmd's answer to KILL_REQ when it refuses to die.
pub const KILL_REFUSED: &[u8] = b"NO";
/// epmd's answer to KILL_REQ when it stops.
pub const KILL_ACCEPTED: &[u8] = b"OK";

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeEntry {
        NodeEntry {
            port: 0x1234,
            kind: NodeKind::Hidden,
            protocol: 0,
            highest_version: 6,
            lowest_version: 5,
            name: "rust".into(),
            extra: vec![1, 2],
        }
    }

    #[test]
    fn alive2_matches_erl_epmd_layout() {
        // Byte layout from erl_epmd:do_register_node/3.
        let bytes = Request::Alive2(sample()).encode().unwrap();
        let expected: Vec<u8> = vec![
            0, 19, 120, 0x12, 0x34, 72, 0, 0, 6, 0, 5, 0, 4, b'r', b'u', b's', b't', 0, 2, 1, 2,
        ];
        assert_eq!(&bytes[..], &expected[..]);
        assert_eq!(
            Request::decode(&bytes[2..]).unwrap(),
            Request::Alive2(sample())
        );
    }

    #[test]
    fn simple_requests_roundtrip() {
        for req in [
            Request::Names,
            Request::Dump,
            Request::Kill,
            Request::PortPlease2 { name: "a".into() },
            Request::Stop { name: "zz".into() },
        ] {
            let b = req.encode().unwrap();
            assert_eq!(request_body_len([b[0], b[1]]).unwrap(), b.len() - 2);
            assert_eq!(Request::decode(&b[2..]).unwrap(), req);
        }
        assert_eq!(&Request::Names.encode().unwrap()[..], &[0, 1, 110]);
    }

    #[test]
    fn port_please_strips_trailing_nul() {
        assert_eq!(
            Request::decode(b"zfoo\0").unwrap(),
            Request::PortPlease2 { name: "foo".into() }
        );
    }

    #[test]
    fn rejects_bad_requests() {
        assert_eq!(request_body_len([0, 0]), Err(ProtocolError::BadLength(0)));
        assert!(request_body_len([0xff, 0xff]).is_err());
        assert!(request_body_len([0x0b, 0xf1]).is_ok()); // 3057
        assert!(request_body_len([0x0b, 0xf2]).is_err()); // 3058
        assert_eq!(
            Request::decode(&[]),
            Err(ProtocolError::Truncated("request"))
        );
        assert_eq!(Request::decode(&[1]), Err(ProtocolError::UnknownRequest(1)));
        assert!(matches!(
            Request::decode(&[120, 0, 1]),
            Err(ProtocolError::Truncated(_))
        ));
        // Name length pointing past the end of the body.
        let mut b = Request::Alive2(sample()).encode().unwrap().to_vec();
        b[12] = 200;
        assert!(Request::decode(&b[2..]).is_err());
        assert!(Request::decode(b"z").is_err());
        assert!(Request::decode(b"za\0b").is_err());
        assert!(Request::decode(&[122, 0xff, 0xfe]).is_err());
    }

    #[test]
    fn encode_rejects_invalid_names() {
        let long = "x".repeat(256);
        assert!(Request::PortPlease2 { name: long }.encode().is_err());
        assert!(Request::PortPlease2 { name: "".into() }.encode().is_err());
        assert!(Request::PortPlease2 { name: "a\0".into() }
            .encode()
            .is_err());
        let ok = "é".repeat(255);
        assert!(Request::PortPlease2 { name: ok }.encode().is_ok());
        let mut e = sample();
        e.extra = vec![0; MAX_EXTRA_BYTES + 1];
        assert!(Request::Alive2(e).encode().is_err());
    }

    #[test]
    fn alive_response_both_widths() {
        let x = AliveResponse {
            result: 0,
            creation: 0x0102_0304,
            extended: true,
        };
        assert_eq!(&x.encode()[..], &[118, 0, 1, 2, 3, 4]);
        assert_eq!(AliveResponse::decode(&x.encode()).unwrap(), Some(x));
        let s = AliveResponse {
            result: 1,
            creation: 3,
            extended: false,
        };
        assert_eq!(&s.encode()[..], &[121, 1, 0, 3]);
        assert_eq!(AliveResponse::decode(&s.encode()).unwrap(), Some(s));
        assert_eq!(AliveResponse::decode(&[118, 0, 1]).unwrap(), None);
        assert_eq!(AliveResponse::decode(&[]).unwrap(), None);
        assert!(AliveResponse::decode(&[5, 0, 0, 0]).is_err());
    }

    #[test]
    fn port_response_roundtrip_and_partial() {
        let found = PortResponse::Found(sample());
        let b = found.encode();
        assert_eq!(PortResponse::decode(&b).unwrap(), Some(found));
        for cut in 0..b.len() {
            assert_eq!(PortResponse::decode(&b[..cut]).unwrap(), None, "cut {cut}");
        }
        assert_eq!(&PortResponse::NotFound.encode()[..], &[119, 1]);
        assert_eq!(
            PortResponse::decode(&[119, 1]).unwrap(),
            Some(PortResponse::NotFound)
        );
        assert!(PortResponse::decode(&[121, 0]).is_err());
    }

    #[test]
    fn names_reply_roundtrip_and_leniency() {
        let b = encode_names_reply(4369, [("a", 1), ("bee", 65535)]);
        assert_eq!(&b[4..], b"name a at port 1\nname bee at port 65535\n");
        let (port, names) = parse_names_reply(&b).unwrap();
        assert_eq!(port, 4369);
        assert_eq!(names, vec![("a".into(), 1), ("bee".into(), 65535)]);

        let mut odd = vec![0, 0, 0x11, 0x11];
        odd.extend_from_slice(b"garbage\nname x at port 99999\nname y at port 7\nname z at");
        assert_eq!(
            parse_names_reply(&odd).unwrap(),
            (4369, vec![("y".into(), 7)])
        );
        assert!(parse_names_reply(&[0, 0, 1]).is_err());
    }

    #[test]
    fn node_kind_bytes() {
        assert_eq!(NodeKind::Normal.to_byte(), 77);
        assert_eq!(NodeKind::Hidden.to_byte(), 72);
        assert_eq!(NodeKind::from_byte(77), NodeKind::Normal);
        assert_eq!(NodeKind::from_byte(72), NodeKind::Hidden);
        assert_eq!(NodeKind::from_byte(110), NodeKind::Other(110));
    }
}
