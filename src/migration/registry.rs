//! Where a migratable process's name lives. The handoff only needs
//! three operations, so the registry is pluggable: OTP `global` by
//! default, a Horde-style registry later.

use crate::term::Pid;
use futures_util::future::BoxFuture;

pub trait NameRegistry: Send + Sync + 'static {
    fn whereis(&self, name: &str) -> Option<Pid>;
    /// Registers a free name.
    fn register<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>>;
    /// Points an existing name at `pid` atomically: no moment where the
    /// name is unregistered. Returns once every node agrees.
    fn re_register<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>>;
    /// Registers a free name for a type that merges on conflicts
    /// (`Migratable::MERGES`); a registry without conflicts registers as
    /// usual.
    fn register_merging<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>> {
        self.register(name, pid)
    }
}

/// OTP `global`: the name is an atom, as `{:global, :name}` in Elixir.
impl NameRegistry for crate::global::Global {
    fn whereis(&self, name: &str) -> Option<Pid> {
        self.whereis_name(&crate::term::Term::atom(name))
    }
    fn register<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>> {
        self.register_how(name, pid, crate::global::Resolve::RandomExit)
    }
    fn register_merging<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>> {
        self.register_how(name, pid, crate::global::Resolve::Merge)
    }
    fn re_register<'a>(&'a self, name: &'a str, pid: &'a Pid) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.re_register_name(crate::term::Term::atom(name), pid).await.map_err(|e| e.to_string()) })
    }
}

impl crate::global::Global {
    fn register_how<'a>(&'a self, name: &'a str, pid: &'a Pid, how: crate::global::Resolve) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match self.register_name_with(crate::term::Term::atom(name), pid, how).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("the global name {name} is taken")),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
