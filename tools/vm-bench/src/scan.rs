//! Streaming search of disk images, for checks such as "the key bytes and
//! the workload's plaintext are absent from the disk image".

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

const CHUNK: usize = 1 << 20;

/// Whether the file at `path` contains `needle` anywhere (also across
/// read boundaries). Reads the file once, in 1 MiB chunks.
pub fn image_contains(path: &Path, needle: &[u8]) -> Result<bool> {
    if needle.is_empty() {
        bail!("empty needle");
    }
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let keep = needle.len() - 1;
    let mut buf = vec![0u8; keep + CHUNK];
    let mut have = 0;
    loop {
        let n = f.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(false);
        }
        have += n;
        if find(&buf[..have], needle).is_some() {
            return Ok(true);
        }
        // Keep the tail that could start a match continuing in the next read.
        let tail = keep.min(have);
        buf.copy_within(have - tail..have, 0);
        have = tail;
    }
}

/// Offset of the first occurrence of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let p = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += p;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_across_chunk_boundaries() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut data = vec![0u8; 3 * CHUNK];
        let needle = b"secret-plaintext";
        let at = CHUNK - 5;
        data[at..at + needle.len()].copy_from_slice(needle);
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        assert!(image_contains(f.path(), needle).unwrap());
        assert!(!image_contains(f.path(), b"secret-plaintexT").unwrap());
        assert!(image_contains(f.path(), b"\0s").unwrap());
        assert!(image_contains(f.path(), b"t\0").unwrap());
        assert!(image_contains(f.path(), b"").is_err());
    }
}
