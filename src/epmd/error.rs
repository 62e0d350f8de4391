//! The one error type of the EPMD module.
//!
//! Every variant names the EPMD address involved, because the usual
//! operational question is "which EPMD, and is it even running?".

use std::net::SocketAddr;
use std::time::Duration;

use super::protocol::ProtocolError;

#[derive(Debug, thiserror::Error)]
pub enum EpmdError {
    /// Nothing accepted the TCP connection: EPMD is not running there.
    #[error("no EPMD at {addr}")]
    NoEpmd { addr: String },

    #[error("EPMD at {addr} did not complete {operation} within {timeout:?}")]
    Timeout {
        addr: String,
        operation: &'static str,
        timeout: Duration,
    },

    #[error("EPMD at {addr} refused to register {name:?}: name already registered")]
    NameTaken { addr: String, name: String },

    /// EPMD hung up without a (complete) reply, as it does for requests
    /// it rejects (e.g. ALIVE2 from a non-local address).
    #[error("EPMD at {addr} closed the connection before replying to {operation}")]
    Closed {
        addr: String,
        operation: &'static str,
    },

    #[error("malformed reply from EPMD at {addr}: {source}")]
    Protocol {
        addr: String,
        #[source]
        source: ProtocolError,
    },

    /// The request could not be encoded (bad name, oversize extra data).
    #[error("invalid EPMD request: {0}")]
    InvalidRequest(#[source] ProtocolError),

    #[error("I/O error talking to EPMD at {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot bind EPMD server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// Something accepts connections on the EPMD port but does not answer
    /// like EPMD, so we neither use it nor can take the port.
    #[error("something is listening on {addr} but it is not EPMD: {reason}")]
    NotEpmd { addr: String, reason: String },
}

impl EpmdError {
    /// True for the error `register` gives when the name is in use.
    pub fn is_name_taken(&self) -> bool {
        matches!(self, EpmdError::NameTaken { .. })
    }
}
