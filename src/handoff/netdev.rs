//! Static IPv4 set-up for PID-1 mode, with the classic interface ioctls
//! (no netlink library needed for one address and one route).
//!
//! The FFI layer (`sys`) holds the request numbers and `#[repr(C)]`
//! structs with their kernel sizes checked at compile time; the functions
//! above it are safe.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

mod sys {
    use std::mem::size_of;

    pub const IFNAMSIZ: usize = 16;

    /// `struct sockaddr_in`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct SockaddrIn {
        pub family: u16,
        pub port: u16,
        pub addr: [u8; 4],
        pub zero: [u8; 8],
    }

    /// `struct ifreq` with the `ifr_addr` union member.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct IfreqAddr {
        pub name: [u8; IFNAMSIZ],
        pub addr: SockaddrIn,
        pub pad: [u8; 8],
    }

    /// `struct ifreq` with the `ifr_flags` union member.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct IfreqFlags {
        pub name: [u8; IFNAMSIZ],
        pub flags: i16,
        pub pad: [u8; 22],
    }

    /// `struct rtentry` (linux/route.h), x86_64 layout.
    #[repr(C)]
    pub struct Rtentry {
        pub pad1: u64,
        pub dst: SockaddrIn,
        pub gateway: SockaddrIn,
        pub genmask: SockaddrIn,
        pub flags: u16,
        pub pad2: i16,
        pub pad3: u64,
        pub tos: u8,
        pub class: u8,
        pub pad4: [i16; 3],
        pub metric: i16,
        pub dev: *mut libc::c_char,
        pub mtu: u64,
        pub window: u64,
        pub irtt: u16,
    }

    const _: () = assert!(size_of::<SockaddrIn>() == 16);
    const _: () = assert!(size_of::<IfreqAddr>() == 40);
    const _: () = assert!(size_of::<IfreqFlags>() == 40);
    #[cfg(target_arch = "x86_64")]
    const _: () = assert!(size_of::<Rtentry>() == 120);

    pub const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
    pub const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
    pub const SIOCSIFADDR: libc::c_ulong = 0x8916;
    pub const SIOCSIFNETMASK: libc::c_ulong = 0x891c;
    pub const SIOCADDRT: libc::c_ulong = 0x890b;
    pub const RTF_UP: u16 = 0x0001;
    pub const RTF_GATEWAY: u16 = 0x0002;
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments; the result is
    // checked before use and owned by the returned OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifname(name: &str) -> io::Result<[u8; sys::IFNAMSIZ]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= sys::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let mut out = [0u8; sys::IFNAMSIZ];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

fn sockaddr(addr: Ipv4Addr) -> sys::SockaddrIn {
    sys::SockaddrIn {
        family: libc::AF_INET as u16,
        port: 0,
        addr: addr.octets(),
        zero: [0; 8],
    }
}

/// Issues one ioctl whose argument is a `#[repr(C)]` struct owned by us.
fn ioctl<T>(sock: &OwnedFd, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` points to a live, properly sized and aligned struct of
    // the layout the kernel expects for `request` (sizes asserted in `sys`);
    // the kernel reads or writes only within it for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, arg as *mut T) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Brings `name` up (IFF_UP).
pub fn link_up(name: &str) -> io::Result<()> {
    let sock = socket()?;
    let mut req = sys::IfreqFlags {
        name: ifname(name)?,
        ..Default::default()
    };
    ioctl(&sock, sys::SIOCGIFFLAGS, &mut req)?;
    req.flags |= libc::IFF_UP as i16;
    ioctl(&sock, sys::SIOCSIFFLAGS, &mut req)
}

/// Sets `addr/prefix` on `name` and brings it up.
pub fn set_address(name: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let sock = socket()?;
    let mut req = sys::IfreqAddr {
        name: ifname(name)?,
        addr: sockaddr(addr),
        pad: [0; 8],
    };
    ioctl(&sock, sys::SIOCSIFADDR, &mut req)?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    req.addr = sockaddr(Ipv4Addr::from(mask));
    ioctl(&sock, sys::SIOCSIFNETMASK, &mut req)?;
    link_up(name)
}

/// Adds the default route through `gateway`.
pub fn add_default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let sock = socket()?;
    let mut rt = sys::Rtentry {
        pad1: 0,
        dst: sockaddr(Ipv4Addr::UNSPECIFIED),
        gateway: sockaddr(gateway),
        genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
        flags: sys::RTF_UP | sys::RTF_GATEWAY,
        pad2: 0,
        pad3: 0,
        tos: 0,
        class: 0,
        pad4: [0; 3],
        metric: 0,
        dev: std::ptr::null_mut(),
        mtu: 0,
        window: 0,
        irtt: 0,
    };
    match ioctl(&sock, sys::SIOCADDRT, &mut rt) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(ifname("eth0").is_ok());
        assert!(ifname("").is_err());
        assert!(ifname("a-very-long-interface-name").is_err());
    }

    #[test]
    fn unknown_interface_is_an_error_not_a_crash() {
        let e = set_address("nosuchif0", Ipv4Addr::new(10, 0, 2, 15), 24)
            .expect_err("no such interface");
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::EPERM)),
            "{e}"
        );
    }
}
