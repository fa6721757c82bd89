//! The mediation function's sans-I/O core: records in, numbered PS-PDUs out, per LEA and channel.
//!
//! No clock and no files: time is the record's, and every PDU goes to an `emit` callback (the
//! spool) that may refuse it. A refused PDU is an error the caller reports; the sequence number
//! it would have taken is not reused, so the LEMF sees the gap the refusal caused.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::analyze::smtp::{SmtpEvent, SmtpWhat};
use crate::deliver::etsi::ipaccess::payload_direction;
use crate::deliver::etsi::national::FlowSide;
use crate::deliver::etsi::{
    inner_ip_packet, map_iri, CcContents, CcPayload, DataType, EmailCc, EmailEventType, EmailFormat, EmailIri,
    EmailProtocol, EmailStatus, Encoder, Hi1Notification, IntegrityConfig, IntegrityState, IriType, Payload,
    PayloadDirection, PduHeader, Signer, Tri,
};
use crate::record::{Cin, Dir, FlowDescr, IriEvent, Liid, ObjectId, Record};
use crate::timestamp::Timestamp;

use super::config::LeaConfig;

/// HI2 carries IRI, HI3 carries CC; TRI goes on the channel of the stream it concerns.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Hi2,
    Hi3,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Hi2 => "hi2",
            Channel::Hi3 => "hi3",
        }
    }
}

/// Per-LEA counts of what could not be sent, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MdfCounts {
    /// PDUs handed to `emit` and accepted.
    pub pdus: u64,
    /// IRI records with no HI2 form (none are known: every record maps to IPIRI, EmailIRI or
    /// HI1; counted should one ever not).
    pub iri_without_form: u64,
    /// SMTP events sent as EmailIRI.
    pub email_iri: u64,
    /// Warrant activations, modifications and deactivations sent as HI1 notifications.
    pub hi1_notifications: u64,
    /// Mails sent as EmailCC (each one or more PDUs).
    pub email_cc_objects: u64,
    /// CC frames without an IP packet inside (ARP, ...): IPCC cannot carry them.
    pub cc_not_ip: u64,
    /// Encoding errors (a LIID longer than 25 octets, ...).
    pub encode_errors: u64,
    /// PDUs `emit` refused (spool full).
    pub refused: u64,
    pub integrity_checks: u64,
    pub cin_resets: u64,
}

struct Lea {
    encoder: Encoder,
    hi1: bool,
    integrity: Option<IntegrityConfig>,
    signer: Option<Signer>,
    counts: MdfCounts,
}

struct Stream {
    next_seq: u32,
    integrity: Option<IntegrityState>,
}

type StreamKey = (Liid, Option<Cin>, DataType);

/// Content bytes per EmailCC PDU: a mail larger than this is segmented. Small enough that a
/// mail does not hold the HI3 connection much longer than an IPCC packet does.
pub const EMAIL_SEGMENT_BYTES: usize = 4096;

/// Zero-filling a gap larger than this is not attempted (the content layer bounds objects well
/// below it); the gap's bytes are then missing from the delivered mail.
const MAX_GAP_FILL: u64 = 64 * 1024 * 1024;

/// A mail being streamed out as EmailCC. Only the first piece is held back (bounded by
/// [`EMAIL_SEGMENT_BYTES`]): a mail that ends within it goes as one unflagged EmailCC, as
/// `email::segments` does; anything longer is bracketed by segment flags.
struct MailOut {
    lea: usize,
    liid: Liid,
    cin: Cin,
    dir: PayloadDirection,
    /// The firstSegmentFlag went out.
    started: bool,
    held: Vec<u8>,
}

