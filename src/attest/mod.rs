//! Attesters (placeholder until the attest branch lands).
pub trait Attester {
    fn tee(&self) -> kbs_types::Tee;
    fn evidence(&self, digest: &[u8; 48]) -> Result<serde_json::Value, AttestError>;
    fn describe(&self) -> String;
}
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("placeholder")]
    Todo,
}
#[derive(Clone, Debug, Default)]
pub struct Paths {
    _placeholder: (),
}
pub fn select(
    kind: crate::config::AttesterKind,
    allow_simulated: bool,
    paths: &Paths,
) -> Result<Box<dyn Attester>, AttestError> {
    let _ = (kind, allow_simulated, paths);
    Err(AttestError::Todo)
}
