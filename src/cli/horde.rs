//! `erlnode run --horde-registry NAME --register-echo-horde NAME/KEY`
//! and `--horde-supervisor NAME`.

use crate::horde::supervisor::Distribution;
use crate::horde::{elixir_name, HordeError, HordeRegistry, HordeSupervisor, Redistribution};
use crate::{Node, Term};

/// Starts the registries named on the command line (each once) and
/// registers an echo process under each KEY. The handles are kept for
/// the node's life.
pub async fn start(node: &Node, names: &[String], echoes: &[(String, String)]) -> Result<Vec<HordeRegistry>, HordeError> {
    let mut regs: Vec<HordeRegistry> = Vec::new();
    let wanted = names.iter().chain(echoes.iter().map(|(n, _)| n));
    for name in wanted {
        if regs.iter().any(|r| *r.name() == elixir_name(name)) {
            continue;
        }
        let reg = HordeRegistry::builder(name).members_auto().start(node)?;
        tracing::info!(registry = %reg.name(), "member of the Horde registry");
        regs.push(reg);
    }
    for (name, key) in echoes {
        let reg = regs.iter().find(|r| *r.name() == elixir_name(name)).expect("started above");
        let pid = crate::services::echo::spawn_unregistered(node);
        reg.register(Term::binary(key.as_bytes().to_vec()), Term::atom("nil"), &pid).await?;
        tracing::info!(registry = %reg.name(), %key, %pid, "echo registered in the Horde registry");
    }
    Ok(regs)
}

/// `--horde-supervisor` and the flags that shape it.
pub struct SupervisorOpts<'a> {
    pub name: &'a str,
    pub children: &'a [(String, String)],
    pub distribution: Distribution,
    pub redistribution: Redistribution,
    pub register_in: Option<&'a str>,
    pub handoff: bool,
    pub replicas: Option<&'a crate::migration::Migration>,
}

/// Starts the supervisor member with the example types.
pub fn start_supervisor(node: &Node, regs: &[HordeRegistry], o: SupervisorOpts<'_>) -> Result<HordeSupervisor, HordeError> {
    use crate::examples::{account::Account, counter::Counter};
    let mut b = HordeSupervisor::builder(o.name).distribution(o.distribution).redistribution(o.redistribution);
    let default = [("Erlnode.Examples.Account".to_string(), "account".to_string())];
    for (module, ty) in if o.children.is_empty() { &default[..] } else { o.children } {
        b = match ty.as_str() {
            "counter" => b.child::<Counter>(module),
            _ => b.child::<Account>(module),
        };
    }
    if let Some(reg) = o.register_in {
        let r = regs.iter().find(|r| *r.name() == elixir_name(reg)).expect("started with the registries");
        b = b.register_in(r, "name");
    }
    if o.handoff {
        b = b.handoff("name");
    }
    if let Some(m) = o.replicas {
        b = b.replicas(m);
    }
    let s = b.start(node)?;
    tracing::info!(supervisor = %s.name(), "member of the Horde supervisor");
    Ok(s)
}
