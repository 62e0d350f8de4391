//! One client connection to the embedded EPMD: read one request, answer,
//! close; or, for ALIVE2, hold the connection as the registration.
//!
//! Any malformed, oversize, truncated or too-slow request just closes this
//! connection with a warning; nothing here can fail the server.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::protocol::{
    encode_dump_reply, encode_names_reply, request_body_len, AliveResponse, NodeEntry,
    PortResponse, ProtocolError, Request, FAILED_CREATION, KILL_ACCEPTED, KILL_REFUSED,
};
use super::registry::RegisterOutcome;
use super::server::Shared;

/// Why no request could be read.
enum ReadError {
    /// The client closed before sending anything (port probes do this).
    Empty,
    Io(io::Error),
    Protocol(ProtocolError),
}

pub(crate) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    conn_id: u64,
) {
    let io_timeout = shared.config.io_timeout;
    let body = match timeout(io_timeout, read_request(&mut stream)).await {
        Ok(Ok(body)) => body,
        Ok(Err(ReadError::Empty)) => {
            tracing::debug!(%peer, "EPMD client closed without a request");
            return;
        }
        Ok(Err(ReadError::Io(e))) => {
            tracing::warn!(%peer, "EPMD client dropped: read failed: {e}");
            return;
        }
        Ok(Err(ReadError::Protocol(e))) => {
            tracing::warn!(%peer, "EPMD client dropped: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "EPMD client dropped: no complete request within {io_timeout:?}");
            return;
        }
    };
    let request = match Request::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, "EPMD client dropped: malformed request: {e}");
            return;
        }
    };
    let local = is_local_peer(&stream, peer);
    match request {
        Request::Alive2(entry) if local => {
            hold_registration(stream, peer, &shared, conn_id, entry).await
        }
        Request::PortPlease2 { name } => {
            let reply = match shared.registry().lookup(&name) {
                Some(e) => PortResponse::Found(e),
                None => PortResponse::NotFound,
            };
            tracing::debug!(%peer, %name, found = matches!(reply, PortResponse::Found(_)), "EPMD PORT_PLEASE2");
            send(&mut stream, peer, &shared, &reply.encode()).await;
        }
        Request::Names => {
            let list = shared.registry().list();
            tracing::debug!(%peer, count = list.len(), "EPMD NAMES");
            let reply = encode_names_reply(
                shared.port as u32,
                list.iter().map(|(n, p, _)| (n.as_str(), *p)),
            );
            send(&mut stream, peer, &shared, &reply).await;
        }
        Request::Dump if local => {
            let list = shared.registry().list();
            tracing::debug!(%peer, "EPMD DUMP");
            let reply = encode_dump_reply(
                shared.port as u32,
                list.iter().map(|(n, p, id)| (n.as_str(), *p, *id)),
            );
            send(&mut stream, peer, &shared, &reply).await;
        }
        // As epmd: a standalone daemon stops when no node is registered.
        // One embedded in a node lives and dies with it, so it always
        // gives the answer epmd gives while nodes are alive.
        Request::Kill if local => {
            if shared.config.allow_kill && shared.registry().list().is_empty() {
                tracing::info!(%peer, "EPMD KILL: no node registered, stopping");
                send(&mut stream, peer, &shared, KILL_ACCEPTED).await;
                shared.killed.notify_one();
            } else {
                tracing::debug!(%peer, "EPMD KILL refused");
                send(&mut stream, peer, &shared, KILL_REFUSED).await;
            }
        }
        Request::Stop { .. } => {
            tracing::debug!(%peer, "EPMD STOP not supported; closing");
        }
        Request::Alive2(_) | Request::Dump | Request::Kill => {
            // epmd only lets local processes register or administer.
            tracing::warn!(%peer, "EPMD client dropped: privileged request from non-local address");
        }
    }
}

async fn read_request(stream: &mut TcpStream) -> Result<Vec<u8>, ReadError> {
    let mut header = [0u8; 2];
    let first = stream.read(&mut header).await.map_err(ReadError::Io)?;
    match first {
        0 => return Err(ReadError::Empty),
        1 => {
            stream
                .read_exact(&mut header[1..])
                .await
                .map_err(ReadError::Io)?;
        }
        _ => {}
    }
    let len = request_body_len(header).map_err(ReadError::Protocol)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Protocol(ProtocolError::Truncated("request body"))
        } else {
            ReadError::Io(e)
        }
    })?;
    Ok(body)
}

/// epmd's rule: loopback, or the peer uses the very address it reached
/// us on (a process on this host connecting via a non-loopback IP).
fn is_local_peer(stream: &TcpStream, peer: SocketAddr) -> bool {
    let canon = |ip: IpAddr| ip.to_canonical();
    let peer_ip = canon(peer.ip());
    if peer_ip.is_loopback() {
        return true;
    }
    match stream.local_addr() {
        Ok(local) => canon(local.ip()) == peer_ip,
        Err(_) => false,
    }
}

