//! TLS distribution, interoperable with OTP's `inet_tls_dist`
//! (`erl -proto_dist inet_tls -ssl_dist_optfile FILE`).
//!
//! As `inet_tls_dist` does, TLS runs directly over the distribution TCP
//! connection (EPMD stays plaintext); the distribution handshake then runs
//! inside TLS with 4-byte packet lengths (`{packet, 4}`), and the link
//! after it is the same as over TCP.
//!
//! Options come from the same `ssl_dist` option file the BEAM nodes read
//! ([`TlsConfig::from_ssl_dist_optfile`]): an Erlang term file
//! `[{server, Opts}, {client, Opts}].` The options understood are
//! `certfile`, `keyfile`, `cacertfile` (PEM files), `verify`
//! (`verify_peer` | `verify_none`) and `fail_if_no_peer_cert`
//! (`true` | `false`); any other option is logged and ignored. The term
//! subset parsed: lists, tuples, atoms (bare or quoted), strings,
//! integers, `fun M:F/A` (kept as text), `%` comments.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Errors reading TLS options or certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("ssl_dist option file {path}: {msg}")]
    OptFile { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Pem { path: PathBuf, msg: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// `verify` of an ssl option list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// OTP's default: the peer's certificate is not checked.
    #[default]
    None,
    /// The peer's chain must lead to `cacertfile`; a client also checks
    /// the server's name (the host part of the node name) against the
    /// certificate, as OTP's `server_name_indication` does.
    Peer,
}

/// One side's options (`{server, [...]}` or `{client, [...]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslOptions {
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub cacertfile: Option<PathBuf>,
    pub verify: Verify,
    pub fail_if_no_peer_cert: bool,
}

/// TLS for distribution: how to accept and how to connect.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_opts: SslOptions,
    client_opts: SslOptions,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").field("server", &self.server_opts).field("client", &self.client_opts).finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// Reads an `ssl_dist` option file, as `-ssl_dist_optfile FILE`.
    pub fn from_ssl_dist_optfile(path: impl AsRef<Path>) -> Result<TlsConfig, TlsError> {
        let path = path.as_ref();
        let err = |msg: String| TlsError::OptFile { path: path.to_path_buf(), msg };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let (server, client) = parse_optfile(&text).map_err(err)?;
        TlsConfig::from_options(server, client)
    }

    /// Builds the configuration from the server and client option lists.
    pub fn from_options(server: SslOptions, client: SslOptions) -> Result<TlsConfig, TlsError> {
        let server_cfg = build_server(&server)?;
        let client_cfg = build_client(&client)?;
        Ok(TlsConfig { server: Arc::new(server_cfg), client: Arc::new(client_cfg), server_opts: server, client_opts: client })
    }

    pub fn server_options(&self) -> &SslOptions {
        &self.server_opts
    }

    pub fn client_options(&self) -> &SslOptions {
        &self.client_opts
    }

    /// Runs the TLS handshake as the accepting side.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        tokio_rustls::TlsAcceptor::from(self.server.clone()).accept(tcp).await
    }

    /// Runs the TLS handshake as the connecting side; `host` is the host
    /// part of the peer's node name.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host} as a TLS server name: {e}")))?;
        tokio_rustls::TlsConnector::from(self.client.clone()).connect(name, tcp).await
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |msg: String| TlsError::Pem { path: path.to_path_buf(), msg };
    let f = std::fs::File::open(path).map_err(|e| pem(e.to_string()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(f)).collect::<Result<_, _>>().map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in the file".into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = |msg: String| TlsError::Pem { path: path.to_path_buf(), msg };
    let f = std::fs::File::open(path).map_err(|e| pem(e.to_string()))?;
    rustls_pemfile::private_key(&mut std::io::BufReader::new(f))
        .map_err(|e| pem(e.to_string()))?
        .ok_or_else(|| pem("no private key in the file".into()))
}

fn roots(opts: &SslOptions, side: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let path = opts.cacertfile.as_ref().ok_or_else(|| TlsError::Config(format!("{side}: verify_peer needs cacertfile")))?;
    let mut store = RootCertStore::empty();
    for c in load_certs(path)? {
        store.add(c).map_err(|e| TlsError::Pem { path: path.clone(), msg: e.to_string() })?;
    }
    Ok(Arc::new(store))
}

