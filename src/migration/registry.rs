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
}
