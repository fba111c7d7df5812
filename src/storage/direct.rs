//! `O_DIRECT` for the large reads and writes of a first boot (the blank
//! check's 17 MiB, the new header's 16 MiB): the bytes move between our
//! buffer and the disk without a copy through the page cache, which the
//! guest's CPU makes, slowly under emulation. Files on tmpfs (the tests'
//! fake devices) refuse `O_DIRECT`: callers then use an ordinary
//! descriptor.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The alignment `O_DIRECT` needs of offsets, lengths and buffer addresses:
/// the logical block size, at most 4096 for the disks we meet.
pub const ALIGN: usize = 4096;

/// Whether `v` is a multiple of [`ALIGN`].
pub fn aligned(v: u64) -> bool {
    v % ALIGN as u64 == 0
}

/// `device` opened with `O_DIRECT`, read-only or write-only; `None` where
/// the file system does not support it.
pub fn open(device: &Path, write: bool) -> Option<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(nix::libc::O_DIRECT)
        .open(device)
        .ok()
}

/// A zeroed buffer of a fixed length whose first byte sits at an
/// [`ALIGN`]ed address (a plain `Vec` over-allocated by the slack).
pub struct Buffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl Buffer {
    pub fn new(len: usize) -> Self {
        let storage = vec![0u8; len + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Buffer {
            storage,
            start,
            len,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_aligned() {
        for len in [0, 1, 4096, 100_000] {
            let mut b = Buffer::new(len);
            assert_eq!(b.as_slice().len(), len);
            assert_eq!(b.as_mut_slice().as_ptr() as usize % ALIGN, 0);
        }
        assert!(aligned(8192) && !aligned(512));
    }
}
