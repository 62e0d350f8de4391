//! TEMPORARY placeholder (lead) until the EPMD module lands.
#[derive(Debug, thiserror::Error)]
#[error("epmd: {0}")]
pub struct EpmdError(pub String);
pub enum NodeKind { Normal }
pub struct Registration;
impl Registration { pub fn creation(&self) -> u32 { 1 } }
pub struct EpmdServerHandle;
impl EpmdServerHandle { pub fn shutdown(&self) {} }
pub struct NodeEntry { pub port: u16 }
pub struct EpmdClient;
impl EpmdClient {
    pub fn new(_h: impl Into<String>, _p: u16) -> Self { EpmdClient }
    pub async fn register(&self, _n: &str, _p: u16, _k: NodeKind) -> Result<Registration, EpmdError> { Err(EpmdError("x".into())) }
    pub async fn port_please(&self, _n: &str) -> Result<Option<NodeEntry>, EpmdError> { Ok(None) }
}
impl EpmdClient { pub async fn names(&self) -> Result<Vec<(String,u16)>, EpmdError> { Ok(vec![]) } }
pub async fn ensure_epmd(_p: u16) -> Result<Option<EpmdServerHandle>, EpmdError> { Ok(None) }
