//! Connections announced on one address pair that run on another, kept with the worker of the flow
//! that announced them.
//!
//! The sharded dispatch ([`super::shard`]) picks a frame's worker from its innermost address pair.
//! Some sessions announce a connection between another pair: an FTP server behind a NAT (or a
//! server-to-server transfer) names a third host in its 227 reply, a SIP call's SDP sends the media
//! to a relay or a session border controller rather than to the signalling's peer. The announcing
//! analyzer expects that connection in its own worker's flow table; had the connection gone by its
//! pair, another worker would have analyzed it from scratch: an FTP upload rebuilt as a nameless
//! TCP stream, a call's first packets missed by RTP detection, a dynamic payload type without the
//! SDP's format.
//!
//! So the dispatch reads the same announcements, one TCP segment or UDP datagram at a time, with
//! the analyzers' own parsers ([`ftp::parse::announced`], [`sdp::in_message`] for SIP and for HTTP
//! bodies, [`rtp::sdp_rtp_endpoints`]), and [`Routes`] remembers, for an announced address and port
//! that is neither end of the announcing flow, the worker the announcing flow went to. A connection
//! that then opens to or from that endpoint is pinned to that worker, with all its later frames. A
//! TCP connection opens with its SYN: one under way when the announcement came stays where it is,
//! never split. UDP has no opening: a UDP flow already running to an endpoint announced later (a
//! port reused) moves at its next datagram.
//!
//! Keys are addresses and ports, not overlay zones: the same endpoint in two tenants' VNIs is
//! routed alike, which only places a connection, as a pair hash would.
//!
//! - **Deterministic:** the tables change in capture order, so the same capture makes the same case
//!   whatever the threads do.
//! - **Bounded:** at most [`MAX_ROUTES`] announced endpoints and [`MAX_PINS`] pinned connections;
//!   an entry unused for the routes' idle time (as long as the flow idle timeouts and the longest
//!   expectation lifetime, whichever is longer) is dropped. Over the caps an announcement or a
//!   connection goes by its pair, as without this table, and is counted ([`RouteStats`]).
//! - **Split messages:** an HTTP message, or a SIP message over TCP, whose headers announce an
//!   SDP body that their segment does not hold whole is gathered from the segments after it, for
//!   as long as they follow on in sequence (a hole gives it up; a retransmission changes
//!   nothing), up to 16 KiB a message, 1,024 messages at once and 10 s of capture time; one over
//!   the caps is counted as refused.
//! - **Not seen:** an FTP reply split across segments (replies are short lines), a SIP message
//!   over TCP that begins inside a segment (after another message's end), headers split before
//!   their end, and anything over TLS (which the analyzer cannot read either). IP fragments of a
//!   pinned connection go with the fragment that has its ports ([`super::fragments`]).
//!
//! [`ftp::parse::announced`]: crate::analyze::ftp::parse::announced
//! [`sdp::in_message`]: crate::media::sdp::in_message
//! [`rtp::sdp_rtp_endpoints`]: crate::analyze::rtp::sdp_rtp_endpoints

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::analyze::{ftp, rtp, sip};
use crate::decode::{tcp_flags, Transport};
use crate::media::sdp;
use crate::timestamp::Timestamp;

/// Announced endpoints remembered at most.
pub const MAX_ROUTES: usize = 65_536;
/// Connections pinned to a worker at most.
pub const MAX_PINS: usize = 65_536;

/// A TCP segment longer than this is not read for FTP announcements: control replies and
/// commands are short lines, and bulk data is not read at all.
const MAX_CONTROL_SEGMENT: usize = 1024;

/// How the SIP messages that can carry SDP begin.
const SIP_SDP_CARRIERS: [&[u8]; 5] = [b"SIP/2.0 ", b"INVITE ", b"ACK ", b"PRACK ", b"UPDATE "];

/// How the HTTP/1.x messages that can carry an SDP body begin: a response, or a request with a
/// body (WHIP and WHEP POST their offers, RFC 9725; PATCH carries trickled candidates).
const HTTP_SDP_CARRIERS: [&[u8]; 4] = [b"HTTP/1.", b"POST ", b"PUT ", b"PATCH "];

/// Capture time between sweeps of expired entries.
const SWEEP_NS: i64 = 1_000_000_000;

