//! Kernel modules, loaded in parallel in the order their dependencies
//! allow.
//!
//! Under emulation a module's init can take half a second (virtio_pci
//! probing the PCI devices, ext4 and the AES code running their self-tests)
//! while the next one in the list does not need it. Each module's
//! `.modinfo` section names what it depends on (`depends=a,b`); a module
//! is loaded as soon as every dependency in the list is in, by a few
//! threads at once. The kernel reads the file itself (`finit_module`),
//! compressed or not.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// Threads loading modules: module inits mostly wait (probing devices) or
/// run on one CPU, so a few more than the VM's CPUs.
const WORKERS: usize = 4;

/// One module of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: PathBuf,
    /// The kernel's name (`name=` in `.modinfo`, else the file name with
    /// `-` as `_`).
    pub name: String,
    /// `depends=` in `.modinfo`.
    pub depends: Vec<String>,
}

/// The module's name from its file name: `dm-crypt.ko.zst` -> `dm_crypt`.
fn name_from_path(path: &Path) -> String {
    let file = path
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    let stem = file.split(".ko").next().unwrap_or(&file);
    stem.replace('-', "_")
}

fn le16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_le_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn le64(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?)).ok()
}

/// The `.modinfo` section of a 64-bit little-endian ELF object, if any.
fn modinfo(elf: &[u8]) -> Option<&[u8]> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = le64(elf, 0x28)?;
    let shentsize = le16(elf, 0x3a)?;
    let shnum = le16(elf, 0x3c)?;
    let shstrndx = le16(elf, 0x3e)?;
    let section = |i: usize| -> Option<(usize, usize, usize)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((le32(elf, at)?, le64(elf, at + 0x18)?, le64(elf, at + 0x20)?))
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let names = elf.get(str_off..str_off.checked_add(str_size)?)?;
    (0..shnum).find_map(|i| {
        let (name, off, size) = section(i)?;
        let rest = names.get(name..)?;
        let end = rest.iter().position(|&c| c == 0)?;
        (&rest[..end] == b".modinfo").then(|| elf.get(off..off.checked_add(size)?))?
    })
}

