//! Live capture through the system's libpcap (cargo feature `libpcap`), for platforms without
//! AF_PACKET (the BSDs, macOS). On Linux [`super::live`] is the one to use: it shares an interface
//! between workers through a fanout group, which libpcap has no portable way to do, so a
//! [`PcapCapture`] is the only reader of its interfaces.
//!
//! One libpcap handle per interface, in immediate mode (a frame is readable as soon as it
//! arrives, not when a buffer fills) and non-blocking; [`PcapCapture::poll`] waits on the handles'
//! selectable descriptors with `poll(2)` and drains each with `pcap_dispatch`. Timestamps are
//! asked for in nanoseconds and read in whatever precision libpcap granted (microseconds where
//! the platform has no better).
//!
//! No-panic contract: the frame bytes are the slice libpcap hands the callback (its length is the
//! header's `caplen`, as the `pcap` crate builds it); nothing here indexes into them, and header
//! values (time, lengths, datalink) are converted with checked or clamped arithmetic.
#![allow(unsafe_code)]

use std::time::Duration;

use pcap::{Active, Capture, Precision};

use super::{Frame, LinkType};
use crate::timestamp::Timestamp;

/// Why a libpcap capture could not be opened or read. Every variant names the interface(s).
#[derive(Debug, thiserror::Error)]
pub enum PcapLiveError {
    #[error("libpcap capture: no interface given")]
    NoInterfaces,
    /// libpcap's own message says why (no such device, no permission: capturing needs root or
    /// CAP_NET_RAW on Linux, read access to /dev/bpf* on the BSDs and macOS).
    #[error("{iface}: libpcap {op}: {source}")]
    Open {
        iface: String,
        op: &'static str,
        #[source]
        source: pcap::Error,
    },
    #[error("{iface}: libpcap read: {source}")]
    Read {
        iface: String,
        #[source]
        source: pcap::Error,
    },
    #[error("{iface}: libpcap stats: {source}")]
    Stats {
        iface: String,
        #[source]
        source: pcap::Error,
    },
    #[error("{iface}: libpcap has no selectable descriptor for this device")]
    NotSelectable { iface: String },
    #[error("{ifaces}: poll: {} (errno {errno})", std::io::Error::from_raw_os_error(*errno))]
    Poll { ifaces: String, errno: i32 },
}

/// libpcap's counters of one interface (`pcap_stats`), accumulated as 64-bit totals since the
/// capture was opened (libpcap's are 32-bit and wrap).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcapIfaceStats {
    pub interface: String,
    /// `ps_recv`: frames the capture received (on Linux, including those it then dropped).
    pub received: u64,
    /// `ps_drop`: frames dropped because the capture buffer was full (we read too slowly).
    pub dropped: u64,
    /// `ps_ifdrop`: frames the interface or its driver dropped (where the platform says).
    pub if_dropped: u64,
    /// Frames handed to the caller of [`PcapCapture::poll`].
    pub handed: u64,
}

/// Per-interface counters; see [`PcapIfaceStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcapStats {
    pub interfaces: Vec<PcapIfaceStats>,
}

impl PcapStats {
    pub fn received(&self) -> u64 {
        self.interfaces.iter().map(|s| s.received).sum()
    }
    pub fn dropped(&self) -> u64 {
        self.interfaces.iter().map(|s| s.dropped).sum()
    }
    pub fn if_dropped(&self) -> u64 {
        self.interfaces.iter().map(|s| s.if_dropped).sum()
    }
    pub fn handed(&self) -> u64 {
        self.interfaces.iter().map(|s| s.handed).sum()
    }
}

/// `PCAP_TSTAMP_PRECISION_NANO` of pcap/pcap.h.
const PCAP_TSTAMP_PRECISION_NANO: libc::c_int = 1;

// Not wrapped (or, for the descriptor, wrapped with an assertion) by the `pcap` crate, which
// links libpcap for us.
extern "C" {
    /// Whether the nanosecond precision we asked for was granted, i.e. how to read `tv_usec`.
    fn pcap_get_tstamp_precision(p: *mut libc::c_void) -> libc::c_int;
    /// The descriptor to wait on with poll(2); -1 where there is none.
    fn pcap_get_selectable_fd(p: *mut libc::c_void) -> libc::c_int;
}

/// Frames drained from one handle per call before moving on to the next interface.
const DRAIN_LIMIT: usize = 4096;

struct Handle {
    iface: String,
    cap: Capture<Active>,
    fd: libc::c_int,
    link: LinkType,
    /// `tv_usec` holds nanoseconds.
    nanos: bool,
    totals: PcapIfaceStats,
    /// libpcap's raw counters at the last [`PcapCapture::stats`], to add their (wrapping) deltas.
    last: pcap::Stat,
}

impl Handle {
    fn open(
        iface: &str,
        promiscuous: bool,
        snaplen: u32,
        buffer_size: u32,
        timeout_ms: u32,
    ) -> Result<Handle, PcapLiveError> {
        let err = |op: &'static str| move |source| PcapLiveError::Open { iface: iface.to_string(), op, source };
        let int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let cap = Capture::from_device(iface)
            .map_err(err("create"))?
            .promisc(promiscuous)
            .snaplen(int(snaplen))
            .buffer_size(int(buffer_size))
            .timeout(int(timeout_ms.max(1)))
            .immediate_mode(true)
            .precision(Precision::Nano)
            .open()
            .map_err(err("activate"))?
            .setnonblock()
            .map_err(err("setnonblock"))?;
        let link = u32::try_from(cap.get_datalink().0).map_or(LinkType::Other(u32::MAX), LinkType::from_linktype);
        // SAFETY: `as_ptr` is the live, activated pcap_t owned by `cap`, which outlives both
        // calls; they only read it.
        let (nanos, fd) = unsafe {
            (
                pcap_get_tstamp_precision(cap.as_ptr().cast()) == PCAP_TSTAMP_PRECISION_NANO,
                pcap_get_selectable_fd(cap.as_ptr().cast()),
            )
        };
        if fd < 0 {
            return Err(PcapLiveError::NotSelectable { iface: iface.to_string() });
        }
        Ok(Handle {
            iface: iface.to_string(),
            cap,
            fd,
            link,
            nanos,
            totals: PcapIfaceStats { interface: iface.to_string(), ..PcapIfaceStats::default() },
            last: pcap::Stat { received: 0, dropped: 0, if_dropped: 0 },
        })
    }