/// Messages gathered across segments at once, at most ([`Gathering`]).
const MAX_GATHERING: usize = 1024;
/// A message longer than this is not gathered (an SDP is a few hundred bytes to a few KiB).
const MAX_GATHERED_LEN: usize = 16 << 10;
/// A message not whole within this much capture time is given up.
const GATHER_NS: i64 = 10_000_000_000;

/// What the tables did, for the run's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteStats {
    /// Announced endpoints remembered (a repeated announcement counts again).
    pub announced: u64,
    /// Connections pinned to the worker of their announcer.
    pub pinned: u64,
    /// Announcements and connections that went by their pair because a table was full.
    pub refused: u64,
}

/// An HTTP message, or a SIP message over TCP, whose headers announce an SDP body that had not
/// all come in their segment (Python's `http.server` writes a response's headers and its body
/// apart; curl sends a POST's body after `Expect: 100-continue`; a SIP message longer than the
/// MSS spans segments): its bytes so far, for as long as the next segments of its
/// direction follow on in sequence.
struct Gathering {
    bytes: Vec<u8>,
    /// The message's whole length, by its headers.
    len: usize,
    /// The sequence number of the byte that comes next.
    next_seq: u32,
    since: Timestamp,
}

/// What a segment did to the message its direction is gathering.
enum Gathered {
    /// Nothing: no message is gathered, or the segment left a hole and it was given up.
    No,
    /// Taken in, or already had: nothing else to read in it.
    Taken,
    /// The message is whole: its bytes.
    Whole(Vec<u8>),
}

#[derive(Clone, Copy)]
struct Entry {
    worker: usize,
    last: Timestamp,
}

/// A connection's two ends, in a fixed order (either direction finds it), with its protocol.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Conn {
    tcp: bool,
    lo: SocketAddr,
    hi: SocketAddr,
}

impl Conn {
    fn new(tcp: bool, a: SocketAddr, b: SocketAddr) -> Conn {
        let (lo, hi) = if (a.ip(), a.port()) <= (b.ip(), b.port()) { (a, b) } else { (b, a) };
        Conn { tcp, lo, hi }
    }
}

/// The dispatch's tables: announced endpoints, and the connections pinned to them.
pub struct Routes {
    routes: HashMap<(IpAddr, u16), Entry>,
    pins: HashMap<Conn, Entry>,
    /// By the direction (source, destination) that sends the message.
    gathering: HashMap<(SocketAddr, SocketAddr), Gathering>,
    idle_ns: i64,
    next_sweep: Timestamp,
    stats: RouteStats,
}

impl Routes {
    /// Entries unused for `idle_ns` of capture time are dropped.
    pub fn new(idle_ns: i64) -> Routes {
        Routes {
            routes: HashMap::new(),
            pins: HashMap::new(),
            gathering: HashMap::new(),
            idle_ns,
            next_sweep: Timestamp::MIN,
            stats: RouteStats::default(),
        }
    }

    pub fn stats(&self) -> RouteStats {
        self.stats
    }

    /// The worker of a TCP or UDP frame from `src` to `dst`, if its connection is pinned or
    /// opens to an announced endpoint; `None`: its pair decides.
    pub fn worker(&mut self, transport: &Transport, src: SocketAddr, dst: SocketAddr, now: Timestamp) -> Option<usize> {
        if self.routes.is_empty() && self.pins.is_empty() {
            return None;
        }
        self.sweep(now);
        let (tcp, opens) = match transport {
            Transport::Tcp(t) => (true, t.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN),
            _ => (false, true),
        };
        let conn = Conn::new(tcp, src, dst);
        if let Some(e) = self.pins.get_mut(&conn) {
            e.last = e.last.max(now);
            return Some(e.worker);
        }
        if !opens || self.routes.is_empty() {
            return None;
        }
        let key = [dst, src].into_iter().map(|end| (end.ip(), end.port())).find(|k| self.routes.contains_key(k))?;
        let route = self.routes.get_mut(&key)?;
        route.last = route.last.max(now);
        let worker = route.worker;
        if self.pins.len() >= MAX_PINS {
            self.stats.refused += 1;
            return None;
        }
        self.pins.insert(conn, Entry { worker, last: now });
        self.stats.pinned += 1;
        Some(worker)
    }