/// Numbers and encodes one warrant set's records for its LEAs.
pub struct Mdf {
    leas: Vec<Lea>,
    route: HashMap<Liid, usize>,
    streams: HashMap<StreamKey, Stream>,
    /// The flow of each session and its target side, from its iRI-Begin until its iRI-End: for
    /// the records that name their session by CIN only (FTP, HTTP, TLS, SMTP).
    sessions: HashMap<(Liid, Cin), (FlowDescr, Dir)>,
    /// Mails being streamed as EmailCC, by LIID and object id.
    mails: HashMap<(Liid, ObjectId), MailOut>,
    /// Object records carry no time of their own until they end: the last record time seen.
    last_ts: Timestamp,
    /// After a restart: the streams (LIID, CIN, IRI|CC) that already got their cINReset; one per
    /// stream, so that the HI2 and the HI3 receiver each see it.
    restarted: bool,
    reset_done: HashSet<StreamKey>,
    /// Sessions ended, oldest first (see [`Mdf::retire`]).
    ended: VecDeque<(Liid, Cin)>,
    buf: Vec<u8>,
    aux: Vec<u8>,
}

/// Ended sessions whose stream state (sequence numbers, integrity) is still kept.
const ENDED_KEPT: usize = 4096;

/// Where PDUs go: `(LEA index, channel, PDU) -> stored, or refused with E`.
pub type Emit<'a, E> = dyn FnMut(usize, Channel, &[u8]) -> Result<(), E> + 'a;

impl Mdf {
    /// `route`: LIID -> index into `leas`. `signers[i]` signs LEA i's integrity hashes, if any.
    /// `restarted`: the spool existed, so a cINReset precedes the first PDU of each
    /// (LIID, CIN, IRI|CC) stream.
    pub fn new(
        leas: &[LeaConfig],
        signers: Vec<Option<Signer>>,
        route: HashMap<Liid, usize>,
        restarted: bool,
    ) -> Result<Mdf, crate::deliver::etsi::ConfigError> {
        let mut out = Vec::new();
        for (l, signer) in leas.iter().zip(signers.into_iter().chain(std::iter::repeat_with(|| None))) {
            let integrity = l.integrity.as_ref().map(|i| IntegrityConfig {
                hash_every_pdus: i.hash_every,
                // Count-driven only: a replay's record times would make time-driven checks
                // depend on the capture's pace; `flush` covers the tail.
                hash_every_secs: 0,
                sign_every_hashes: if signer.is_some() { i.sign_every } else { 0 },
                sign_every_secs: 0,
                ..IntegrityConfig::default()
            });
            out.push(Lea {
                encoder: Encoder::new(l.etsi.clone())?,
                hi1: l.hi1_notifications,
                integrity,
                signer,
                counts: MdfCounts::default(),
            });
        }
        Ok(Mdf {
            leas: out,
            route,
            streams: HashMap::new(),
            sessions: HashMap::new(),
            mails: HashMap::new(),
            last_ts: Timestamp::default(),
            restarted,
            reset_done: HashSet::new(),
            ended: VecDeque::new(),
            buf: Vec::with_capacity(2048),
            aux: Vec::new(),
        })
    }

    /// Whether streams begin with a cINReset (see [`Mdf::new`]).
    pub fn restarted(&self) -> bool {
        self.restarted
    }

    pub fn counts(&self, lea: usize) -> Option<&MdfCounts> {
        self.leas.get(lea).map(|l| &l.counts)
    }