    fn drain(&mut self, f: &mut dyn FnMut(&Frame<'_>)) -> Result<usize, PcapLiveError> {
        let (link, nanos) = (self.link, self.nanos);
        let mut n = 0;
        while n < DRAIN_LIMIT {
            let k = self
                .cap
                .dispatch(None, |p| {
                    f(&Frame { ts: timestamp(&p.header.ts, nanos), link, data: p.data, orig_len: p.header.len })
                })
                .map_err(|source| PcapLiveError::Read { iface: self.iface.clone(), source })?;
            if k == 0 {
                break;
            }
            n += k;
        }
        self.totals.handed = self.totals.handed.saturating_add(n as u64);
        Ok(n)
    }

    fn read_stats(&mut self) -> Result<(), PcapLiveError> {
        let now = self.cap.stats().map_err(|source| PcapLiveError::Stats { iface: self.iface.clone(), source })?;
        let delta = |cur: u32, prev: u32| u64::from(cur.wrapping_sub(prev));
        let t = &mut self.totals;
        t.received = t.received.saturating_add(delta(now.received, self.last.received));
        t.dropped = t.dropped.saturating_add(delta(now.dropped, self.last.dropped));
        t.if_dropped = t.if_dropped.saturating_add(delta(now.if_dropped, self.last.if_dropped));
        self.last = now;
        Ok(())
    }
}

// `time_t` and `suseconds_t` are i64 on some platforms and i32 on others.
#[allow(clippy::useless_conversion)]
fn timestamp(tv: &libc::timeval, nanos: bool) -> Timestamp {
    Timestamp::from_secs_fraction(i64::from(tv.tv_sec), i64::from(tv.tv_usec), nanos)
}

/// One libpcap handle per interface.
pub struct PcapCapture {
    handles: Vec<Handle>,
    pollfds: Vec<libc::pollfd>,
}

impl std::fmt::Debug for PcapCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapCapture")
            .field("interfaces", &self.handles.iter().map(|h| (&h.iface, h.link)).collect::<Vec<_>>())
            .finish()
    }
}

impl PcapCapture {
    /// Opens every interface: `snaplen` bytes kept of each frame, a kernel buffer of
    /// `buffer_size` bytes per interface, `timeout_ms` the read timeout where immediate mode is
    /// not honoured. Needs the platform's capture privilege (see [`PcapLiveError::Open`]).
    pub fn open(
        interfaces: &[String],
        promiscuous: bool,
        snaplen: u32,
        buffer_size: u32,
        timeout_ms: u32,
    ) -> Result<PcapCapture, PcapLiveError> {
        if interfaces.is_empty() {
            return Err(PcapLiveError::NoInterfaces);
        }
        let handles = interfaces
            .iter()
            .map(|i| Handle::open(i, promiscuous, snaplen, buffer_size, timeout_ms))
            .collect::<Result<Vec<_>, _>>()?;
        let pollfds = handles.iter().map(|h| libc::pollfd { fd: h.fd, events: libc::POLLIN, revents: 0 }).collect();
        Ok(PcapCapture { handles, pollfds })
    }

    /// The interfaces, in the order given to [`PcapCapture::open`].
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.handles.iter().map(|h| h.iface.as_str())
    }

    /// The link type of each interface's frames (from the handle's datalink).
    pub fn link_types(&self) -> impl Iterator<Item = LinkType> + '_ {
        self.handles.iter().map(|h| h.link)
    }

    /// Calls `f` with every frame available now or, if none is, with those arriving within
    /// about `timeout`; returns how many.
    pub fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(&Frame<'_>)) -> Result<usize, PcapLiveError> {
        let n = self.drain(f)?;
        if n > 0 {
            return Ok(n);
        }
        // Round up so that a sub-millisecond timeout still waits instead of spinning.
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        for p in &mut self.pollfds {
            p.revents = 0;
        }
        // SAFETY: `pollfds` is a live, correctly sized array of pollfd for the duration of the
        // call, and its fds belong to the handles in `self.handles`, which outlive it.
        let rc = unsafe { libc::poll(self.pollfds.as_mut_ptr(), self.pollfds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            if errno != libc::EINTR {
                let ifaces = self.interfaces().collect::<Vec<_>>().join(",");
                return Err(PcapLiveError::Poll { ifaces, errno });
            }
        }
        // An error condition on a descriptor (interface gone) surfaces as libpcap's read error.
        self.drain(f)
    }

    fn drain(&mut self, f: &mut dyn FnMut(&Frame<'_>)) -> Result<usize, PcapLiveError> {
        let mut n = 0;
        for h in &mut self.handles {
            n += h.drain(f)?;
        }
        Ok(n)
    }

    /// Reads libpcap's counters of every interface (`pcap_stats`) and returns the totals.
    pub fn stats(&mut self) -> Result<PcapStats, PcapLiveError> {
        let mut out = PcapStats { interfaces: Vec::with_capacity(self.handles.len()) };
        for h in &mut self.handles {
            h.read_stats()?;
            out.interfaces.push(h.totals.clone());
        }
        Ok(out)
    }
}