/// Reads what [`Module`] needs from an uncompressed `.ko`; a compressed or
/// unreadable one gets its name from the path and no dependencies (it is
/// then loaded after every module listed before it, as the list orders).
pub fn describe(path: &Path) -> (Module, bool) {
    let bytes = std::fs::read(path).unwrap_or_default();
    let info = modinfo(&bytes);
    let mut name = None;
    let mut depends = Vec::new();
    for field in info.unwrap_or_default().split(|&c| c == 0) {
        let text = String::from_utf8_lossy(field);
        if let Some(n) = text.strip_prefix("name=") {
            name = Some(n.to_owned());
        } else if let Some(d) = text.strip_prefix("depends=") {
            depends = d
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    let module = Module {
        path: path.to_owned(),
        name: name.unwrap_or_else(|| name_from_path(path)),
        depends: depends.iter().map(|d| d.replace('-', "_")).collect(),
    };
    (module, info.is_some())
}

/// The order constraint of each module: the indices it waits for. A module
/// with known dependencies waits for those in the list, and for every
/// module before it that shares one of them; one without `.modinfo` waits
/// for every module before it.
///
/// Sharing a dependency means serving the same subsystem, and drivers of
/// one subsystem racing each other name its devices in whichever order
/// the threads win: `virtio_blk` (`depends=virtio,virtio_ring`) loading
/// while `virtio_pci` still adds the PCI devices made the root `/dev/vdb`
/// and the data disk `/dev/vda` on one boot in CI. In list order, the
/// disks are named as the kernel finds them, as with built-in drivers.
pub fn waits_for(modules: &[(Module, bool)]) -> Vec<Vec<usize>> {
    modules
        .iter()
        .enumerate()
        .map(|(i, (m, known))| {
            if !known {
                return (0..i).collect();
            }
            modules[..i]
                .iter()
                .enumerate()
                .filter(|(_, (o, _))| {
                    m.depends.contains(&o.name) || o.depends.iter().any(|d| m.depends.contains(d))
                })
                .map(|(j, _)| j)
                .collect()
        })
        .collect()
}

struct Shared {
    /// 0 pending, 1 running, 2 done.
    state: Vec<u8>,
    loaded: usize,
}

/// Loads `modules` (in list order where they depend on each other, in
/// parallel where not) with `load`, which returns whether the module was
/// newly loaded. Returns how many were.
pub fn load_all(modules: &[(Module, bool)], load: &(dyn Fn(&Module) -> bool + Sync)) -> usize {
    let waits = waits_for(modules);
    let shared = Mutex::new(Shared {
        state: vec![0; modules.len()],
        loaded: 0,
    });
    let changed = Condvar::new();
    let lock = || {
        shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let worker = || loop {
        let mut s = lock();
        let next = loop {
            if s.state.iter().all(|&st| st != 0) {
                return;
            }
            let ready = (0..modules.len())
                .find(|&i| s.state[i] == 0 && waits[i].iter().all(|&w| s.state[w] == 2));
            match ready {
                Some(i) => break i,
                None => {
                    s = changed
                        .wait(s)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                }
            }
        };
        s.state[next] = 1;
        drop(s);
        let newly = load(&modules[next].0);
        let mut s = lock();
        s.state[next] = 2;
        s.loaded += usize::from(newly);
        drop(s);
        changed.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(modules.len()) {
            scope.spawn(worker);
        }
    });
    let done = lock();
    done.loaded
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(name: &str, depends: &[&str], known: bool) -> (Module, bool) {
        (
            Module {
                path: PathBuf::from(format!("/lib/modules/{name}.ko")),
                name: name.to_owned(),
                depends: depends.iter().map(|d| (*d).to_owned()).collect(),
            },
            known,
        )
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(name_from_path(Path::new("/x/dm-crypt.ko")), "dm_crypt");
        assert_eq!(name_from_path(Path::new("/x/ext4.ko.zst")), "ext4");
    }

    #[test]
    fn waits_only_for_listed_dependencies_or_everything_before_an_unknown() {
        let list = [
            m("virtio_ring", &[], true),
            m("dm_mod", &[], true),
            m("virtio", &["virtio_ring"], true),
            m("dm_crypt", &["dm_mod", "builtin"], true),
            m("opaque", &[], false),
        ];
        assert_eq!(
            waits_for(&list),
            [vec![], vec![], vec![0], vec![1], vec![0, 1, 2, 3]]
        );
    }

    /// Two drivers of one bus load one after the other, in list order,
    /// so the devices they name keep the kernel's order.
    #[test]
    fn drivers_sharing_a_dependency_wait_for_each_other() {
        let list = [
            m("virtio", &[], true),
            m("virtio_pci", &["virtio", "virtio_pci_modern_dev"], true),
            m("virtio_blk", &["virtio", "virtio_ring"], true),
            m("dm_mod", &[], true),
            m("virtio_net", &["virtio", "net_failover"], true),
        ];
        assert_eq!(
            waits_for(&list),
            [vec![], vec![0], vec![0, 1], vec![], vec![0, 1, 2]]
        );
    }

    #[test]
    fn loads_each_once_after_its_dependencies() {
        let list = [
            m("a", &[], true),
            m("b", &["a"], true),
            m("c", &[], true),
            m("d", &["b", "c"], true),
        ];
        let order = Mutex::new(Vec::new());
        let n = load_all(&list, &|m| {
            order.lock().unwrap().push(m.name.clone());
            m.name != "c"
        });
        assert_eq!(n, 3);
        let order = order.into_inner().unwrap();
        assert_eq!(order.len(), 4);
        let at = |n: &str| order.iter().position(|o| o == n).unwrap();
        assert!(at("a") < at("b") && at("b") < at("d") && at("c") < at("d"));
    }

    /// A minimal ELF64 object: null section, `.shstrtab`, `.modinfo`.
    fn elf(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let str_off = f.len();
        f.extend_from_slice(shstrtab);
        let info_off = f.len();
        f.extend_from_slice(modinfo);
        let shoff = f.len();
        let sh = |name: u32, off: usize, size: usize| {
            let mut s = vec![0u8; 64];
            s[..4].copy_from_slice(&name.to_le_bytes());
            s[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            s[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            s
        };
        let sections = [
            sh(0, 0, 0),
            sh(1, str_off, shstrtab.len()),
            sh(11, info_off, modinfo.len()),
        ];
        for s in sections {
            f.extend_from_slice(&s);
        }
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        f
    }

    #[test]
    fn reads_modinfo() {
        let dir = tempfile::tempdir().unwrap();
        let ko = dir.path().join("dm-crypt.ko");
        std::fs::write(
            &ko,
            elf(b"license=GPL\0depends=dm-mod,dm_bufio\0name=dm_crypt\0"),
        )
        .unwrap();
        let (m, known) = describe(&ko);
        assert!(known);
        assert_eq!(m.name, "dm_crypt");
        assert_eq!(m.depends, ["dm_mod", "dm_bufio"]);

        // Truncated or not ELF: known = false, the name from the path.
        std::fs::write(&ko, &elf(b"depends=a\0")[..80]).unwrap();
        let (m, known) = describe(&ko);
        assert!(!known);
        assert_eq!(m.name, "dm_crypt");
    }
}