/// The certificate and key of one side; OTP takes the key from the
/// certfile when keyfile is absent.
fn identity(opts: &SslOptions) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
    let Some(cert) = &opts.certfile else { return Ok(None) };
    let key = opts.keyfile.as_ref().unwrap_or(cert);
    Ok(Some((load_certs(cert)?, load_key(key)?)))
}

fn build_server(opts: &SslOptions) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match opts.verify {
        Verify::None => builder.with_no_client_auth(),
        Verify::Peer => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(opts, "server")?, provider());
            let v = if opts.fail_if_no_peer_cert { v } else { v.allow_unauthenticated() };
            builder.with_client_cert_verifier(v.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
    };
    let (certs, key) = identity(opts)?.ok_or_else(|| TlsError::Config("server: certfile is required".into()))?;
    builder.with_single_cert(certs, key).map_err(|e| TlsError::Config(format!("server certificate: {e}")))
}

fn build_client(opts: &SslOptions) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match opts.verify {
        Verify::Peer => builder.with_root_certificates(roots(opts, "client")?),
        Verify::None => builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider()))),
    };
    let mut cfg = match identity(opts)? {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| TlsError::Config(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    // inet_tls_dist sends the host as SNI; harmless either way.
    cfg.enable_sni = true;
    Ok(cfg)
}

/// `{verify, verify_none}` on the client: the server's certificate is
/// not checked (its handshake signatures still are).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A distribution socket: plain TCP or TLS over TCP.
pub trait DistIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> DistIo for T {}

/// A socket after its handshake: what [`crate::connection::Connection`] runs on.
pub enum DistStream {
    Tcp(TcpStream),
    Tls(Box<dyn DistIo>),
}

// ---- the option file ----

/// The subset of Erlang terms an option file uses.
#[derive(Debug, Clone, PartialEq)]
pub enum OptTerm {
    Atom(String),
    Str(String),
    Int(i64),
    List(Vec<OptTerm>),
    Tuple(Vec<OptTerm>),
    /// `fun M:F/A`, as text (only to be ignored).
    Fun(String),
}

/// Parses one term followed by an optional `.`.
pub fn parse_term(text: &str) -> Result<OptTerm, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let t = p.term()?;
    p.ws();
    if p.peek() == Some(b'.') {
        p.i += 1;
        p.ws();
    }
    if p.i != p.s.len() {
        return Err(format!("unexpected text at byte {}", p.i));
    }
    Ok(t)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'%' {
                while let Some(c) = self.peek() {
                    if c == b'\n' {
                        break;
                    }
                    self.i += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }
    fn seq(&mut self, close: u8) -> Result<Vec<OptTerm>, String> {
        self.i += 1;
        let mut items = vec![];
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(items);
        }
        loop {
            items.push(self.term()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(items);
                }
                _ => return Err(format!("expected ',' or '{}' at byte {}", close as char, self.i)),
            }
        }
    }
    fn quoted(&mut self, q: u8) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string or quoted atom".into()),
                Some(c) if c == q => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|e| e.to_string());
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek().ok_or("unterminated escape")?;
                    out.push(match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        c => c,
                    });
                    self.i += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
    fn term(&mut self) -> Result<OptTerm, String> {
        self.ws();
        match self.peek() {
            None => Err("unexpected end of file".into()),
            Some(b'[') => Ok(OptTerm::List(self.seq(b']')?)),
            Some(b'{') => Ok(OptTerm::Tuple(self.seq(b'}')?)),
            Some(b'"') => Ok(OptTerm::Str(self.quoted(b'"')?)),
            Some(b'\'') => Ok(OptTerm::Atom(self.quoted(b'\'')?)),
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                let start = self.i;
                self.i += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                s.parse().map(OptTerm::Int).map_err(|e| format!("{s}: {e}"))
            }
            Some(c) if c.is_ascii_lowercase() => {
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'@') {
                    self.i += 1;
                }
                let atom = std::str::from_utf8(&self.s[start..self.i]).unwrap().to_string();
                if atom == "fun" {
                    // `fun M:F/A` (as in verify_fun): kept as text.
                    self.ws();
                    let from = self.i;
                    while self.peek().is_some_and(|c| !matches!(c, b',' | b'}' | b']')) {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[from..self.i]).unwrap().trim();
                    return Ok(OptTerm::Fun(text.to_string()));
                }
                Ok(OptTerm::Atom(atom))
            }
            Some(c) => Err(format!("unsupported term starting with '{}' at byte {}", c as char, self.i)),
        }
    }
}

