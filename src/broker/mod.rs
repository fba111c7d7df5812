//! Trustee KBS client (protocol 0.4.0): RCAR handshake, session, JWE.

pub mod binding;
pub mod client;
pub mod error;
pub mod jwe;
pub mod reply;
pub mod tls;

pub use client::BrokerClient;
pub use error::{BrokerError, KbsErrorKind};