    /// Reads a frame's TCP or UDP payload for announcements; one whose endpoint is neither
    /// `src` nor `dst` address is routed to `worker`, the worker the frame went to.
    pub fn learn(
        &mut self,
        transport: &Transport,
        payload: &[u8],
        src: IpAddr,
        dst: IpAddr,
        worker: usize,
        now: Timestamp,
    ) {
        let mut found: [Option<SocketAddr>; 4] = [None; 4];
        // A TCP segment's direction, where a message with SDP may be gathered (its later
        // segments go to the same worker as its first: they are one connection's).
        let direction = match transport {
            Transport::Tcp(t) => Some((SocketAddr::new(src, t.src_port), SocketAddr::new(dst, t.dst_port), t.seq)),
            _ => None,
        };
        if let Some((from, to, seq)) = direction.filter(|_| !self.gathering.is_empty()) {
            match self.gather((from, to), seq, payload, now) {
                Gathered::No => {}
                Gathered::Taken => return,
                Gathered::Whole(message) => {
                    if let Some(sdp) = sdp::in_message(&message) {
                        self.route_sdp(&sdp, found, src, dst, worker, now);
                    }
                    return;
                }
            }
        }
        let sdp = match transport {
            // An HTTP/1.x message with an SDP body (a WHIP-style offer or answer, a `.sdp`
            // fetched from a web server), or a SIP message over TCP that can carry one, whole
            // in this segment or gathered from the next.
            Transport::Tcp(_)
                if HTTP_SDP_CARRIERS.iter().any(|p| payload.starts_with(p))
                    || (SIP_SDP_CARRIERS.iter().any(|p| payload.starts_with(p)) && sip::looks_sip(payload)) =>
            {
                if let (Some(len), Some((from, to, seq))) = (sdp::short_message_len(payload), direction) {
                    self.start_gathering((from, to), seq, payload, len, now);
                    return;
                }
                sdp::in_message(payload)
            }
            // A segment that starts like a reply or a PORT/EPRT command: its lines are read
            // (a reply may follow another in one segment). The first byte turns away almost
            // every other segment before any line is looked for.
            Transport::Tcp(_)
                if payload.len() <= MAX_CONTROL_SEGMENT
                    && matches!(payload.first(), Some(b'1'..=b'5' | b'P' | b'p' | b'E' | b'e')) =>
            {
                let lines = payload
                    .split(|&b| b == b'\n')
                    .filter(|l| matches!(l.first(), Some(b'2' | b'P' | b'p' | b'E' | b'e')));
                for (slot, line) in found.iter_mut().zip(lines.filter_map(ftp::parse::announced)) {
                    *slot = Some(line);
                }
                None
            }
            // Only a response or an INVITE, ACK, PRACK or UPDATE carries an offer or an answer
            // (RFC 3261, 3262, 3311); the fixed prefix turns away RTP, DNS, QUIC and the rest.
            Transport::Udp { .. }
                if SIP_SDP_CARRIERS.iter().any(|p| payload.starts_with(p)) && sip::looks_sip(payload) =>
            {
                sdp::in_message(payload)
            }
            _ => return,
        };
        match sdp {
            Some(sdp) => self.route_sdp(&sdp, found, src, dst, worker, now),
            None => self.route_ends(found, src, dst, worker, now),
        }
    }

    /// Routes the RTP endpoints of `sdp` (after those already `found`).
    fn route_sdp(
        &mut self,
        sdp: &sdp::Session,
        mut found: [Option<SocketAddr>; 4],
        src: IpAddr,
        dst: IpAddr,
        worker: usize,
        now: Timestamp,
    ) {
        let ends = rtp::sdp_rtp_endpoints(sdp).map(|(m, addr)| SocketAddr::new(addr, m.port));
        for (slot, end) in found.iter_mut().filter(|s| s.is_none()).zip(ends) {
            *slot = Some(end);
        }
        self.route_ends(found, src, dst, worker, now);
    }

    /// Routes each endpoint found that is a third address's port.
    fn route_ends(&mut self, found: [Option<SocketAddr>; 4], src: IpAddr, dst: IpAddr, worker: usize, now: Timestamp) {
        for end in found.into_iter().flatten() {
            if end.port() == 0 || end.ip().is_unspecified() || end.ip() == src || end.ip() == dst {
                continue;
            }
            self.route(end, worker, now);
        }
    }

    /// Keeps the first segment of a message whose SDP body goes on in later ones.
    fn start_gathering(&mut self, key: (SocketAddr, SocketAddr), seq: u32, first: &[u8], len: usize, now: Timestamp) {
        if len > MAX_GATHERED_LEN || (self.gathering.len() >= MAX_GATHERING && !self.gathering.contains_key(&key)) {
            self.stats.refused += 1;
            return;
        }
        let next_seq = seq.wrapping_add(first.len() as u32);
        self.gathering.insert(key, Gathering { bytes: first.to_vec(), len, next_seq, since: now });
    }

