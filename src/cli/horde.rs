//! `erlnode run --horde-registry NAME --register-echo-horde NAME/KEY`.

use crate::horde::{elixir_name, HordeError, HordeRegistry};
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
