//! `erlnode run --pubsub SERVER --subscribe TOPIC`: tail a Phoenix.PubSub
//! topic from the terminal. One process subscribes to every topic given
//! and logs each message it receives, in arrival order.

use crate::pubsub::{PubSub, PubSubError};
use crate::Node;

/// Characters of a message shown per log line.
const SHOWN: usize = 2000;

pub async fn start(node: &Node, server: &str, topics: &[String]) -> Result<PubSub, PubSubError> {
    let ps = node.pubsub(server).start().await?;
    let server = ps.server().clone();
    let tail = node.spawn(move |mut mb| async move {
        while let Some(msg) = mb.recv().await {
            tracing::info!(%server, message = %crate::term::serde::render::elixir(&msg, SHOWN), "pubsub message");
        }
        crate::Term::atom("normal")
    });
    for t in topics {
        ps.subscribe(&tail, t)?;
        tracing::info!(server = %ps.server(), topic = %t, "subscribed");
    }
    Ok(ps)
}