    /// A segment of the direction `key`, read first for the message that direction may be
    /// gathering.
    fn gather(&mut self, key: (SocketAddr, SocketAddr), seq: u32, payload: &[u8], now: Timestamp) -> Gathered {
        self.sweep(now);
        let Some(g) = self.gathering.get_mut(&key) else { return Gathered::No };
        // Earlier bytes again (a retransmission) change nothing.
        let ahead = seq.wrapping_sub(g.next_seq) as i32;
        if payload.is_empty() || ahead < 0 {
            return Gathered::Taken;
        }
        if ahead > 0 {
            // A hole: given up, and the segment read as any other.
            self.gathering.remove(&key);
            return Gathered::No;
        }
        let take = payload.len().min(g.len.saturating_sub(g.bytes.len()));
        g.bytes.extend_from_slice(payload.get(..take).unwrap_or_default());
        g.next_seq = g.next_seq.wrapping_add(take as u32);
        if g.bytes.len() < g.len {
            return Gathered::Taken;
        }
        match self.gathering.remove(&key) {
            Some(g) => Gathered::Whole(g.bytes),
            None => Gathered::No,
        }
    }

    fn route(&mut self, end: SocketAddr, worker: usize, now: Timestamp) {
        let key = (end.ip(), end.port());
        if self.routes.len() >= MAX_ROUTES && !self.routes.contains_key(&key) {
            self.next_sweep = Timestamp::MIN;
            self.sweep(now);
            if self.routes.len() >= MAX_ROUTES {
                self.stats.refused += 1;
                return;
            }
        }
        self.routes.insert(key, Entry { worker, last: now });
        self.stats.announced += 1;
    }

    /// Drops entries unused for the idle time, at most once a second of capture time.
    fn sweep(&mut self, now: Timestamp) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.add_nanos(SWEEP_NS);
        let idle = self.idle_ns;
        self.routes.retain(|_, e| e.last.add_nanos(idle) > now);
        self.pins.retain(|_, e| e.last.add_nanos(idle) > now);
        self.gathering.retain(|_, g| g.since.add_nanos(GATHER_NS) > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpInfo;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_secs_nanos(1_780_000_000 + s, 0)
    }

