//! Dropping privileges once the capture sockets are open.
//!
//! Opening AF_PACKET sockets needs CAP_NET_RAW (and usually root); reading their rings afterwards
//! needs nothing. [`drop_privileges`] switches to an unprivileged user and keeps only the listed
//! capabilities, so that a parser bug exploited by hostile traffic gets an unprivileged process.
//!
//! Linux capabilities are per thread and `capset` changes only the calling thread: call this from
//! the main thread **before** spawning any thread (tokio runtime, workers). The uid/gid changes
//! are applied to every thread by the C library, the capability sets are not.
#![allow(unsafe_code)]

use std::ffi::CString;

/// Linux capabilities by their number in `linux/capability.h`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    Chown,
    DacOverride,
    DacReadSearch,
    NetBindService,
    NetAdmin,
    NetRaw,
    SysAdmin,
    Setuid,
    Setgid,
    Setpcap,
}

impl Capability {
    pub fn number(self) -> u32 {
        match self {
            Capability::Chown => 0,
            Capability::DacOverride => 1,
            Capability::DacReadSearch => 2,
            Capability::Setgid => 6,
            Capability::Setuid => 7,
            Capability::Setpcap => 8,
            Capability::NetBindService => 10,
            Capability::NetAdmin => 12,
            Capability::NetRaw => 13,
            Capability::SysAdmin => 21,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("user {user:?}: not found in the password database (errno {errno})")]
    NoSuchUser { user: String, errno: i32 },
    #[error("{op}: {} (errno {errno})", std::io::Error::from_raw_os_error(*errno))]
    Os { op: &'static str, errno: i32 },
    #[error("after dropping privileges {what} is still {value}")]
    NotDropped { what: &'static str, value: String },
}

/// What [`drop_privileges`] left the process with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub uid: u32,
    pub gid: u32,
    /// Effective (= permitted) capability mask.
    pub caps: u64,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Copy, Clone, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn check(op: &'static str, rc: libc::c_int) -> Result<(), PrivError> {
    if rc < 0 {
        Err(PrivError::Os { op, errno: errno() })
    } else {
        Ok(())
    }
}

/// (effective, permitted) masks of the calling thread.
fn capget() -> Result<(u64, u64), PrivError> {
    let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and two data structs, both live and writable.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    check("capget", rc as libc::c_int)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((join(data[0].effective, data[1].effective), join(data[0].permitted, data[1].permitted)))
}

fn capset(mask: u64) -> Result<(), PrivError> {
    let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let lo = mask as u32;
    let hi = (mask >> 32) as u32;
    let data = [
        CapData { effective: lo, permitted: lo, inheritable: 0 },
        CapData { effective: hi, permitted: hi, inheritable: 0 },
    ];
    // SAFETY: version 3 takes a header and two data structs; the kernel only reads `data`.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    check("capset", rc as libc::c_int)
}

fn prctl(op: &'static str, option: libc::c_int, arg: libc::c_ulong) -> Result<(), PrivError> {
    // SAFETY: the prctl options used here take integer arguments only.
    let rc = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    check(op, rc)
}

fn lookup(user: &str) -> Result<(u32, u32), PrivError> {
    let no_user = |errno| PrivError::NoSuchUser { user: user.to_string(), errno };
    let name = CString::new(user).map_err(|_| no_user(libc::EINVAL))?;
    // SAFETY: passwd is plain old data; all-zero is valid.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: every pointer is live for the call and `buf.len()` is the buffer's real size.
    let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return Err(no_user(if rc != 0 { rc } else { libc::ENOENT }));
    }
    Ok((pw.pw_uid, pw.pw_gid))
}

/// Switches to `user` (if given: supplementary groups cleared, its primary group, its uid) and
/// keeps only the capabilities in `keep` (effective and permitted; inheritable, ambient and, when
/// allowed, the bounding set emptied of the rest), then sets `PR_SET_NO_NEW_PRIVS` so that no later
/// exec can regain anything. Verifies the result with `getresuid`/`capget`.
pub fn drop_privileges(user: Option<&str>, keep: &[Capability]) -> Result<Dropped, PrivError> {
    let target = user.map(lookup).transpose()?;
    let keep_mask = keep.iter().fold(0u64, |m, c| m | (1u64 << c.number()));
    let (eff, _) = capget()?;

    // The bounding set limits what any later exec could gain; shrinking it needs CAP_SETPCAP, so
    // it is done first, while we may still hold it. Without CAP_SETPCAP it is left alone.
    if eff & (1 << Capability::Setpcap.number()) != 0 {
        let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(40)
            .min(63);
        for cap in 0..=last {
            if keep_mask & (1 << cap) == 0 {
                prctl("prctl(PR_CAPBSET_DROP)", libc::PR_CAPBSET_DROP, cap.into())?;
            }
        }
    }

    if let Some((uid, gid)) = target {
        // Keep the permitted set across setuid (otherwise a switch away from uid 0 clears it).
        if keep_mask != 0 {
            prctl("prctl(PR_SET_KEEPCAPS, 1)", libc::PR_SET_KEEPCAPS, 1)?;
        }
        // SAFETY: a one-element array, live for the call.
        check("setgroups", unsafe { libc::setgroups(1, &gid) })?;
        // SAFETY: plain syscalls (the C library applies them to every thread).
        check("setresgid", unsafe { libc::setresgid(gid, gid, gid) })?;
        // SAFETY: as above.
        check("setresuid", unsafe { libc::setresuid(uid, uid, uid) })?;
        if keep_mask != 0 {
            prctl("prctl(PR_SET_KEEPCAPS, 0)", libc::PR_SET_KEEPCAPS, 0)?;
        }
    }

    capset(keep_mask)?;
    // Ambient capabilities would survive an exec; none are wanted. Older kernels lack the option.
    let _ =
        prctl("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong);
    prctl("prctl(PR_SET_NO_NEW_PRIVS)", libc::PR_SET_NO_NEW_PRIVS, 1)?;

    let (eff, prm) = capget()?;
    if eff != keep_mask || prm != keep_mask {
        return Err(PrivError::NotDropped { what: "the capability set", value: format!("{eff:#x}/{prm:#x}") });
    }
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three writable uid_t.
    check("getresuid", unsafe { libc::getresuid(&mut r, &mut e, &mut s) })?;
    if let Some((uid, _)) = target {
        if [r, e, s] != [uid, uid, uid] {
            return Err(PrivError::NotDropped { what: "the uid", value: format!("{r}/{e}/{s}") });
        }
    }
    // SAFETY: getgid cannot fail.
    let gid = unsafe { libc::getgid() };
    Ok(Dropped { uid: e, gid, caps: eff })
}
