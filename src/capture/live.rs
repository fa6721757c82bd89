//! Live capture from tap ports: AF_PACKET sockets with a TPACKET_V3 memory-mapped RX ring.
//!
//! One [`LiveCapture`] is one worker's set of rings, one per interface. Several workers capture the
//! same interfaces by joining one `PACKET_FANOUT` group per interface, which shares the frames
//! out by their innermost address pair (through VXLAN) or by the kernel's flow hash
//! ([`super::fanout`] says how, and why the first is the default);
//! `PACKET_FANOUT_FLAG_DEFRAG`: IPv4 fragments are reassembled by the kernel before that choice
//! so every fragment of a datagram reaches the worker that sees its flow; the ring then holds the
//! reassembled datagram, not the fragments.
//!
//! The ring is the kernel's TPACKET_V3 layout: `block_count` blocks of `block_size` bytes. The
//! kernel fills a block with variable-length frames and hands it to user space (block status
//! `TP_STATUS_USER`) when it is full or when `block_timeout_ms` expires; we walk its frames, hand
//! each to the caller, then give the block back (`TP_STATUS_KERNEL`). While every block is held by
//! user space the kernel drops packets and counts them (`PACKET_STATISTICS`: [`LiveStats`]).
//!
//! VLAN: the kernel removes the outer 802.1Q/802.1ad tag from every received frame before any
//! packet socket sees it (`skb_vlan_untag` in the receive path, or the NIC's VLAN offload) and
//! reports it beside the frame (`tp_vlan_tci`, `tp_vlan_tpid`, flagged by `TP_STATUS_VLAN_VALID`).
//! A lawful-interception record must hold the frame as it was on the wire, and the pipeline's
//! decoder selects on the VLAN ID, so we put the tag back (as libpcap does); `orig_len` grows by 4.
//!
//! No-panic contract: the ring's bytes are written by the kernel, but they are still treated as
//! untrusted: every offset and length read from a block is checked against the block's bounds,
//! and a block that does not add up is counted as malformed and given back, never indexed out of
//! bounds.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::fanout::Fanout;
use super::{Frame, LinkType};
use crate::timestamp::Timestamp;

/// Sizes and options of each worker's ring(s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a multiple of the page size (a power of two wastes nothing).
    pub block_size: u32,
    /// Blocks per ring (per interface, per worker).
    pub block_count: u32,
    /// The kernel's nominal frame slot: a multiple of 16, at most `block_size`. With TPACKET_V3 frames
    /// are packed at their real size, so this only has to make `tp_frame_nr` consistent.
    pub frame_size: u32,
    /// A block that is not full is handed to user space after this many milliseconds (latency bound).
    pub block_timeout_ms: u32,
    /// Put each interface in promiscuous mode while the capture is open (PACKET_MR_PROMISC; the
    /// kernel counts memberships, so closing the socket undoes it).
    pub promiscuous: bool,
    /// Fanout group id for the first interface; interface `i` of the list uses `id + i` (wrapping),
    /// because a fanout group belongs to one device. All workers must pass the same id and the same
    /// interface list. `None`: no fanout (a single worker sees everything).
    pub fanout_group: Option<u16>,
    /// How a fanout group shares the frames out.
    pub fanout: Fanout,
}

impl Default for RingConfig {
    /// 64 MiB per ring: 64 blocks of 1 MiB, 10 ms block timeout, promiscuous, no fanout.
    fn default() -> RingConfig {
        RingConfig {
            block_size: 1 << 20,
            block_count: 64,
            frame_size: 2048,
            block_timeout_ms: 10,
            promiscuous: true,
            fanout_group: None,
            fanout: Fanout::InnerPair,
        }
    }
}

