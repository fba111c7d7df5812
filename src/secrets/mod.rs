//! Secret bytes: zeroized on drop, never printed.

use std::fmt;

use zeroize::Zeroizing;

mod tmpfs;
pub use tmpfs::{check_target, write_secret, DeliveryError, Storage, Target};

/// Key material or any other confidential bytes received from the broker.
///
/// The buffer is wiped when dropped and `Debug` prints only the length, so a
/// stray `{:?}` in a log line cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of `bytes`; they are wiped when the secret is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes. Callers must not copy them into non-zeroizing storage.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([REDACTED; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::new(b"hunter2-key-material".to_vec());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("20 bytes"), "{shown}");
    }
}
