use crate::term::{Atom, Pid, Reference, Term};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{RwLock, RwLockWriteGuard};
use super::chan::Sender;
use tokio::sync::oneshot;

/// One live local process: where its messages go and everything it owns
/// that must be cleaned up (and announced to peers) when it exits.
pub(crate) struct Entry {
    pub tx: Sender<Term>,
    /// Fired once with the exit reason to stop the process's task or
    /// close its mailbox.
    pub kill: Option<oneshot::Sender<Term>>,
    pub trap_exit: bool,
    pub name: Option<Atom>,
    pub links: Sparse<HashSet<Pid>>,
    /// Monitors others hold on this process: ref -> (watcher, the target
    /// as the watcher named it: pid or `{Name, Node}`).
    pub monitored_by: Sparse<HashMap<Reference, (Pid, Term)>>,
    /// Monitors this process holds: ref -> target (pid or `{Name, Node}`).
    pub monitors: Sparse<HashMap<Reference, Term>>,
    pub aliases: Sparse<Vec<Reference>>,
    /// Run once when the process ends, before its links and monitors
    /// hear of it (tables that list the process drop it first).
    pub on_exit: Sparse<Vec<Box<dyn FnOnce() + Send + Sync>>>,
}

/// A collection most processes never use (an idle process has no link,
/// monitor, alias or exit hook): one pointer until the first element,
/// instead of an empty `HashMap`'s 48 bytes in every process-table slot
/// (issue 16: memory per idle process).
pub(crate) struct Sparse<C>(Option<Box<C>>);

impl<C> Default for Sparse<C> {
    fn default() -> Self {
        Sparse(None)
    }
}

impl<C: Default> Sparse<C> {
    /// The collection, made on first use.
    pub fn get_mut(&mut self) -> &mut C {
        self.0.get_or_insert_with(Default::default)
    }
    /// The collection if it was ever used.
    pub fn as_mut(&mut self) -> Option<&mut C> {
        self.0.as_deref_mut()
    }
    pub fn get(&self) -> Option<&C> {
        self.0.as_deref()
    }
    /// Empties it, returning what it held.
    pub fn take(&mut self) -> C {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
}

/// Every live local process, registered name and alias.
pub struct ProcessTable {
    pub(crate) node: Atom,
    pub(crate) creation: u32,
    next_id: AtomicU32,
    pub(crate) procs: RwLock<HashMap<u32, Entry>>,
    names: RwLock<HashMap<Atom, Pid>>,
    aliases: RwLock<HashMap<Reference, Pid>>,
}

/// Registering a name failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegisterError {
    #[error("name {0} is already registered")]
    NameTaken(Atom),
    #[error("process {0} already has a registered name")]
    AlreadyNamed(Pid),
    #[error("process {0} is not alive")]
    NoProc(Pid),
}

impl ProcessTable {
    pub fn new(node: Atom, creation: u32) -> Self {
        ProcessTable {
            node,
            creation,
            // The BEAM's first user processes have ids well above 0; id 0
            // is kept for the node's inline system services.
            next_id: AtomicU32::new(64),
            procs: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            aliases: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn insert(&self, tx: Sender<Term>, kill: oneshot::Sender<Term>) -> Pid {
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id >= 64 {
                break id;
            }
        };
        let entry = Entry {
            tx,
            kill: Some(kill),
            trap_exit: false,
            name: None,
            links: Sparse::default(),
            monitored_by: Sparse::default(),
            monitors: Sparse::default(),
            aliases: Sparse::default(),
            on_exit: Sparse::default(),
        };
        self.procs.write().unwrap().insert(id, entry);
        Pid { node: self.node.clone(), id, serial: 0, creation: self.creation }
    }

    /// Adds a callback run when `pid` ends (see [`Entry::on_exit`]).
    /// Hands it back if `pid` is not a live local process.
    pub(crate) fn on_exit(&self, pid: &Pid, f: Box<dyn FnOnce() + Send + Sync>) -> Result<(), Box<dyn FnOnce() + Send + Sync>> {
        if !self.is_local(pid) {
            return Err(f);
        }
        match self.procs.write().unwrap().get_mut(&pid.id) {
            Some(e) => {
                e.on_exit.get_mut().push(f);
                Ok(())
            }
            None => Err(f),
        }
    }

    /// Removes a process and its name and aliases; the caller announces
    /// the exit to links and monitors. `None` if it was already gone.
    pub(crate) fn remove(&self, pid: &Pid) -> Option<Entry> {
        if !self.is_local(pid) {
            return None;
        }
        let e = self.procs.write().unwrap().remove(&pid.id)?;
        if let Some(name) = &e.name {
            self.names.write().unwrap().remove(name);
        }
        if let Some(own) = e.aliases.get().filter(|v| !v.is_empty()) {
            let mut aliases = self.aliases.write().unwrap();
            for a in own {
                aliases.remove(a);
            }
        }
        Some(e)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, HashMap<u32, Entry>> {
        self.procs.write().unwrap()
    }

    pub fn is_local(&self, pid: &Pid) -> bool {
        pid.node == self.node && pid.creation == self.creation
    }

    pub fn is_alive(&self, pid: &Pid) -> bool {
        self.is_local(pid) && self.procs.read().unwrap().contains_key(&pid.id)
    }

    /// Delivers to a local pid; false if no such process.
    pub fn deliver(&self, pid: &Pid, msg: Term) -> bool {
        if !self.is_local(pid) {
            return false;
        }
        match self.procs.read().unwrap().get(&pid.id) {
            Some(e) => e.tx.send(msg).is_ok(),
            None => false,
        }
    }

    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.names.read().unwrap().get(name).cloned()
    }

    pub fn register(&self, name: Atom, pid: &Pid) -> Result<(), RegisterError> {
        let mut procs = self.procs.write().unwrap();
        let mut names = self.names.write().unwrap();
        let entry = procs.get_mut(&pid.id).filter(|_| self.is_local(pid)).ok_or_else(|| RegisterError::NoProc(pid.clone()))?;
        if names.contains_key(&name) {
            return Err(RegisterError::NameTaken(name));
        }
        if entry.name.is_some() {
            return Err(RegisterError::AlreadyNamed(pid.clone()));
        }
        entry.name = Some(name.clone());
        names.insert(name, pid.clone());
        Ok(())
    }

    pub fn unregister(&self, name: &str) -> Option<Pid> {
        let mut procs = self.procs.write().unwrap();
        let pid = self.names.write().unwrap().remove(name)?;
        if let Some(e) = procs.get_mut(&pid.id) {
            e.name = None;
        }
        Some(pid)
    }

    pub(crate) fn add_alias(&self, pid: &Pid, alias: Reference) -> bool {
        let mut procs = self.procs.write().unwrap();
        let Some(e) = procs.get_mut(&pid.id) else { return false };
        e.aliases.get_mut().push(alias.clone());
        self.aliases.write().unwrap().insert(alias, pid.clone());
        true
    }

    pub(crate) fn remove_alias(&self, pid: &Pid, alias: &Reference) {
        let mut procs = self.procs.write().unwrap();
        if let Some(e) = procs.get_mut(&pid.id) {
            if let Some(v) = e.aliases.as_mut() {
                v.retain(|a| a != alias);
            }
        }
        self.aliases.write().unwrap().remove(alias);
    }

    pub fn alias_owner(&self, alias: &Reference) -> Option<Pid> {
        self.aliases.read().unwrap().get(alias).cloned()
    }

    pub fn count(&self) -> usize {
        self.procs.read().unwrap().len()
    }
}