/// Why a live capture could not be opened or read. Every variant names the interface and the errno.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(
        "{iface}: {op}: {} (errno {errno}): AF_PACKET capture needs CAP_NET_RAW (run as root or grant \
         the capability, e.g. setcap cap_net_raw+ep)",
        strerror(*errno)
    )]
    Permission { iface: String, op: &'static str, errno: i32 },
    #[error("{iface}: no such interface: {} (errno {errno})", strerror(*errno))]
    NoSuchInterface { iface: String, errno: i32 },
    #[error("{iface}: invalid ring configuration: {reason} (errno {errno})")]
    Config { iface: String, reason: String, errno: i32 },
    #[error("{iface}: {op}: {} (errno {errno})", strerror(*errno))]
    Os { iface: String, op: &'static str, errno: i32 },
}

fn strerror(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// Kernel counters of one interface's ring, accumulated since the capture was opened (the kernel
/// resets its own on every read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceStats {
    pub interface: String,
    /// Frames the kernel put in the ring (its `tp_packets` minus `tp_drops`).
    pub packets: u64,
    /// Frames the kernel dropped because no block was free (`tp_drops`).
    pub drops: u64,
    /// Times the ring froze with every block held by user space (`tp_freeze_q_cnt`).
    pub freezes: u64,
    /// Frames handed to the caller of [`LiveCapture::poll`].
    pub handed: u64,
    /// Blocks whose headers did not add up (their remaining frames were skipped).
    pub malformed_blocks: u64,
}

/// Per-interface counters of one worker; see [`IfaceStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    pub interfaces: Vec<IfaceStats>,
}

impl LiveStats {
    pub fn packets(&self) -> u64 {
        self.interfaces.iter().map(|s| s.packets).sum()
    }
    pub fn drops(&self) -> u64 {
        self.interfaces.iter().map(|s| s.drops).sum()
    }
    pub fn freezes(&self) -> u64 {
        self.interfaces.iter().map(|s| s.freezes).sum()
    }
    pub fn handed(&self) -> u64 {
        self.interfaces.iter().map(|s| s.handed).sum()
    }
}

/// One worker's rings, one per interface.
pub struct LiveCapture {
    rings: Vec<Ring>,
    pollfds: Vec<libc::pollfd>,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("interfaces", &self.rings.iter().map(|r| &r.iface).collect::<Vec<_>>())
            .finish()
    }
}

