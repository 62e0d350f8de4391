//! What the one-shot client commands (`migrate`, `rebalance`, `status`)
//! share: the two options they use, a short-lived hidden node that
//! reaches the cluster through `--via`, and errors that say what happened,
//! each with its exit code (listed in `erlnode --help`).

use crate::migration::call_manager;
use crate::migration::messages::Request;
use crate::process::CallError;
use crate::term::Term;
use crate::Node;
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes of the client commands.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_UNKNOWN_NODE: u8 = 3;
pub const EXIT_NO_SUCH_NAME: u8 = 4;
pub const EXIT_TIMEOUT: u8 = 5;

/// The options a client needs to reach a running cluster.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Magic cookie shared by the cluster. Default: ~/.erlang.cookie, as erl reads it.
    #[arg(long, env = "ERLNODE_COOKIE")]
    pub cookie: Option<String>,
    /// EPMD port where the cluster's nodes are registered.
    #[arg(long, env = "ERL_EPMD_PORT", default_value_t = 4369)]
    pub epmd_port: u16,
    #[command(flatten)]
    pub tls: super::TlsOpts,
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach node {node}: {reason}")]
    UnknownNode { node: String, reason: String },
    #[error("no process is registered as {0}")]
    NoSuchName(String),
    #[error("no answer from {0} in time")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
}

impl ClientError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            ClientError::UnknownNode { .. } => EXIT_UNKNOWN_NODE,
            ClientError::NoSuchName(_) => EXIT_NO_SUCH_NAME,
            ClientError::Timeout(_) => EXIT_TIMEOUT,
            ClientError::Failed(_) => EXIT_FAILED,
        })
    }

    /// An `{error, Reason}` reply, in words where the reason is known.
    pub fn from_reason(reason: &Term, name: &str) -> ClientError {
        if reason.is_atom("no_such_name") {
            return ClientError::NoSuchName(name.to_string());
        }
        if reason.is_atom("timeout") {
            return ClientError::Timeout(name.to_string());
        }
        ClientError::Failed(crate::term::serde::render::short(reason))
    }
}

/// A hidden node connected to `via`; stop it with `Node::shutdown`.
pub async fn connect(via: &str, opts: &ClientOpts) -> Result<Node, ClientError> {
    let host = via.split_once('@').map(|(_, h)| h.to_string()).unwrap_or_else(crate::node::names::short_hostname);
    let name = format!("erlnode_ctl_{}@{}", std::process::id(), host);
    let b = Node::builder(name).epmd_port(opts.epmd_port).embedded_epmd(false).publish(false);
    let mut b = opts.tls.apply(b).map_err(ClientError::Failed)?;
    if let Some(c) = &opts.cookie {
        b = b.cookie(c.clone());
    }
    let node = b.start().await.map_err(|e| ClientError::Failed(format!("cannot start a local node: {e}")))?;
    if let Err(e) = node.connect(via).await {
        node.shutdown().await;
        return Err(ClientError::UnknownNode { node: via.to_string(), reason: e.to_string() });
    }
    Ok(node)
}

/// One call to the migration manager on `on`.
pub async fn ask(node: &Node, on: &str, request: &Request, timeout: Duration) -> Result<Term, ClientError> {
    call_manager(node, on, request, timeout).await.map_err(|e| match e {
        CallError::Timeout(_) => ClientError::Timeout(on.to_string()),
        CallError::NoProc(_) => ClientError::Failed(format!("{on} runs no migration manager (erlnode_migration)")),
        CallError::NodeDown(_) => ClientError::UnknownNode { node: on.to_string(), reason: "the connection was lost".into() },
        other => ClientError::Failed(other.to_string()),
    })
}

/// The cluster as `via` sees it: `via` and the nodes it is connected to
/// (other client nodes left out), sorted.
pub async fn cluster_nodes(node: &Node, via: &str, timeout: Duration) -> Vec<String> {
    let mut nodes = vec![via.to_string()];
    if let Ok(Term::Map(entries)) = ask(node, via, &Request::Status, timeout).await {
        if let Some((_, Term::List(peers))) = entries.iter().find(|(k, _)| k.is_atom("nodes")) {
            nodes.extend(peers.iter().filter_map(|p| match p {
                Term::Atom(a) if !a.as_str().starts_with("erlnode_ctl_") => Some(a.to_string()),
                _ => None,
            }));
        }
    }
    nodes.sort();
    nodes.dedup();
    nodes
}