/// Reads `[{server, Opts}, {client, Opts}]` into the two option lists.
pub fn parse_optfile(text: &str) -> Result<(SslOptions, SslOptions), String> {
    let OptTerm::List(sections) = parse_term(text)? else {
        return Err("expected a list [{server, [...]}, {client, [...]}]".into());
    };
    let mut server = SslOptions::default();
    let mut client = SslOptions::default();
    for s in sections {
        match s {
            OptTerm::Tuple(v) if v.len() == 2 => {
                let target = match &v[0] {
                    OptTerm::Atom(a) if a == "server" => &mut server,
                    OptTerm::Atom(a) if a == "client" => &mut client,
                    other => return Err(format!("expected server or client, got {other:?}")),
                };
                let OptTerm::List(opts) = &v[1] else { return Err("a section's options must be a list".into()) };
                for o in opts {
                    apply_option(target, o)?;
                }
            }
            other => return Err(format!("expected {{server|client, [...]}}, got {other:?}")),
        }
    }
    Ok((server, client))
}

fn apply_option(o: &mut SslOptions, t: &OptTerm) -> Result<(), String> {
    let OptTerm::Tuple(v) = t else { return Err(format!("expected {{Option, Value}}, got {t:?}")) };
    let (Some(OptTerm::Atom(key)), Some(val), 2) = (v.first(), v.get(1), v.len()) else {
        return Err(format!("expected {{Option, Value}}, got {t:?}"));
    };
    let path = |val: &OptTerm| match val {
        OptTerm::Str(s) | OptTerm::Atom(s) => Ok(PathBuf::from(s)),
        other => Err(format!("{key}: expected a file name, got {other:?}")),
    };
    match key.as_str() {
        "certfile" => o.certfile = Some(path(val)?),
        "keyfile" => o.keyfile = Some(path(val)?),
        "cacertfile" => o.cacertfile = Some(path(val)?),
        "verify" => {
            o.verify = match val {
                OptTerm::Atom(a) if a == "verify_peer" => Verify::Peer,
                OptTerm::Atom(a) if a == "verify_none" => Verify::None,
                other => return Err(format!("verify: expected verify_peer or verify_none, got {other:?}")),
            }
        }
        "fail_if_no_peer_cert" => {
            o.fail_if_no_peer_cert = match val {
                OptTerm::Atom(a) if a == "true" => true,
                OptTerm::Atom(a) if a == "false" => false,
                other => return Err(format!("fail_if_no_peer_cert: expected true or false, got {other:?}")),
            }
        }
        other => tracing::warn!(option = other, "ssl_dist option not supported by erlnode: ignored"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_otp_documentation_example() {
        let text = r#"% comment
[{server,
  [{certfile, "/etc/ssl/node.pem"}, {keyfile, "/etc/ssl/node.key"},
   {cacertfile, "/etc/ssl/ca.pem"}, {verify, verify_peer},
   {fail_if_no_peer_cert, true}, {secure_renegotiate, true},
   {verify_fun, {fun inet_tls_dist:verify_client/3, []}}]},
 {client,
  [{certfile, "/etc/ssl/node.pem"}, {keyfile, '/etc/ssl/node.key'},
   {cacertfile, "/etc/ssl/ca.pem"}, {verify, verify_peer}]}].
"#;
        let (s, c) = parse_optfile(text).unwrap();
        assert_eq!(s.certfile.as_deref(), Some(Path::new("/etc/ssl/node.pem")));
        assert_eq!(s.verify, Verify::Peer);
        assert!(s.fail_if_no_peer_cert);
        assert_eq!(c.keyfile.as_deref(), Some(Path::new("/etc/ssl/node.key")));
        assert_eq!(c.verify, Verify::Peer);
        assert!(!c.fail_if_no_peer_cert);
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert!(parse_optfile("{server, []}.").is_err());
        assert!(parse_optfile("[{server, [{verify, maybe}]}].").is_err());
        assert!(parse_optfile("[{server, [{certfile, \"x\"}]}] junk").is_err());
        assert!(parse_optfile("[{server, [{certfile, \"x\"").is_err());
    }
}
