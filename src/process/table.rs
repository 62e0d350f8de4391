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
    pub links: HashSet<Pid>,
    /// Monitors others hold on this process: ref -> (watcher, the target
    /// as the watcher named it: pid or `{Name, Node}`).
    pub monitored_by: HashMap<Reference, (Pid, Term)>,
    /// Monitors this process holds: ref -> target (pid or `{Name, Node}`).
    pub monitors: HashMap<Reference, Term>,
    pub aliases: Vec<Reference>,
    /// Run once when the process ends, before its links and monitors
    /// hear of it (tables that list the process drop it first).
    pub on_exit: Vec<Box<dyn FnOnce() + Send + Sync>>,
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
            links: HashSet::new(),
            monitored_by: HashMap::new(),
            monitors: HashMap::new(),
            aliases: Vec::new(),
            on_exit: Vec::new(),
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
                e.on_exit.push(f);
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
        if !e.aliases.is_empty() {
            let mut aliases = self.aliases.write().unwrap();
            for a in &e.aliases {
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
        e.aliases.push(alias.clone());
        self.aliases.write().unwrap().insert(alias, pid.clone());
        true
    }

    pub(crate) fn remove_alias(&self, pid: &Pid, alias: &Reference) {
        let mut procs = self.procs.write().unwrap();
        if let Some(e) = procs.get_mut(&pid.id) {
            e.aliases.retain(|a| a != alias);
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
