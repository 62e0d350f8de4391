//! Starting the migration service in one call: [`Node::migration`] with
//! the defaults (OTP `global` as the name registry, default timers), or
//! [`Migration::builder`] to choose; and [`Node::leave`], the graceful
//! shutdown that moves hosted processes away before the node stops.

use super::{HandoffConfig, Migratable, Migration, MoveReport, NameRegistry};
use crate::{Node, NodeError};
use std::sync::Arc;

impl Node {
    /// This node's migration service, started on first use with the
    /// defaults: names in OTP `global` (`{:global, name}` in Elixir),
    /// [`HandoffConfig::default`]. Later calls return the same service,
    /// however it was started.
    ///
    /// ```no_run
    /// # async fn demo(node: erlnode::Node) -> Result<(), Box<dyn std::error::Error>> {
    /// let migration = node.migration()?;
    /// # Ok(()) }
    /// ```
    pub fn migration(&self) -> Result<Migration, NodeError> {
        if let Some(m) = self.running_migration() {
            return Ok(m);
        }
        Migration::builder(self).start()
    }

    /// The migration service if it was started.
    pub fn running_migration(&self) -> Option<Migration> {
        let shared = self.inner().migration.get()?.upgrade()?.downcast::<super::manager::Shared>().ok()?;
        Some(Migration { node: self.clone(), shared })
    }

    /// Graceful shutdown in one call: moves every migratable process
    /// hosted here to the remaining nodes of its type (as
    /// [`Migration::drain`]), then stops the node
    /// ([`Node::shutdown`]). Processes whose type no other node hosts
    /// stop with the node; the report counts what moved and what did not.
    pub async fn leave(&self) -> MoveReport {
        let report = match self.running_migration() {
            Some(m) if !m.hosted().is_empty() => m.drain().await,
            _ => MoveReport::default(),
        };
        self.shutdown().await;
        report
    }
}

/// Configures the migration service; from [`Migration::builder`].
pub struct MigrationBuilder {
    node: Node,
    registry: Option<Arc<dyn NameRegistry>>,
    cfg: HandoffConfig,
    types: Vec<Box<dyn FnOnce(&Migration) + Send>>,
}

impl Migration {
    /// Starts configuring this node's migration service.
    pub fn builder(node: &Node) -> MigrationBuilder {
        MigrationBuilder { node: node.clone(), registry: None, cfg: HandoffConfig::default(), types: vec![] }
    }
}

impl MigrationBuilder {
    /// Where processes' names live. Default: OTP `global`.
    pub fn registry(mut self, registry: Arc<dyn NameRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Timers and placement; default [`HandoffConfig::default`].
    pub fn config(mut self, cfg: HandoffConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Whether processes move here by themselves when this node joins
    /// (see [`HandoffConfig::rebalance_on_join`]). Default `true`.
    pub fn rebalance_on_join(mut self, on: bool) -> Self {
        self.cfg.rebalance_on_join = on;
        self
    }

    /// Makes `M` hostable here from the start, as
    /// [`Migration::register_type`].
    pub fn register<M: Migratable>(mut self) -> Self {
        self.types.push(Box::new(|m: &Migration| m.register_type::<M>()));
        self
    }

    /// Makes `M` hostable here and pins its processes to the node that
    /// hosts them ([`Migration::pin_type`]): placement never moves them.
    pub fn register_pinned<M: Migratable>(mut self) -> Self {
        self.types.push(Box::new(|m: &Migration| {
            m.register_type::<M>();
            m.pin_type::<M>();
        }));
        self
    }

    /// Starts the manager (`erlnode_migration`) and registers the types.
    pub fn start(self) -> Result<Migration, NodeError> {
        let registry = self.registry.unwrap_or_else(|| Arc::new(self.node.global()));
        let m = Migration::start(&self.node, registry, self.cfg)?;
        for register in self.types {
            register(&m);
        }
        Ok(m)
    }
}