    fn tcp(flags: u8) -> Transport {
        Transport::Tcp(TcpInfo { src_port: 0, dst_port: 0, seq: 0, ack: 0, flags, window: 0, mss: None })
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// `start` (a start line and headers) with an SDP body whose media `m` (an `m=` line's
    /// value and what follows) are at 198.51.100.11.
    fn with_sdp(start: &str, m: &str) -> String {
        let sdp = format!("v=0\r\no=- 1 1 IN IP4 198.51.100.11\r\ns=-\r\nc=IN IP4 198.51.100.11\r\nt=0 0\r\nm={m}\r\n");
        format!("{start}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len())
    }

    const CLIENT: &str = "198.51.100.7";
    const SERVER: &str = "198.51.100.10";

    #[test]
    fn a_pasv_to_a_third_host_pins_its_data_connection_from_the_syn_on() {
        let mut r = Routes::new(600_000_000_000);
        let (c, s) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        r.learn(&tcp(tcp_flags::ACK), b"227 Entering Passive Mode (198,51,100,12,234,103).\r\n", s, c, 1, at(0));
        assert_eq!(r.stats().announced, 1);
        let (client, data) = (sa("198.51.100.7:40000"), sa("198.51.100.12:60007"));
        // A segment of a connection that did not open after the announcement stays with its pair.
        assert_eq!(r.worker(&tcp(tcp_flags::ACK), client, data, at(1)), None);
        assert_eq!(r.worker(&tcp(tcp_flags::SYN), client, data, at(1)), Some(1));
        assert_eq!(r.worker(&tcp(tcp_flags::SYN | tcp_flags::ACK), data, client, at(1)), Some(1));
        assert_eq!(r.worker(&tcp(tcp_flags::ACK), client, data, at(2)), Some(1));
        assert_eq!(r.stats().pinned, 1);
        // Another connection to the control server is not touched.
        assert_eq!(r.worker(&tcp(tcp_flags::SYN), client, sa("198.51.100.10:60007"), at(2)), None);
        // Unused for the idle time: gone.
        assert_eq!(r.worker(&tcp(tcp_flags::ACK), client, data, at(700)), None);
        assert_eq!(r.worker(&tcp(tcp_flags::SYN), client, data, at(700)), None);
    }

    #[test]
    fn announcements_of_the_flows_own_ends_and_of_nothing_route_nothing() {
        let mut r = Routes::new(600_000_000_000);
        let (c, s) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        r.learn(&tcp(tcp_flags::ACK), b"227 Entering Passive Mode (198,51,100,10,234,103).\r\n", s, c, 1, at(0));
        r.learn(&tcp(tcp_flags::ACK), b"PORT 198,51,100,7,4,1\r\n", c, s, 1, at(0));
        r.learn(&tcp(tcp_flags::ACK), b"229 Entering Extended Passive Mode (|||6446|)\r\n", s, c, 1, at(0));
        r.learn(&tcp(tcp_flags::ACK), b"227 Entering Passive Mode (0,0,0,0,234,103).\r\n", s, c, 1, at(0));
        r.learn(&tcp(tcp_flags::ACK), &[b'2'; 2000], s, c, 1, at(0));
        r.learn(&Transport::Udp { src_port: 5060, dst_port: 5060 }, b"INVITE sip:x SIP/2.0\r\n\r\n", c, s, 1, at(0));
        assert_eq!(r.stats(), RouteStats::default());
        assert_eq!(r.worker(&tcp(tcp_flags::SYN), sa("198.51.100.7:1"), sa("198.51.100.10:60007"), at(1)), None);
    }

    #[test]
    fn an_sdp_answer_sends_the_media_to_the_signallings_worker() {
        let mut r = Routes::new(600_000_000_000);
        let (c, s) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        let msg = with_sdp("SIP/2.0 200 OK\r\nCall-ID: a", "audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000");
        r.learn(&Transport::Udp { src_port: 5060, dst_port: 5062 }, msg.as_bytes(), s, c, 2, at(0));
        assert_eq!(r.stats().announced, 1);
        let udp = Transport::Udp { src_port: 7000, dst_port: 6000 };
        assert_eq!(r.worker(&udp, sa("198.51.100.7:7000"), sa("198.51.100.11:6000"), at(1)), Some(2));
        assert_eq!(r.worker(&udp, sa("198.51.100.11:6000"), sa("198.51.100.7:7000"), at(1)), Some(2));
        assert_eq!(r.worker(&udp, sa("198.51.100.7:7002"), sa("198.51.100.11:6002"), at(1)), None);
    }

    #[test]
    fn an_sdp_over_http_whole_in_its_segment_routes_its_media() {
        let mut r = Routes::new(600_000_000_000);
        let (c, s) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        let post = with_sdp("POST /whip HTTP/1.1\r\nHost: x", "video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000");
        r.learn(&tcp(tcp_flags::ACK | tcp_flags::PSH), post.as_bytes(), c, s, 1, at(0));
        assert_eq!(r.stats().announced, 1);
        let udp = Transport::Udp { src_port: 40000, dst_port: 5004 };
        assert_eq!(r.worker(&udp, sa("198.51.100.7:40000"), sa("198.51.100.11:5004"), at(1)), Some(1));
        // Headers without the body, or another type: nothing.
        let mut r = Routes::new(600_000_000_000);
        let head = post.split("\r\n\r\n").next().unwrap().to_string() + "\r\n\r\n";
        r.learn(&tcp(tcp_flags::ACK), head.as_bytes(), c, s, 1, at(0));
        r.learn(&tcp(tcp_flags::ACK), post.replace("application/sdp", "text/plain").as_bytes(), c, s, 1, at(0));
        assert_eq!(r.stats(), RouteStats::default());
    }

    #[test]
    fn an_sdp_over_http_split_across_segments_is_gathered_in_sequence() {
        let (c, s): (IpAddr, IpAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        // As Python's http.server answers: the headers, then the body, in segments of their own
        // (here the body in two, and the sequence numbers wrapping on the way).
        let answer = with_sdp("HTTP/1.0 201 Created\r\nServer: x", "video 5004 RTP/AVP 96");
        let (head, body) = answer.split_at(answer.find("\r\n\r\n").unwrap() + 4);
        let (b1, b2) = body.split_at(10);
        let start = u32::MAX - 3;
        let seg = |offset: usize| {
            let seq = start.wrapping_add(offset as u32);
            Transport::Tcp(TcpInfo {
                src_port: 8080,
                dst_port: 40000,
                seq,
                ack: 0,
                flags: tcp_flags::ACK,
                window: 0,
                mss: None,
            })
        };
        let mut r = Routes::new(600_000_000_000);
        r.learn(&seg(0), head.as_bytes(), s, c, 2, at(0));
        // The headers again (a retransmission), then an empty ACK: nothing changes.
        r.learn(&seg(0), head.as_bytes(), s, c, 2, at(0));
        r.learn(&seg(head.len()), b"", s, c, 2, at(0));
        r.learn(&seg(head.len()), b1.as_bytes(), s, c, 2, at(0));
        assert_eq!(r.stats(), RouteStats::default());
        r.learn(&seg(head.len() + b1.len()), b2.as_bytes(), s, c, 2, at(0));
        assert_eq!(r.stats().announced, 1);
        assert!(r.gathering.is_empty());
        let udp = Transport::Udp { src_port: 40000, dst_port: 5004 };
        assert_eq!(r.worker(&udp, sa("198.51.100.7:40000"), sa("198.51.100.11:5004"), at(1)), Some(2));

        // A hole gives the message up; so does time.
        let mut r = Routes::new(600_000_000_000);
        r.learn(&seg(0), head.as_bytes(), s, c, 2, at(0));
        r.learn(&seg(head.len() + 1), body.as_bytes(), s, c, 2, at(0));
        assert!(r.gathering.is_empty());
        r.learn(&seg(0), head.as_bytes(), s, c, 2, at(0));
        r.learn(&seg(head.len()), body.as_bytes(), s, c, 2, at(11));
        assert_eq!(r.stats(), RouteStats::default());
        // A message longer than an SDP would be is not gathered, and that is counted.
        let long = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\nv=0",
            MAX_GATHERED_LEN + 1
        );
        r.learn(&seg(0), long.as_bytes(), s, c, 2, at(12));
        assert_eq!(r.stats().refused, 1);
        assert!(r.gathering.is_empty());
    }

    #[test]
    fn full_tables_refuse_and_count() {
        let mut r = Routes::new(600_000_000_000);
        for i in 0..MAX_ROUTES + 10 {
            let end = SocketAddr::new(IpAddr::from([10, 1, (i >> 8) as u8, i as u8]), 1000 + (i >> 16) as u16);
            r.route(end, 0, at(0));
        }
        assert_eq!(r.stats().announced, MAX_ROUTES as u64);
        assert_eq!(r.stats().refused, 10);
        // Once they have expired, there is room again.
        r.route(sa("10.9.9.9:1"), 0, at(700));
        assert_eq!(r.routes.len(), 1);
    }

    proptest::proptest! {
        /// Hostile payloads behind every prefix the dispatch reads: no panic, and whatever
        /// they announce is a third-address endpoint with a port, within the caps.
        #[test]
        fn damaged_announcements_never_panic(
            prefix in 0usize..10,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600),
            flip in 0usize..1600,
            to in proptest::prelude::any::<u8>(),
        ) {
            let prefixes: [&[u8]; 10] = [
                b"227 Entering Passive Mode (", b"PORT ", b"EPRT |", b"SIP/2.0 200 OK\r\n", b"INVITE sip:a SIP/2.0\r\n",
                b"HTTP/1.1 201 Created\r\n", b"POST /whip HTTP/1.1\r\n", b"Content-Type: application/sdp\r\n\r\nv=0\r\n",
                b"c=IN IP4 10.9.9.9\r\nm=audio 9 RTP/AVP 0\r\n", b"",
            ];
            let mut payload = prefixes[prefix].to_vec();
            payload.extend_from_slice(&body);
            if let Some(b) = payload.get_mut(flip) {
                *b = to;
            }
            let mut r = Routes::new(600_000_000_000);
            let (c, s) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
            for t in [tcp(tcp_flags::ACK), Transport::Udp { src_port: 5060, dst_port: 5060 }] {
                r.learn(&t, &payload, c, s, 1, at(0));
            }
            proptest::prop_assert!(r.routes.len() <= 8);
            for ((ip, port), e) in &r.routes {
                proptest::prop_assert!(*port != 0 && !ip.is_unspecified() && *ip != c && *ip != s && e.worker == 1);
            }
        }
    }
}