    /// One record. `emit(lea, channel, pdu)` stores a PDU; its errors are returned (the first).
    pub fn record<E>(&mut self, rec: &Record<'_>, emit: &mut Emit<'_, E>) -> Result<(), E> {
        match rec {
            Record::Iri(r) => {
                self.last_ts = self.last_ts.max(r.ts);
                let Some(&lea) = self.route.get(&r.liid) else { return Ok(()) };
                if let (IriEvent::SessionBegin { flow, .. }, Some(cin)) = (&r.event, r.cin) {
                    let target = flow.target_side(&r.provenance);
                    self.sessions.insert((r.liid.clone(), cin), (flow.clone(), target));
                }
                if let IriEvent::Warrant { op, .. } = &r.event {
                    if !self.leas[lea].hi1 {
                        return Ok(());
                    }
                    // HI1 notifications share the LIID's CIN-less IRI stream (association
                    // events), so their numbering and integrity checks are the HI2 ones.
                    let key = (r.liid.clone(), None, DataType::Iri);
                    self.leas[lea].counts.hi1_notifications += 1;
                    let op = *op;
                    return self.data_pdu(lea, key, r.ts, emit, |enc, buf, hdr| {
                        enc.hi1(buf, hdr, &Hi1Notification { op, liid: hdr.liid, ts: hdr.ts })
                    });
                }
                let session = r
                    .cin
                    .and_then(|cin| self.sessions.get(&(r.liid.clone(), cin)))
                    .map(|(f, t)| FlowSide { flow: f, target: *t });
                let key = (r.liid.clone(), r.cin, DataType::Iri);
                if let Some(iri) = r.event.app::<SmtpEvent>().and_then(|ev| email_iri(ev, session)) {
                    self.leas[lea].counts.email_iri += 1;
                    return self.data_pdu(lea, key, r.ts, emit, |enc, buf, hdr| {
                        enc.email_iri(buf, hdr, IriType::Report, &iri)
                    });
                }
                let Some(m) = map_iri(r, session) else {
                    self.leas[lea].counts.iri_without_form += 1;
                    return Ok(());
                };
                self.data_pdu(lea, key, r.ts, emit, |enc, buf, hdr| enc.ipiri(buf, hdr, &m))
            }
            Record::Cc(c) => {
                self.last_ts = self.last_ts.max(c.ts);
                let Some(&lea) = self.route.get(c.liid) else { return Ok(()) };
                let Some(packet) = inner_ip_packet(c.link, c.data) else {
                    self.leas[lea].counts.cc_not_ip += 1;
                    return Ok(());
                };
                let dir = payload_direction(c.dir, c.target);
                let snapped = (c.data.len() as u64) < u64::from(c.orig_len);
                let cut = c.data.len().saturating_sub(packet.len());
                let original_len = u64::from(c.orig_len).saturating_sub(cut as u64);
                let key = (c.liid.clone(), Some(c.cin), DataType::Cc);
                self.data_pdu(lea, key, c.ts, emit, |enc, buf, hdr| {
                    let contents = if snapped {
                        CcContents::IpTruncated { packet, original_len }
                    } else {
                        CcContents::IpPacket(packet)
                    };
                    let cc = [CcPayload { direction: Some(dir), ts: None, contents }];
                    enc.encode(buf, hdr, &Payload::Cc(&cc))
                })
            }
            Record::ObjectBegin { liid, id, meta } => {
                let Some(&lea) = self.route.get(*liid) else { return Ok(()) };
                if meta.kind != "mail" {
                    return Ok(());
                }
                self.last_ts = self.last_ts.max(meta.first_seen);
                self.mails.insert(
                    ((*liid).clone(), *id),
                    MailOut {
                        lea,
                        liid: (*liid).clone(),
                        cin: meta.cin,
                        dir: match meta.from_target {
                            Some(true) => PayloadDirection::FromTarget,
                            Some(false) => PayloadDirection::ToTarget,
                            None => PayloadDirection::Indeterminate,
                        },
                        started: false,
                        held: Vec::new(),
                    },
                );
                Ok(())
            }
            Record::ObjectData { liid, id, data, .. } => self.mail_data(liid, *id, data, emit),
            Record::ObjectGap { liid, id, len, .. } => {
                if !self.mails.contains_key(&((*liid).clone(), *id)) || *len > MAX_GAP_FILL {
                    return Ok(());
                }
                // The LEMF concatenates pieces: zeros keep the offsets of what follows.
                let zeros = [0u8; 4096];
                let mut left = *len;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    self.mail_data(liid, *id, zeros.get(..n).unwrap_or(&[]), emit)?;
                    left -= n as u64;
                }
                Ok(())
            }
            Record::SessionClosed { liid, cin, ts } => {
                self.last_ts = self.last_ts.max(*ts);
                self.sessions.remove(&((*liid).clone(), *cin));
                let Some(&lea) = self.route.get(*liid) else { return Ok(()) };
                // Whatever the scope: a CC-only warrant's streams get their tails hashed and are
                // forgotten too, though no iRI-End tells of the session's end.
                self.retire(lea, liid, *cin, *ts, emit)
            }
            Record::ObjectEnd(o, id) => {
                self.last_ts = self.last_ts.max(o.last_seen);
                let Some(mut m) = self.mails.remove(&(o.liid.clone(), *id)) else { return Ok(()) };
                let ts = self.last_ts;
                let key = (m.liid.clone(), Some(m.cin), DataType::Cc);
                self.leas[m.lea].counts.email_cc_objects += 1;
                if m.started {
                    self.data_pdu(m.lea, key, ts, emit, |enc, buf, hdr| {
                        enc.encode(buf, hdr, &Payload::Tri(Tri::LastSegmentFlag))
                    })
                } else {
                    let held = std::mem::take(&mut m.held);
                    self.email_piece(&m, &held, emit)
                }
            }
        }
    }

    /// Streams one stretch of a mail's bytes as EmailCC pieces of at most
    /// [`EMAIL_SEGMENT_BYTES`], opening the segmented sequence when the mail outgrows one PDU.
    fn mail_data<E>(&mut self, liid: &Liid, id: ObjectId, data: &[u8], emit: &mut Emit<'_, E>) -> Result<(), E> {
        let key = (liid.clone(), id);
        let Some(mut m) = self.mails.remove(&key) else { return Ok(()) };
        let r = self.mail_data_inner(&mut m, data, emit);
        self.mails.insert(key, m);
        r
    }

    fn mail_data_inner<E>(&mut self, m: &mut MailOut, data: &[u8], emit: &mut Emit<'_, E>) -> Result<(), E> {
        if !m.started {
            if m.held.len().saturating_add(data.len()) <= EMAIL_SEGMENT_BYTES {
                m.held.extend_from_slice(data);
                return Ok(());
            }
            let key = (m.liid.clone(), Some(m.cin), DataType::Cc);
            let ts = self.last_ts;
            self.data_pdu(m.lea, key, ts, emit, |enc, buf, hdr| {
                enc.encode(buf, hdr, &Payload::Tri(Tri::FirstSegmentFlag))
            })?;
            m.started = true;
            // Top the held piece up to a full one; later pieces go as the bytes arrive.
            let fill = EMAIL_SEGMENT_BYTES.saturating_sub(m.held.len()).min(data.len());
            let (head, rest) = data.split_at(fill);
            let mut held = std::mem::take(&mut m.held);
            held.extend_from_slice(head);
            self.email_piece(m, &held, emit)?;
            for piece in rest.chunks(EMAIL_SEGMENT_BYTES) {
                self.email_piece(m, piece, emit)?;
            }
            return Ok(());
        }
        for piece in data.chunks(EMAIL_SEGMENT_BYTES) {
            self.email_piece(m, piece, emit)?;
        }
        Ok(())
    }

    fn email_piece<E>(&mut self, m: &MailOut, piece: &[u8], emit: &mut Emit<'_, E>) -> Result<(), E> {
        let key = (m.liid.clone(), Some(m.cin), DataType::Cc);
        let ts = self.last_ts;
        let dir = m.dir;
        self.data_pdu(m.lea, key, ts, emit, |enc, buf, hdr| {
            enc.email_cc(buf, hdr, Some(dir), EmailCc { format: EmailFormat::Application, content: piece })
        })
    }

    fn data_pdu<E>(
        &mut self,
        lea: usize,
        key: StreamKey,
        ts: Timestamp,
        emit: &mut Emit<'_, E>,
        enc: impl FnOnce(&Encoder, &mut Vec<u8>, &PduHeader<'_>) -> Result<(), crate::deliver::etsi::EncodeError>,
    ) -> Result<(), E> {
        let channel = if key.2 == DataType::Iri { Channel::Hi2 } else { Channel::Hi3 };
        let l = &mut self.leas[lea];
        if self.restarted && !self.reset_done.contains(&key) && self.reset_done.insert(key.clone()) {
            self.aux.clear();
            let hdr = PduHeader { liid: &key.0, cin: key.1.map(u64::from), seq: 0, ts };
            if l.encoder.cin_reset(&mut self.aux, &hdr).is_ok() {
                match emit(lea, channel, &self.aux) {
                    Ok(()) => l.counts.cin_resets += 1,
                    Err(e) => {
                        l.counts.refused += 1;
                        return Err(e);
                    }
                }
            }
        }
        let integrity = l.integrity.clone();
        let st = self
            .streams
            .entry(key.clone())
            .or_insert_with(|| Stream { next_seq: 0, integrity: integrity.map(|c| IntegrityState::new(c, key.2)) });
        let seq = st.next_seq;
        st.next_seq = st.next_seq.wrapping_add(1);
        self.buf.clear();
        let hdr = PduHeader { liid: &key.0, cin: key.1.map(u64::from), seq, ts };
        if enc(&l.encoder, &mut self.buf, &hdr).is_err() {
            l.counts.encode_errors += 1;
            return Ok(());
        }
        if let Err(e) = emit(lea, channel, &self.buf) {
            l.counts.refused += 1;
            return Err(e);
        }
        l.counts.pdus += 1;
        let due = match &mut st.integrity {
            Some(i) => i.add_pdu(seq, &self.buf, ts),
            None => return Ok(()),
        };
        if due.hash || due.signature {
            integrity_pdus(l, st, &key, channel, ts, lea, &mut self.aux, false, emit)?;
        }
        Ok(())
    }

    /// A session ended: its streams' integrity tails are hashed now (not at the end of a run
    /// that may last months), and its stream state is dropped once [`ENDED_KEPT`] later
    /// sessions have ended (so a late record of it still numbers on, not from 0 again).
    fn retire<E>(&mut self, lea: usize, liid: &Liid, cin: Cin, ts: Timestamp, emit: &mut Emit<'_, E>) -> Result<(), E> {
        self.hash_tails(lea, liid, cin, ts, emit)?;
        self.ended.push_back((liid.clone(), cin));
        while self.ended.len() > ENDED_KEPT {
            let Some((old_liid, old_cin)) = self.ended.pop_front() else { break };
            self.hash_tails(lea, &old_liid, old_cin, ts, emit)?;
            for dt in [DataType::Iri, DataType::Cc] {
                let key = (old_liid.clone(), Some(old_cin), dt);
                self.streams.remove(&key);
                self.reset_done.remove(&key);
            }
        }
        Ok(())
    }

    /// Hashes (and signs) whatever a session's IRI and CC streams have not yet covered.
    fn hash_tails<E>(
        &mut self,
        lea: usize,
        liid: &Liid,
        cin: Cin,
        ts: Timestamp,
        emit: &mut Emit<'_, E>,
    ) -> Result<(), E> {
        for dt in [DataType::Iri, DataType::Cc] {
            let key = (liid.clone(), Some(cin), dt);
            let channel = if dt == DataType::Iri { Channel::Hi2 } else { Channel::Hi3 };
            if let (Some(l), Some(st)) = (self.leas.get_mut(lea), self.streams.get_mut(&key)) {
                integrity_pdus(l, st, &key, channel, ts, lea, &mut self.aux, true, emit)?;
            }
        }
        Ok(())
    }

    /// End of input: hash (and sign) what every stream has not yet covered.
    pub fn flush<E>(&mut self, now: Timestamp, emit: &mut Emit<'_, E>) -> Result<(), E> {
        let mut keys: Vec<StreamKey> = self.streams.keys().cloned().collect();
        keys.sort_by(|a, b| (a.0.as_str(), a.1, a.2 as u8).cmp(&(b.0.as_str(), b.1, b.2 as u8)));
        let mut first_err = None;
        for key in keys {
            let Some(&lea) = self.route.get(&key.0) else { continue };
            let channel = if key.2 == DataType::Iri { Channel::Hi2 } else { Channel::Hi3 };
            let (Some(l), Some(st)) = (self.leas.get_mut(lea), self.streams.get_mut(&key)) else { continue };
            if let Err(e) = integrity_pdus(l, st, &key, channel, now, lea, &mut self.aux, true, emit) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The EmailIRI of an SMTP event: a mail transaction is send(1) when the target is the client
/// (receive(2) when it is the server), an AUTH is logon(5) or logon-failure(6); other events
/// (STARTTLS, anomalies) have no EmailIRI form (they go as IPIRI with tapir's parameters).
fn email_iri(ev: &SmtpEvent, session: Option<FlowSide<'_>>) -> Option<EmailIri> {
    let positive = |code: u16| (200..300).contains(&code);
    let mut iri = match ev.what {
        SmtpWhat::Mail => {
            let target_is_server = session.is_some_and(|s| s.target == Dir::Resp);
            let event = if target_is_server { EmailEventType::Receive } else { EmailEventType::Send };
            let mut iri = EmailIri::new(event, EmailProtocol::Smtp);
            iri.sender = ev.mail_from.clone();
            iri.recipients = ev.rcpt_to.iter().map(|r| r.addr.clone()).collect();
            let total = (ev.rcpt_to.len() as u64).saturating_add(ev.rcpt_dropped);
            iri.total_recipient_count = Some(u32::try_from(total).unwrap_or(u32::MAX));
            iri.message_id = ev.headers.message_id.as_ref().map(|m| m.as_bytes().to_vec());
            iri.status = Some(match &ev.reply {
                Some(r) if positive(r.code) => EmailStatus::Succeeded,
                Some(_) => EmailStatus::Failed,
                None => EmailStatus::Unknown,
            });
            iri
        }
        SmtpWhat::Auth => {
            let ok = ev.success.or_else(|| ev.reply.as_ref().map(|r| positive(r.code)));
            let event = match ok {
                Some(true) => EmailEventType::Logon,
                Some(false) => EmailEventType::LogonFailure,
                None => EmailEventType::LogonAttempt,
            };
            let mut iri = EmailIri::new(event, EmailProtocol::Smtp);
            iri.status = Some(match ok {
                Some(true) => EmailStatus::Succeeded,
                Some(false) => EmailStatus::Failed,
                None => EmailStatus::Unknown,
            });
            iri
        }
        SmtpWhat::StartTls | SmtpWhat::Anomaly => return None,
    };
    // The SMTP client opens the connection: it is the flow's originator.
    if let Some(s) = session {
        iri.client = Some(s.flow.orig);
        iri.server = Some(s.flow.resp);
    }
    Some(iri)
}

/// Sends the due hash and signature PDUs of one stream (all pending ones at flush).
#[allow(clippy::too_many_arguments)]
fn integrity_pdus<E>(
    l: &mut Lea,
    st: &mut Stream,
    key: &StreamKey,
    channel: Channel,
    ts: Timestamp,
    lea: usize,
    buf: &mut Vec<u8>,
    force: bool,
    emit: &mut Emit<'_, E>,
) -> Result<(), E> {
    let Some(state) = &mut st.integrity else { return Ok(()) };
    let mut checks = Vec::new();
    // `force` (end of input): whatever is pending, due or not.
    if force || state.due(ts).hash {
        if let Some(h) = state.take_hash(ts) {
            checks.push(h);
        }
    }
    if force || state.due(ts).signature {
        if let Some(signer) = &l.signer {
            match state.take_signature(signer) {
                Ok(Some(s)) => checks.push(s),
                Ok(None) => {}
                Err(_) => l.counts.encode_errors += 1,
            }
        }
    }
    for (seq, ic) in checks {
        buf.clear();
        let hdr = PduHeader { liid: &key.0, cin: key.1.map(u64::from), seq, ts };
        if l.encoder.integrity_check(buf, &hdr, &ic).is_err() {
            l.counts.encode_errors += 1;
            continue;
        }
        if let Err(e) = emit(lea, channel, buf) {
            l.counts.refused += 1;
            return Err(e);
        }
        l.counts.integrity_checks += 1;
    }
    Ok(())
}