/// Writes a reply (bounded by the I/O timeout); the caller then drops the
/// stream, which is how EPMD marks the end of a reply.
async fn send(stream: &mut TcpStream, peer: SocketAddr, shared: &Shared, bytes: &[u8]) -> bool {
    match timeout(shared.config.io_timeout, stream.write_all(bytes)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "EPMD reply not delivered: {e}");
            false
        }
        Err(_) => {
            tracing::warn!(%peer, "EPMD client dropped: did not take reply within {:?}", shared.config.io_timeout);
            false
        }
    }
}

/// Removes the name when the connection task ends for any reason,
/// including being aborted at server shutdown.
struct RegistrationGuard<'a> {
    shared: &'a Shared,
    name: String,
    conn_id: u64,
}

impl Drop for RegistrationGuard<'_> {
    fn drop(&mut self) {
        if self.shared.registry().unregister(&self.name, self.conn_id) {
            tracing::debug!(name = %self.name, "EPMD unregistered node");
        }
    }
}

async fn hold_registration(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    conn_id: u64,
    entry: NodeEntry,
) {
    let name = entry.name.clone();
    let port = entry.port;
    let extended = entry.wants_extended_creation();
    let owner = stream.local_addr().ok().and_then(|local| peer_uid(peer, local));
    let outcome = shared.registry().register_owned(entry, conn_id, owner);
    let creation = match outcome {
        RegisterOutcome::Registered { creation } => creation,
        RegisterOutcome::NameTaken => {
            tracing::debug!(%peer, %name, "EPMD ALIVE2 refused: name already registered");
            let reply = AliveResponse {
                result: 1,
                creation: FAILED_CREATION,
                extended,
            };
            send(&mut stream, peer, shared, &reply.encode()).await;
            return;
        }
        RegisterOutcome::OwnerFull => {
            tracing::warn!(%peer, %name, uid = ?owner, limit = shared.config.max_registrations_per_uid,
                "EPMD client dropped: this user holds its share of the registrations");
            return;
        }
        RegisterOutcome::Full => {
            tracing::warn!(%peer, %name, limit = shared.config.max_registrations,
                "EPMD client dropped: registration limit reached");
            return;
        }
    };
    let guard = RegistrationGuard {
        shared,
        name,
        conn_id,
    };
    let reply = AliveResponse {
        result: 0,
        creation,
        extended,
    };
    if !send(&mut stream, peer, shared, &reply.encode()).await {
        return;
    }
    tracing::debug!(%peer, name = %guard.name, port, creation, "EPMD registered node");
    let mut scratch = [0u8; 64];
    match stream.read(&mut scratch).await {
        Ok(0) => {}
        Ok(_) => {
            // epmd treats anything sent on a registration as the end of it.
            tracing::warn!(%peer, name = %guard.name, "EPMD client dropped: data on registration connection");
        }
        Err(e) => {
            tracing::debug!(%peer, name = %guard.name, "EPMD registration connection failed: {e}")
        }
    }
    // Unregister before closing, so that when the client sees our FIN the
    // name is already gone (Registration::close relies on this).
    drop(guard);
    drop(stream);
}

/// The uid owning the client end of a local TCP connection (`peer` is its
/// address, `local` ours), from the kernel's socket table
/// (`/proc/net/tcp`, `/proc/net/tcp6`). `None` where that table does not
/// exist or has no such socket.
pub(crate) fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let (table, peer_hex, local_hex) = match (peer, local) {
        (SocketAddr::V4(p), SocketAddr::V4(l)) => ("/proc/net/tcp", hex_v4(p), hex_v4(l)),
        (SocketAddr::V6(p), SocketAddr::V6(l)) => ("/proc/net/tcp6", hex_v6(p), hex_v6(l)),
        _ => return None,
    };
    let text = std::fs::read_to_string(table).ok()?;
    uid_in_table(&text, &peer_hex, &local_hex)
}

/// The uid column of the row whose local address is `local_hex` and
/// remote address `remote_hex`.
fn uid_in_table(text: &str, local_hex: &str, remote_hex: &str) -> Option<u32> {
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid ...
        if cols.len() > 7 && cols[1].eq_ignore_ascii_case(local_hex) && cols[2].eq_ignore_ascii_case(remote_hex) {
            cols[7].parse().ok()
        } else {
            None
        }
    })
}

/// The kernel prints an address as its in-memory 32-bit words in host
/// order, then the port.
fn hex_v4(a: std::net::SocketAddrV4) -> String {
    format!("{:08X}:{:04X}", u32::from_ne_bytes(a.ip().octets()), a.port())
}

fn hex_v6(a: std::net::SocketAddrV6) -> String {
    let o = a.ip().octets();
    let words: String = o.chunks(4).map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))).collect();
    format!("{words}:{:04X}", a.port())
}

#[cfg(test)]
mod uid_tests {
    use super::*;

    #[test]
    fn the_uid_of_our_own_socket_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap();
        assert_eq!(peer_uid(peer, listener.local_addr().unwrap()), Some(uid));
        assert_eq!(peer_uid("127.0.0.1:1".parse().unwrap(), listener.local_addr().unwrap()), None);
    }
}
