//! Trustee KBS client (protocol 0.4.0): RCAR handshake, session, JWE.

pub mod binding;
pub mod jwe;
