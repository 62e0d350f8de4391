use super::Signal;
use crate::term::{Atom, Pid};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;
use tokio::sync::mpsc::UnboundedSender;

struct Entry {
    tx: UnboundedSender<Signal>,
    name: Option<Atom>,
}

/// Every live local process and every registered name.
pub struct ProcessTable {
    node: Atom,
    creation: u32,
    next_id: AtomicU32,
    procs: RwLock<HashMap<u32, Entry>>,
    names: RwLock<HashMap<Atom, Pid>>,
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
            // Low ids look like system processes in BEAM tooling; start
            // where the BEAM's user processes start.
            next_id: AtomicU32::new(64),
            procs: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn insert(&self, tx: UnboundedSender<Signal>) -> Pid {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.procs.write().unwrap().insert(id, Entry { tx, name: None });
        Pid { node: self.node.clone(), id, serial: 0, creation: self.creation }
    }

    pub(crate) fn remove(&self, pid: &Pid) {
        if let Some(e) = self.procs.write().unwrap().remove(&pid.id) {
            if let Some(name) = e.name {
                self.names.write().unwrap().remove(&name);
            }
        }
    }

    pub fn is_local(&self, pid: &Pid) -> bool {
        super::is_local(pid, &self.node, self.creation)
    }

    pub fn is_alive(&self, pid: &Pid) -> bool {
        self.is_local(pid) && self.procs.read().unwrap().contains_key(&pid.id)
    }

    /// Delivers to a local pid; false if no such process.
    pub fn deliver(&self, pid: &Pid, sig: Signal) -> bool {
        if !self.is_local(pid) {
            return false;
        }
        match self.procs.read().unwrap().get(&pid.id) {
            Some(e) => e.tx.send(sig).is_ok(),
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

    pub fn count(&self) -> usize {
        self.procs.read().unwrap().len()
    }
}
