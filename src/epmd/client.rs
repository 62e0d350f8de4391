//! Client side of EPMD: register this node, look other nodes up, list names.
//!
//! EPMD answers one request per connection and then closes, except for
//! ALIVE2: that connection *is* the registration, so [`Registration`] owns
//! the socket and the node stays registered exactly as long as it lives.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::error::EpmdError;
use super::protocol::{
    parse_names_reply, AliveResponse, NodeEntry, NodeKind, PortResponse, ProtocolError, Request,
    DEFAULT_PORT,
};

/// Default bound on each client operation (connect + request + reply).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A NAMES reply is one line per node; this bounds what a misbehaving
/// server can make us buffer (about 4000 maximal-length names).
const MAX_NAMES_REPLY: usize = 4 << 20;

/// Talks to one EPMD. Cheap to clone; holds no connection.
#[derive(Debug, Clone)]
pub struct EpmdClient {
    host: String,
    port: u16,
    timeout: Duration,
}

/// The local EPMD on the default port 4369.
impl Default for EpmdClient {
    fn default() -> Self {
        EpmdClient::new("127.0.0.1", DEFAULT_PORT)
    }
}

impl EpmdClient {
    /// EPMD at `host:port` (normally port [`DEFAULT_PORT`], or whatever
    /// `ERL_EPMD_PORT` says), with a 5 s timeout per operation.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        EpmdClient {
            host: host.into(),
            port,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `host:port`, bracketing IPv6 literals, for error messages.
    fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Registers `name` (the part before `@`) as listening on
    /// `listen_port`, with the values an OTP 25 node uses.
    pub async fn register(
        &self,
        name: &str,
        listen_port: u16,
        kind: NodeKind,
    ) -> Result<Registration, EpmdError> {
        self.register_entry(NodeEntry::new(name, listen_port, kind))
            .await
    }

    /// Registers with full control over versions, protocol and extra data.
    pub async fn register_entry(&self, entry: NodeEntry) -> Result<Registration, EpmdError> {
        let request = Request::Alive2(entry.clone())
            .encode()
            .map_err(EpmdError::InvalidRequest)?;
        let op = "ALIVE2 registration";
        self.bounded(op, async {
            let mut stream = self.connect().await?;
            self.send(&mut stream, &request).await?;
            let mut buf = BytesMut::with_capacity(8);
            let resp = loop {
                if let Some(resp) = AliveResponse::decode(&buf).map_err(|e| self.protocol(e))? {
                    break resp;
                }
                self.read_more(&mut stream, &mut buf, op).await?;
            };
            if resp.result != 0 {
                return Err(EpmdError::NameTaken {
                    addr: self.addr(),
                    name: entry.name.clone(),
                });
            }
            tracing::debug!(
                epmd = %self.addr(),
                name = %entry.name,
                creation = resp.creation,
                "registered with EPMD"
            );
            Ok(Registration {
                stream,
                name: entry.name.clone(),
                creation: resp.creation,
                addr: self.addr(),
                timeout: self.timeout,
            })
        })
        .await
    }

    /// Looks up a node by name (the part before `@`); `None` if EPMD does
    /// not know it.
    pub async fn port_please(&self, name: &str) -> Result<Option<NodeEntry>, EpmdError> {
        let request = Request::PortPlease2 {
            name: name.to_owned(),
        }
        .encode()
        .map_err(EpmdError::InvalidRequest)?;
        let op = "PORT_PLEASE2";
        self.bounded(op, async {
            let mut stream = self.connect().await?;
            self.send(&mut stream, &request).await?;
            let mut buf = BytesMut::with_capacity(64);
            loop {
                match PortResponse::decode(&buf).map_err(|e| self.protocol(e))? {
                    Some(PortResponse::Found(e)) => return Ok(Some(e)),
                    Some(PortResponse::NotFound) => return Ok(None),
                    None if buf.len() > PortResponse::MAX_LEN => {
                        return Err(
                            self.protocol(ProtocolError::ReplyTooLarge(PortResponse::MAX_LEN))
                        )
                    }
                    None => self.read_more(&mut stream, &mut buf, op).await?,
                }
            }
        })
        .await
    }

    /// Lists registered nodes as `(name, port)`, in EPMD's order.
    pub async fn names(&self) -> Result<Vec<(String, u16)>, EpmdError> {
        Ok(self.names_with_port().await?.1)
    }

