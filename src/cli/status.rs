//! `erlnode status --via NODE`: what the cluster looks like from one of
//! its nodes: its nodes, the migratable processes each hosts (by type),
//! the global names, and the migrations in flight.

use super::client::{self, ClientOpts};
use crate::migration::messages::Request;
use crate::term::serde::render::short;
use crate::term::Term;
use clap::Args;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A node of the cluster running erlnode's migration manager (Rust or Elixir); the others are the nodes it is connected to.
    #[arg(long, value_name = "NODE")]
    pub via: String,
    /// Seconds to wait for each node's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn status(a: StatusArgs) -> ExitCode {
    let node = match client::connect(&a.via, &a.opts).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("erlnode status: {e}");
            return e.exit_code();
        }
    };
    let timeout = Duration::from_secs(a.timeout);
    let nodes = client::cluster_nodes(&node, &a.via, timeout).await;
    println!("nodes ({}):", nodes.len());
    for n in &nodes {
        match client::ask(&node, n, &Request::Status, timeout).await {
            Ok(Term::Map(entries)) => {
                let get = |k: &str| entries.iter().find(|(kk, _)| kk.is_atom(k)).map(|(_, v)| v.clone());
                let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
                if let Some(Term::List(items)) = get("hosted") {
                    for i in items {
                        if let Some([Term::Atom(name), Term::Binary(t)]) = i.as_tuple() {
                            by_type.entry(String::from_utf8_lossy(t).into_owned()).or_default().push(name.to_string());
                        }
                    }
                }
                let in_flight = get("in_flight").and_then(|t| t.as_int()).unwrap_or(0);
                println!("  {n}: migrations in flight {in_flight}");
                for (t, names) in by_type {
                    println!("    {t} ({}): {}", names.len(), names.join(", "));
                }
            }
            Ok(other) => println!("  {n}: migration manager answered {}", short(&other)),
            Err(e) => println!("  {n}: {e}"),
        }
    }
    // Our global's table is complete once it has synced with the nodes.
    if let Err(e) = node.global().sync(timeout).await {
        eprintln!("erlnode status: global did not sync ({e}); names may be missing");
    }
    let mut names: Vec<(String, String)> = node
        .global()
        .registered_names()
        .into_iter()
        .map(|n| {
            let at = node.global().whereis_name(&n).map(|p| p.to_string()).unwrap_or_else(|| "?".into());
            (short(&n), at)
        })
        .collect();
    names.sort();
    println!("global names ({}):", names.len());
    for (n, at) in names {
        println!("  {n} -> {at}");
    }
    node.shutdown().await;
    ExitCode::SUCCESS
}
