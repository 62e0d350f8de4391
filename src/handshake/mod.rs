//! The distribution handshake, version 6 (OTP 23+), both directions.
//!
//! Initiator (A) and acceptor (B) exchange, each packet 2-byte framed:
//! A `send_name` -> B `status` -> B `challenge` -> A `challenge_reply`
//! -> B `challenge_ack`. The acceptor's status answer is where
//! simultaneous connects are resolved; the node supplies that decision
//! through [`Arbiter`] because only it knows which connections exist.

pub mod cookie;
pub mod flags;
pub mod messages;

use messages::*;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a handshake failed. Each variant maps to one clear log line.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("i/o error during handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    #[error("cookie mismatch with {peer}: the peer's digest did not match our cookie")]
    BadCookie { peer: String },
    #[error("{peer} rejected our cookie (it closed the connection after our challenge reply)")]
    CookieRejectedByPeer { peer: String },
    #[error("{peer} refused the connection with status {status:?}")]
    Refused { peer: String, status: String },
    #[error("{peer} lacks mandatory distribution flags: {missing}")]
    MissingFlags { peer: String, missing: String },
    #[error("the connection to {peer} lost a simultaneous-connect race; its own connection will be used")]
    LostRace { peer: String },
    #[error("{peer} is not a visible (published) node; erlnode talks to visible nodes only")]
    Hidden { peer: String },
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Who we are, as the handshake needs it.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    pub node_name: String,
    pub creation: u32,
    pub cookie: String,
    pub flags: u64,
    pub timeout: Duration,
    /// Bytes in the length before each handshake packet: 2 over plain
    /// TCP, 4 inside TLS (as `inet_tls_dist`).
    pub packet_header: usize,
}

/// What we learn about the peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub name: String,
    /// The intersection of both sides' flags: what this link may use.
    pub flags: u64,
    pub creation: u32,
}

/// The acceptor's answer to an incoming `send_name`, decided by the node
/// from its connection table (net_kernel's accept_pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptDecision {
    /// No connection to that node: proceed.
    Ok,
    /// We were connecting too and the peer's name is greater: we give up
    /// our attempt and use this one.
    OkSimultaneous,
    /// We were connecting too and our name is greater: refuse this one.
    Nok,
    /// We believe a connection is up; the peer says whether to replace it.
    Alive,
    NotAllowed,
}

/// Decides how to answer an incoming connection, and is told when the
/// peer confirms replacing a live connection.
pub trait Arbiter: Send + Sync {
    fn decide(&self, peer: &str) -> AcceptDecision;
}

/// Runs the initiator side. `still_pending` answers the acceptor's
/// `alive` status: true if this attempt still owns the pending slot.
pub async fn initiate<S, F>(
    s: &mut S,
    cfg: &HandshakeConfig,
    peer_name: &str,
    still_pending: F,
) -> Result<PeerInfo, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce() -> bool,
{
    let fut = async {
        write_packet(s, cfg.packet_header, &SendName { flags: cfg.flags, creation: cfg.creation, name: cfg.node_name.clone() }.encode())
            .await?;
        let status = decode_status(&read_packet(s, cfg.packet_header).await?)?;
        match status.as_str() {
            "ok" | "ok_simultaneous" => {}
            "nok" => return Err(HandshakeError::LostRace { peer: peer_name.into() }),
            "alive" => {
                let keep = still_pending();
                write_packet(s, cfg.packet_header, &encode_status(if keep { "true" } else { "false" })).await?;
                if !keep {
                    return Err(HandshakeError::Refused { peer: peer_name.into(), status });
                }
            }
            _ => return Err(HandshakeError::Refused { peer: peer_name.into(), status }),
        }
        let ch = Challenge::decode(&read_packet(s, cfg.packet_header).await?)?;
        if ch.name != peer_name {
            return Err(HandshakeError::Protocol(format!("connected to {peer_name} but it calls itself {}", ch.name)));
        }
        check_peer_flags(&ch.name, ch.flags)?;
        let my_challenge: u32 = rand::random();
        let reply = encode_challenge_reply(my_challenge, &cookie::digest(ch.challenge, &cfg.cookie));
        write_packet(s, cfg.packet_header, &reply).await?;
        let ack = match read_packet(s, cfg.packet_header).await {
            Ok(p) => decode_challenge_ack(&p)?,
            Err(HandshakeError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(HandshakeError::CookieRejectedByPeer { peer: ch.name });
            }
            Err(e) => return Err(e),
        };
        if ack != cookie::digest(my_challenge, &cfg.cookie) {
            return Err(HandshakeError::BadCookie { peer: ch.name });
        }
        Ok(PeerInfo { name: ch.name, flags: ch.flags & cfg.flags, creation: ch.creation })
    };
    tokio::time::timeout(cfg.timeout, fut).await.map_err(|_| HandshakeError::Timeout(cfg.timeout))?
}

/// Runs the acceptor side.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    cfg: &HandshakeConfig,
    arbiter: &dyn Arbiter,
) -> Result<PeerInfo, HandshakeError> {
    let fut = async {
        let name = SendName::decode(&read_packet(s, cfg.packet_header).await?)?;
        check_peer_flags(&name.name, name.flags)?;
        let decision = arbiter.decide(&name.name);
        let status = match decision {
            AcceptDecision::Ok => "ok",
            AcceptDecision::OkSimultaneous => "ok_simultaneous",
            AcceptDecision::Nok => "nok",
            AcceptDecision::Alive => "alive",
            AcceptDecision::NotAllowed => "not_allowed",
        };
        write_packet(s, cfg.packet_header, &encode_status(status)).await?;
        match decision {
            AcceptDecision::Nok => return Err(HandshakeError::LostRace { peer: name.name }),
            AcceptDecision::NotAllowed => {
                return Err(HandshakeError::Refused { peer: name.name, status: status.into() })
            }
            AcceptDecision::Alive => {
                let answer = decode_status(&read_packet(s, cfg.packet_header).await?)?;
                if answer != "true" {
                    return Err(HandshakeError::Refused { peer: name.name, status: answer });
                }
            }
            _ => {}
        }
        let my_challenge: u32 = rand::random();
        let ch = Challenge { flags: cfg.flags, challenge: my_challenge, creation: cfg.creation, name: cfg.node_name.clone() };
        write_packet(s, cfg.packet_header, &ch.encode()).await?;
        let (his_challenge, his_digest) = decode_challenge_reply(&read_packet(s, cfg.packet_header).await?)?;
        if his_digest != cookie::digest(my_challenge, &cfg.cookie) {
            return Err(HandshakeError::BadCookie { peer: name.name });
        }
        write_packet(s, cfg.packet_header, &encode_challenge_ack(&cookie::digest(his_challenge, &cfg.cookie))).await?;
        Ok(PeerInfo { name: name.name, flags: name.flags & cfg.flags, creation: name.creation })
    };
    tokio::time::timeout(cfg.timeout, fut).await.map_err(|_| HandshakeError::Timeout(cfg.timeout))?
}

fn check_peer_flags(peer: &str, peer_flags: u64) -> Result<(), HandshakeError> {
    let missing = flags::missing_mandatory(peer_flags);
    if missing != 0 {
        return Err(HandshakeError::MissingFlags { peer: peer.into(), missing: flags::describe(missing) });
    }
    if peer_flags & flags::PUBLISHED == 0 {
        // Hidden nodes (erl_call, remsh helpers) are legitimate peers; they
        // just don't see us in nodes(). Accept them.
        tracing::debug!(peer, "peer is a hidden node");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