    /// Like [`names`](Self::names) but also returns the port EPMD says it
    /// listens on (the reply's 4-byte header), which identifies a real
    /// EPMD answering.
    pub async fn names_with_port(&self) -> Result<(u32, Vec<(String, u16)>), EpmdError> {
        let request = Request::Names.encode().map_err(EpmdError::InvalidRequest)?;
        self.bounded("NAMES", async {
            let mut stream = self.connect().await?;
            self.send(&mut stream, &request).await?;
            // The reply has no length: EPMD closes when done.
            let mut buf = BytesMut::with_capacity(256);
            loop {
                let n = stream.read_buf(&mut buf).await.map_err(|e| self.io(e))?;
                if n == 0 {
                    break;
                }
                if buf.len() > MAX_NAMES_REPLY {
                    return Err(self.protocol(ProtocolError::ReplyTooLarge(MAX_NAMES_REPLY)));
                }
            }
            if buf.is_empty() {
                return Err(EpmdError::Closed {
                    addr: self.addr(),
                    operation: "NAMES",
                });
            }
            parse_names_reply(&buf).map_err(|e| self.protocol(e))
        })
        .await
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, EpmdError>>,
    ) -> Result<T, EpmdError> {
        match timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(EpmdError::Timeout {
                addr: self.addr(),
                operation,
                timeout: self.timeout,
            }),
        }
    }

    async fn connect(&self) -> Result<TcpStream, EpmdError> {
        match TcpStream::connect((self.host.as_str(), self.port)).await {
            Ok(s) => {
                // Requests are single small writes; don't let Nagle hold them.
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(EpmdError::NoEpmd { addr: self.addr() })
            }
            Err(e) => Err(self.io(e)),
        }
    }

    async fn send(&self, stream: &mut TcpStream, bytes: &[u8]) -> Result<(), EpmdError> {
        stream.write_all(bytes).await.map_err(|e| self.io(e))
    }

    /// Reads at least one more byte, turning EOF into `Closed`.
    async fn read_more(
        &self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        operation: &'static str,
    ) -> Result<(), EpmdError> {
        match stream.read_buf(buf).await {
            Ok(0) => Err(EpmdError::Closed {
                addr: self.addr(),
                operation,
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    fn io(&self, source: std::io::Error) -> EpmdError {
        EpmdError::Io {
            addr: self.addr(),
            source,
        }
    }

    fn protocol(&self, source: ProtocolError) -> EpmdError {
        EpmdError::Protocol {
            addr: self.addr(),
            source,
        }
    }
}

/// A live ALIVE2 registration. EPMD drops the name when this connection
/// closes, so dropping the value unregisters the node; [`close`] does the
/// same but waits until EPMD has acted on it.
///
/// [`close`]: Registration::close
#[derive(Debug)]
pub struct Registration {
    stream: TcpStream,
    name: String,
    creation: u32,
    addr: String,
    timeout: Duration,
}

impl Registration {
    /// The creation EPMD assigned: 32-bit from ALIVE2_X_RESP, or 1..=3
    /// from a 16-bit ALIVE2_RESP.
    pub fn creation(&self) -> u32 {
        self.creation
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Unregisters and waits (bounded by the client's timeout) until EPMD
    /// has closed its side, so a following lookup no longer sees the name.
    pub async fn close(mut self) -> Result<(), EpmdError> {
        let addr = self.addr.clone();
        let wait = async {
            // Our FIN is the unregister signal; EPMD answers by closing.
            self.stream.shutdown().await?;
            let mut scratch = [0u8; 64];
            while self.stream.read(&mut scratch).await? != 0 {}
            Ok::<_, std::io::Error>(())
        };
        match timeout(self.timeout, wait).await {
            Ok(Ok(())) => Ok(()),
            // A reset still means EPMD dropped the registration.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            Ok(Err(source)) => Err(EpmdError::Io { addr, source }),
            Err(_) => Err(EpmdError::Timeout {
                addr,
                operation: "unregister",
                timeout: self.timeout,
            }),
        }
    }

    /// Resolves when EPMD closes the registration connection (EPMD died
    /// or was killed), so the node can re-register or shut down.
    /// Cancel-safe.
    pub async fn lost(&mut self) {
        let mut scratch = [0u8; 64];
        loop {
            match self.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                // EPMD never sends on this connection; ignore noise.
                Ok(_) => {}
            }
        }
    }
}
