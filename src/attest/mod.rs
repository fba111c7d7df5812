//! Attesters.
