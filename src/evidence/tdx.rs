//! TDX quotes (v4, v5).