impl LiveCapture {
    /// Opens one ring per interface (in this thread's network namespace).
    pub fn open(interfaces: &[String], cfg: &RingConfig) -> Result<LiveCapture, LiveError> {
        if interfaces.is_empty() {
            return Err(LiveError::Config {
                iface: String::new(),
                reason: "no interface given".into(),
                errno: libc::EINVAL,
            });
        }
        let mut rings: Vec<Ring> = Vec::with_capacity(interfaces.len());
        for (i, name) in interfaces.iter().enumerate() {
            if interfaces[..i].contains(name) {
                return Err(LiveError::Config {
                    iface: name.clone(),
                    reason: "interface listed twice (every frame would be seen twice)".into(),
                    errno: libc::EINVAL,
                });
            }
            let group = cfg.fanout_group.map(|g| g.wrapping_add(i as u16));
            rings.push(Ring::open(name, cfg, group)?);
        }
        let pollfds =
            rings.iter().map(|r| libc::pollfd { fd: r.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        Ok(LiveCapture { rings, pollfds })
    }

    /// The interfaces, in the order given to [`LiveCapture::open`].
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.rings.iter().map(|r| r.iface.as_str())
    }

    /// Waits up to `timeout` for frames and hands each to `f`; returns the number handed.
    ///
    /// Frames already in the ring are handed at once without waiting. Every block walked is given
    /// back to the kernel before returning (also if `f` panics).
    pub fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(&crate::capture::Frame<'_>),
    ) -> Result<usize, LiveError> {
        let n = self.drain(f);
        if n > 0 {
            return Ok(n);
        }
        // Round up so that a sub-millisecond timeout still waits instead of spinning.
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        for p in &mut self.pollfds {
            p.revents = 0;
        }
        // SAFETY: `pollfds` is a live, correctly sized array of pollfd for the duration of the call,
        // and its fds are owned by `self.rings`, which outlive it.
        let rc = unsafe { libc::poll(self.pollfds.as_mut_ptr(), self.pollfds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let errno = last_errno();
            if errno != libc::EINTR {
                let iface = self.rings.iter().map(|r| r.iface.as_str()).collect::<Vec<_>>().join(",");
                return Err(LiveError::Os { iface, op: "poll", errno });
            }
        }
        for (ring, p) in self.rings.iter().zip(&self.pollfds) {
            if p.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                // E.g. ENETDOWN when the interface went down; reading SO_ERROR clears it, so the
                // caller may keep polling (the socket resumes when the interface comes back).
                let errno = ring.take_socket_error().unwrap_or(libc::EIO);
                return Err(LiveError::Os { iface: ring.iface.clone(), op: "poll", errno });
            }
        }
        Ok(self.drain(f))
    }

    fn drain(&mut self, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        self.rings.iter_mut().map(|r| r.drain(f)).sum()
    }

    /// Reads (and accumulates) the kernel's drop and freeze counters of every ring.
    pub fn stats(&mut self) -> Result<LiveStats, LiveError> {
        let mut out = LiveStats { interfaces: Vec::with_capacity(self.rings.len()) };
        for r in &mut self.rings {
            r.read_kernel_stats()?;
            out.interfaces.push(r.totals.clone());
        }
        Ok(out)
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// The memory-mapped ring of one socket; unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing borrows the mapping any
        // more (frames handed to callers cannot outlive `poll`).
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

struct Ring {
    iface: String,
    // Field order: the mapping goes before the socket is closed.
    map: Mapping,
    fd: OwnedFd,
    block_size: usize,
    block_count: usize,
    next: usize,
    link: LinkType,
    /// Room to rebuild one frame with its VLAN tag put back; sized at open, so no allocation per packet.
    scratch: Vec<u8>,
    totals: IfaceStats,
}

// SAFETY: the mapping is owned by this Ring alone (no other handle to it exists in the process) and
// the kernel synchronises with us through the block status words, not through thread identity, so
// the ring may be moved to and used from another thread.
unsafe impl Send for Ring {}

const ETH_P_ALL: u16 = 0x0003;
/// `linux/if_arp.h`; not in the libc crate.
const ARPHRD_RAWIP: u16 = 519;

impl Ring {
    fn open(iface: &str, cfg: &RingConfig, fanout_group: Option<u16>) -> Result<Ring, LiveError> {
        let config = |reason: String| LiveError::Config { iface: iface.to_string(), reason, errno: libc::EINVAL };
        let os = |op: &'static str, errno: i32| LiveError::Os { iface: iface.to_string(), op, errno };
        let perm_or_os = |op: &'static str, errno: i32| {
            if errno == libc::EPERM || errno == libc::EACCES {
                LiveError::Permission { iface: iface.to_string(), op, errno }
            } else {
                os(op, errno)
            }
        };

        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = if page > 0 { page as u64 } else { 4096 };
        if cfg.block_size == 0 || u64::from(cfg.block_size) % page != 0 {
            return Err(config(format!(
                "block_size {} is not a positive multiple of the page size {page}",
                cfg.block_size
            )));
        }
        if cfg.block_count == 0 {
            return Err(config("block_count is 0".into()));
        }
        let min_frame = libc::TPACKET3_HDRLEN as u32;
        if cfg.frame_size < min_frame || cfg.frame_size % 16 != 0 || cfg.frame_size > cfg.block_size {
            return Err(config(format!(
                "frame_size {} must be a multiple of 16 between {min_frame} and block_size {}",
                cfg.frame_size, cfg.block_size
            )));
        }
        let frames_per_block = cfg.block_size / cfg.frame_size;
        let frame_nr = frames_per_block
            .checked_mul(cfg.block_count)
            .ok_or_else(|| config(format!("{frames_per_block} frames x {} blocks overflows", cfg.block_count)))?;
        let map_len = (cfg.block_size as usize)
            .checked_mul(cfg.block_count as usize)
            .ok_or_else(|| config("ring size overflows".into()))?;

        let cname = CString::new(iface)
            .map_err(|_| LiveError::NoSuchInterface { iface: iface.to_string(), errno: libc::ENODEV })?;
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
            return Err(LiveError::NoSuchInterface { iface: iface.to_string(), errno: libc::ENODEV });
        }

        // Protocol 0: the socket receives nothing until the ring is set up and it is bound.
        // SAFETY: plain syscall; the returned fd (if any) is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(perm_or_os("socket(AF_PACKET)", last_errno()));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: `cname` is a NUL-terminated string alive for the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(LiveError::NoSuchInterface { iface: iface.to_string(), errno: last_errno() });
        }
        let link =
            link_type(&fd, &cname).map_err(|e| os("ioctl(SIOCGIFHWADDR)", e))?.ok_or_else(|| LiveError::Config {
                iface: iface.to_string(),
                reason: "unsupported hardware type (only Ethernet, loopback and raw-IP devices)".into(),
                errno: libc::EPROTONOSUPPORT,
            })?;

        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(|e| os("setsockopt(PACKET_VERSION, TPACKET_V3)", e))?;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: frame_nr,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req).map_err(|e| {
            if e == libc::ENOMEM {
                config(format!("kernel could not allocate {} blocks of {} bytes", cfg.block_count, cfg.block_size))
            } else {
                perm_or_os("setsockopt(PACKET_RX_RING)", e)
            }
        })?;
        // SAFETY: maps the ring the kernel just allocated for this socket; length as requested.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os("mmap(ring)", last_errno()));
        }
        let map = Mapping { ptr: ptr.cast(), len: map_len };

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = last_errno();
            return Err(if e == libc::ENODEV || e == libc::ENXIO {
                LiveError::NoSuchInterface { iface: iface.to_string(), errno: e }
            } else {
                perm_or_os("bind", e)
            });
        }

        if cfg.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as i32,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|e| perm_or_os("setsockopt(PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC)", e))?;
        }

        // Joined after bind: the kernel only adds running (bound) sockets to a group.
        if let Some(group) = fanout_group {
            let how = match cfg.fanout {
                Fanout::FlowHash => libc::PACKET_FANOUT_HASH,
                Fanout::InnerPair => libc::PACKET_FANOUT_CBPF,
            };
            let mode = how | libc::PACKET_FANOUT_FLAG_DEFRAG;
            let arg = (u32::from(group) | (mode << 16)) as libc::c_int;
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg).map_err(|e| {
                if e == libc::EINVAL || e == libc::EALREADY {
                    LiveError::Config {
                        iface: iface.to_string(),
                        reason: format!(
                            "cannot join fanout group {group} (used by another interface or with another mode?)"
                        ),
                        errno: e,
                    }
                } else {
                    perm_or_os("setsockopt(PACKET_FANOUT)", e)
                }
            })?;
            if cfg.fanout == Fanout::InnerPair {
                // The group's program; every member sets the same one.
                let mut program = super::fanout::program();
                let fprog = libc::sock_fprog { len: program.len() as libc::c_ushort, filter: program.as_mut_ptr() };
                setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT_DATA, &fprog)
                    .map_err(|e| perm_or_os("setsockopt(PACKET_FANOUT_DATA, inner-pair program)", e))?;
            }
        }

        let block_size = cfg.block_size as usize;
        Ok(Ring {
            iface: iface.to_string(),
            map,
            fd,
            block_size,
            block_count: cfg.block_count as usize,
            next: 0,
            link,
            scratch: Vec::with_capacity(block_size + 4),
            totals: IfaceStats { interface: iface.to_string(), ..IfaceStats::default() },
        })
    }

    /// Hands every frame of every block the kernel has released, in ring order.
    fn drain(&mut self, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let mut handed = 0usize;
        // At most one lap, so that one busy interface cannot starve the others.
        for _ in 0..self.block_count {
            let base = self.next * self.block_size;
            // SAFETY: `next < block_count`, so `base + BLOCK_STATUS_OFF + 4 <= map.len`; the word is
            // 4-byte aligned (page-aligned block + 8) and is only accessed atomically by us.
            let status = unsafe { &*(self.map.ptr.add(base + BLOCK_STATUS_OFF) as *const AtomicU32) };
            if status.load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
            }
            let give_back = GiveBack(status);
            // SAFETY: the block lies inside the mapping, and while its status says TP_STATUS_USER the
            // kernel does not write to it (the Acquire load above orders our reads after its writes).
            // The slice dies before `give_back` hands the block back.
            let block = unsafe { std::slice::from_raw_parts(self.map.ptr.add(base), self.block_size) };
            let walked = walk_block(block, self.link, &mut self.scratch, f);
            drop(give_back);
            handed += walked.handed;
            self.totals.handed += walked.handed as u64;
            if walked.malformed {
                self.totals.malformed_blocks += 1;
            }
            self.next = (self.next + 1) % self.block_count;
        }
        handed
    }

    fn read_kernel_stats(&mut self) -> Result<(), LiveError> {
        let mut st = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes and `len` is a valid in/out length.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(LiveError::Os {
                iface: self.iface.clone(),
                op: "getsockopt(PACKET_STATISTICS)",
                errno: last_errno(),
            });
        }
        // The kernel's tp_packets includes the drops.
        self.totals.packets += u64::from(st.tp_packets.saturating_sub(st.tp_drops));
        self.totals.drops += u64::from(st.tp_drops);
        self.totals.freezes += u64::from(st.tp_freeze_q_cnt);
        Ok(())
    }

    fn take_socket_error(&self) -> Option<i32> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` is a writable c_int and `len` its size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0 && err != 0).then_some(err)
    }
}

/// Gives a block back to the kernel when dropped, so that a panicking callback does not leak it.
struct GiveBack<'a>(&'a AtomicU32);

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        // Release: our reads of the block happen before the kernel may refill it.
        self.0.store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> Result<(), i32> {
    // SAFETY: `val` points to a live T of exactly the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// The link type of the frames a SOCK_RAW packet socket reads on this device, from its ARPHRD type.
fn link_type(fd: &OwnedFd, name: &CString) -> Result<Option<LinkType>, i32> {
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name (at most IFNAMSIZ-1 bytes, checked by the
    // caller; the rest is zero) and writes the hardware address into `ifr`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr as *mut libc::ifreq) };
    if rc < 0 {
        return Err(last_errno());
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds `ifru_hwaddr`.
    let hatype = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_family };
    Ok(match hatype {
        // The loopback device carries (all-zero) Ethernet headers.
        libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => Some(LinkType::Ethernet),
        // tun and other point-to-point devices without link header: bare IP.
        libc::ARPHRD_NONE | libc::ARPHRD_PPP | ARPHRD_RAWIP => Some(LinkType::Raw),
        _ => None,
    })
}

// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then `tpacket_hdr_v1`).
const BLOCK_STATUS_OFF: usize = 8;
const BLOCK_NUM_PKTS_OFF: usize = 12;
const BLOCK_FIRST_PKT_OFF: usize = 16;
// Offsets in `struct tpacket3_hdr`.
const HDR_NEXT_OFF: usize = 0;
const HDR_SEC: usize = 4;
const HDR_NSEC: usize = 8;
const HDR_SNAPLEN: usize = 12;
const HDR_LEN: usize = 16;
const HDR_STATUS: usize = 20;
const HDR_MAC: usize = 24;
const HDR_VLAN_TCI: usize = 32;
const HDR_VLAN_TPID: usize = 36;
const HDR_SIZE: usize = 48;
const _: () = assert!(std::mem::size_of::<libc::tpacket3_hdr>() == HDR_SIZE);

#[derive(Debug, Default, PartialEq, Eq)]
struct Walked {
    handed: usize,
    malformed: bool,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let bytes = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

/// Walks the frames of one released TPACKET_V3 block and hands each to `f`. Never panics: a block
/// whose counts or offsets point outside it is reported `malformed` after the frames before the
/// fault. `scratch` must have capacity for a block plus 4 bytes to avoid allocating.
fn walk_block(block: &[u8], link: LinkType, scratch: &mut Vec<u8>, f: &mut dyn FnMut(&Frame<'_>)) -> Walked {
    let mut out = Walked::default();
    let (Some(num), Some(first)) = (u32_at(block, BLOCK_NUM_PKTS_OFF), u32_at(block, BLOCK_FIRST_PKT_OFF)) else {
        out.malformed = true;
        return out;
    };
    let mut off = first as usize;
    for i in 0..num {
        let Some(hdr) = off.checked_add(HDR_SIZE).and_then(|end| block.get(off..end)) else {
            out.malformed = true;
            return out;
        };
        // `hdr` is HDR_SIZE long, so these reads cannot fail; `?`-style fallbacks keep it panic-free.
        let field = |o| u32_at(hdr, o).unwrap_or(0);
        let next = field(HDR_NEXT_OFF);
        let snaplen = field(HDR_SNAPLEN) as usize;
        let wire_len = field(HDR_LEN);
        let status = field(HDR_STATUS);
        let mac = u16_at(hdr, HDR_MAC).unwrap_or(0) as usize;
        let data =
            off.checked_add(mac).and_then(|s| Some((s, s.checked_add(snaplen)?))).and_then(|(s, e)| block.get(s..e));
        let Some(data) = data else {
            out.malformed = true;
            return out;
        };
        let ts = Timestamp::from_secs_nanos(i64::from(field(HDR_SEC)), field(HDR_NSEC));
        if status & libc::TP_STATUS_VLAN_VALID != 0 && link == LinkType::Ethernet && data.len() >= 12 {
            let tci = field(HDR_VLAN_TCI) as u16;
            let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                u16_at(hdr, HDR_VLAN_TPID).unwrap_or(0x8100)
            } else {
                0x8100
            };
            scratch.clear();
            scratch.extend_from_slice(&data[..12]);
            scratch.extend_from_slice(&tpid.to_be_bytes());
            scratch.extend_from_slice(&tci.to_be_bytes());
            scratch.extend_from_slice(&data[12..]);
            f(&Frame { ts, link, data: scratch, orig_len: wire_len.saturating_add(4) });
        } else {
            f(&Frame { ts, link, data, orig_len: wire_len });
        }
        out.handed += 1;
        if i + 1 < num {
            match off.checked_add(next as usize) {
                Some(n) if next != 0 => off = n,
                _ => {
                    out.malformed = true;
                    return out;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a block the way the kernel lays it out (see linux/if_packet.h), frames 16-aligned.
    /// (frame bytes, seconds, stripped VLAN (TCI, TPID)).
    type TestFrame<'a> = (&'a [u8], u32, Option<(u16, u16)>);

    fn block(frames: &[TestFrame<'_>]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[BLOCK_NUM_PKTS_OFF..][..4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        b[BLOCK_FIRST_PKT_OFF..][..4].copy_from_slice(&48u32.to_ne_bytes());
        let mut off = 48usize;
        for (i, (data, sec, vlan)) in frames.iter().enumerate() {
            let mac = 80usize; // TPACKET_ALIGN(48) + sizeof(sockaddr_ll) rounded, as the kernel does
            let total = (mac + data.len()).div_ceil(16) * 16;
            let h = &mut b[off..];
            let next = if i + 1 < frames.len() { total as u32 } else { 0 };
            h[HDR_NEXT_OFF..][..4].copy_from_slice(&next.to_ne_bytes());
            h[HDR_SEC..][..4].copy_from_slice(&sec.to_ne_bytes());
            h[HDR_NSEC..][..4].copy_from_slice(&7u32.to_ne_bytes());
            h[HDR_SNAPLEN..][..4].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            h[HDR_LEN..][..4].copy_from_slice(&(data.len() as u32 + 100).to_ne_bytes());
            let mut status = libc::TP_STATUS_USER;
            if let Some((tci, tpid)) = vlan {
                status |= libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_VLAN_TPID_VALID;
                h[HDR_VLAN_TCI..][..4].copy_from_slice(&u32::from(*tci).to_ne_bytes());
                h[HDR_VLAN_TPID..][..2].copy_from_slice(&tpid.to_ne_bytes());
            }
            h[HDR_STATUS..][..4].copy_from_slice(&status.to_ne_bytes());
            h[HDR_MAC..][..2].copy_from_slice(&(mac as u16).to_ne_bytes());
            h[mac..][..data.len()].copy_from_slice(data);
            off += total;
        }
        b
    }

    fn collect(b: &[u8]) -> (Vec<(Vec<u8>, i64, u32)>, Walked) {
        let mut got = Vec::new();
        let mut scratch = Vec::with_capacity(b.len() + 4);
        let w = walk_block(b, LinkType::Ethernet, &mut scratch, &mut |fr| {
            got.push((fr.data.to_vec(), fr.ts.nanos(), fr.orig_len))
        });
        (got, w)
    }

    #[test]
    fn walks_frames_and_reinserts_vlan_tag() {
        let plain: Vec<u8> = (0u8..60).collect();
        let untagged: Vec<u8> = (100u8..160).collect();
        let b = block(&[(&plain, 1, None), (&untagged, 2, Some((0x2064, 0x88a8)))]);
        let (got, w) = collect(&b);
        assert_eq!(w, Walked { handed: 2, malformed: false });
        assert_eq!(got[0], (plain.clone(), 1_000_000_007, 160));
        // 802.1ad TPID, then PCP 1 / VID 100, between the MAC addresses and the EtherType.
        let mut tagged = untagged[..12].to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0x20, 0x64]);
        tagged.extend_from_slice(&untagged[12..]);
        assert_eq!(got[1], (tagged, 2_000_000_007, 164));
    }

    #[test]
    fn malformed_offsets_stop_the_walk_without_panic() {
        let data = [0xaau8; 40];
        let good = block(&[(&data, 1, None), (&data, 2, None)]);
        // Second frame's offset points past the block.
        let mut b = good.clone();
        b[48..52].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(collect(&b).1, Walked { handed: 1, malformed: true });
        // Snaplen past the end.
        let mut b = good.clone();
        b[48 + HDR_SNAPLEN..][..4].copy_from_slice(&5000u32.to_ne_bytes());
        assert_eq!(collect(&b).1, Walked { handed: 0, malformed: true });
        // More packets claimed than present: the zero next-offset of the last one is caught.
        let mut b = good.clone();
        b[BLOCK_NUM_PKTS_OFF..][..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(collect(&b).1, Walked { handed: 2, malformed: true });
        // First-packet offset outside, and a block too short for its own header.
        let mut b = good;
        b[BLOCK_FIRST_PKT_OFF..][..4].copy_from_slice(&4090u32.to_ne_bytes());
        assert_eq!(collect(&b).1, Walked { handed: 0, malformed: true });
        assert_eq!(collect(&[0u8; 10]).1, Walked { handed: 0, malformed: true });
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_blocks_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600), n in 0u32..50) {
            let mut b = bytes;
            if b.len() >= 20 {
                b[BLOCK_NUM_PKTS_OFF..][..4].copy_from_slice(&n.to_ne_bytes());
                b[BLOCK_FIRST_PKT_OFF..][..4].copy_from_slice(&24u32.to_ne_bytes());
            }
            let (got, w) = collect(&b);
            proptest::prop_assert!(got.len() <= n as usize && w.handed == got.len());
        }
    }

    #[test]
    fn a_capture_can_move_to_its_worker_thread() {
        fn is_send<T: Send>() {}
        is_send::<LiveCapture>();
        is_send::<LiveError>();
    }

    #[test]
    fn bad_configs_are_rejected_before_any_syscall() {
        let bad = [
            RingConfig { block_size: 1000, ..RingConfig::default() },
            RingConfig { block_count: 0, ..RingConfig::default() },
            RingConfig { frame_size: 2047, ..RingConfig::default() },
            RingConfig { frame_size: 1 << 21, ..RingConfig::default() },
        ];
        for cfg in bad {
            match LiveCapture::open(&["lo".to_string()], &cfg) {
                Err(LiveError::Config { iface, errno, .. }) => {
                    assert_eq!((iface.as_str(), errno), ("lo", libc::EINVAL))
                }
                other => panic!("{cfg:?}: {other:?}"),
            }
        }
        assert!(matches!(
            LiveCapture::open(&["no-such-if0".to_string()], &RingConfig::default()),
            Err(LiveError::NoSuchInterface { errno: libc::ENODEV, .. })
        ));
    }
}
