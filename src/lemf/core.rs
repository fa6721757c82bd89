//! The LEMF's sans-I/O core: one PDU in, what to answer and what to write out.
//!
//! No-panic contract: PDUs are decoded by [`decode_pdu`] (checked BER reader); every field is
//! read from the resulting JSON with fallbacks, hex is decoded with error handling, and memory
//! kept for integrity checks and e-mail reassembly is bounded.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ring::digest;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519};
use serde_json::Value;

use super::report::{push_sample, Duplicate, IntegrityFailure, Problem, Report, StreamReport};
use crate::deliver::etsi::ber::Reader;
use crate::deliver::etsi::decode::decode_pdu;
use crate::deliver::etsi::{Encoder, EtsiConfig, PduHeader};
use crate::timestamp::Timestamp;

/// Bytes of not-yet-hashed PDUs kept per stream for integrity checks.
const PENDING_BYTES: usize = 64 << 20;
/// Digests kept per stream to tell a resent PDU from a different one with the same number.
const RECENT_DIGESTS: usize = 4096;
/// Largest e-mail object reassembled; beyond it the object is cut and marked.
const MAX_OBJECT: usize = 256 << 20;

/// HI2 (IRI) or HI3 (CC).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Hi2,
    Hi3,
}

impl VerifyKey {
    /// From a SubjectPublicKeyInfo in DER (`openssl pkey -pubout -outform DER`): Ed25519 or
    /// P-256 (id-ecPublicKey with prime256v1, uncompressed point).
    pub fn from_spki_der(der: &[u8]) -> Option<VerifyKey> {
        const ED25519_SPKI: &[u8] = &[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        const P256_SPKI: &[u8] = &[
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        if let Some(k) = der.strip_prefix(ED25519_SPKI).filter(|k| k.len() == 32) {
            return Some(VerifyKey::Ed25519(k.to_vec()));
        }
        der.strip_prefix(P256_SPKI).filter(|k| k.len() == 65).map(|k| VerifyKey::EcdsaP256(k.to_vec()))
    }

    /// From a PEM `PUBLIC KEY` file (`openssl pkey -pubout`).
    pub fn from_pem_file(path: &std::path::Path) -> Option<VerifyKey> {
        use rustls::pki_types::pem::PemObject;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_file(path).ok()?;
        VerifyKey::from_spki_der(spki.as_ref())
    }

    /// From a key file: a PEM `PUBLIC KEY`, or an Ed25519 public key in hex (`KEY.pub` as
    /// `tapir keygen KEY` writes it).
    pub fn from_file(path: &std::path::Path) -> Option<VerifyKey> {
        if let Some(k) = VerifyKey::from_pem_file(path) {
            return Some(k);
        }
        let text = std::fs::read_to_string(path).ok()?;
        let raw = hex::decode(text.trim()).ok().filter(|k| k.len() == 32)?;
        Some(VerifyKey::Ed25519(raw))
    }
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Hi2 => "hi2",
            Channel::Hi3 => "hi3",
        }
    }

    /// What a PDU tells of the channel it travels on, for a listener that takes HI2 and HI3
    /// on one port (an X1 destination is one `ipAddressAndPort`); one decode for both answers.
    ///
    /// IRI and HI1 notifications are HI2, CC is HI3, an integrity check says by its
    /// `dataType`. A keep-alive (answered before the channel is known), a cINReset or a segment
    /// says nothing: the sender opens one connection per channel, so the connection's first
    /// telling PDU decides for all of them.
    pub fn of_pdu(pdu: &[u8]) -> Tells {
        let Some(Ok(tlv)) = Reader::new(pdu, 0).next_tlv() else { return Tells::Nothing };
        let Ok(v) = decode_pdu(&tlv) else { return Tells::Nothing };
        let payload = &v["payload"];
        if payload["iRIPayloadSequence"].is_array() || payload.get("hI1-Operation").is_some_and(|o| o.is_object()) {
            return Tells::Channel(Channel::Hi2);
        }
        if payload["cCPayloadSequence"].is_array() {
            return Tells::Channel(Channel::Hi3);
        }
        let tri = &payload["tRIPayload"];
        if tri.get("keep-alive").is_some() {
            return Tells::KeepAlive;
        }
        match tri["integrityCheck"]["dataType"].as_str() {
            Some("iRI") => Tells::Channel(Channel::Hi2),
            Some("cC") => Tells::Channel(Channel::Hi3),
            _ => Tells::Nothing,
        }
    }
}

/// See [`Channel::of_pdu`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Tells {
    Channel(Channel),
    KeepAlive,
    Nothing,
}

/// The public key integrity signatures are checked with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyKey {
    /// Raw 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
    /// Uncompressed P-256 point (65 bytes, 0x04 || X || Y).
    EcdsaP256(Vec<u8>),
}

/// What the I/O layer must do for one PDU.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Bytes to send back on the connection (keep-alive response).
    pub reply: Option<Vec<u8>>,
    pub writes: Vec<Write>,
}

/// One thing to append to the case directory.
#[derive(Debug)]
pub enum Write {
    IriLine { liid: String, line: Value },
    CcPacket { liid: String, ts: Timestamp, packet: Vec<u8> },
    Object { liid: String, bytes: Vec<u8>, meta: Value },
}

#[derive(Default)]
struct Recent {
    order: VecDeque<u32>,
    digests: HashMap<u32, [u8; 32]>,
}

impl Recent {
    fn put(&mut self, seq: u32, d: [u8; 32]) {
        if self.digests.insert(seq, d).is_none() {
            self.order.push_back(seq);
        }
        while self.order.len() > RECENT_DIGESTS {
            if let Some(old) = self.order.pop_front() {
                self.digests.remove(&old);
            }
        }
    }
}

/// PDUs waiting for the hash PDU that covers them, and hash values waiting for a signature.
#[derive(Default)]
struct IntegrityStream {
    pending: BTreeMap<u32, Vec<u8>>,
    pending_bytes: usize,
    hashes: BTreeMap<u32, Vec<u8>>,
}

#[derive(Default)]
struct Assembly {
    first_seq: Option<u32>,
    parts: BTreeMap<u32, Vec<u8>>,
    bytes: usize,
    truncated: bool,
}

type IntegrityKey = (String, Option<u64>, &'static str);

/// The LEMF state across all connections.
pub struct Core {
    pub report: Report,
    key: Option<VerifyKey>,
    recent: HashMap<String, Recent>,
    integrity: HashMap<IntegrityKey, IntegrityStream>,
    mail: HashMap<(String, Option<u64>), Assembly>,
}

/// The fields of a pSHeader the LEMF uses.
struct Header {
    liid: String,
    cin: Option<u64>,
    seq: Option<u32>,
    ts: Option<Timestamp>,
}

fn liid_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => format!("hex:{}", m.get("hex").and_then(Value::as_str).unwrap_or("")),
        _ => "unknown".into(),
    }
}

/// The time in a decoded PS-PDU's header (`microSecondTimeStamp`), if it has one.
pub fn header_time(pdu: &Value) -> Option<Timestamp> {
    let t = &pdu["pSHeader"]["microSecondTimeStamp"];
    let s = i64::try_from(t["seconds"].as_u64()?).ok()?;
    let us = t["microSeconds"].as_u64().unwrap_or(0);
    Some(Timestamp::from_secs_nanos(s, u32::try_from(us.min(999_999)).ok()? * 1000))
}

fn header(pdu: &Value) -> Header {
    let h = &pdu["pSHeader"];
    let ts = header_time(pdu);
    Header {
        liid: liid_of(&h["lawfulInterceptionIdentifier"]),
        cin: h["communicationIdentifier"]["communicationIdentityNumber"].as_u64(),
        seq: h["sequenceNumber"].as_u64().and_then(|s| u32::try_from(s).ok()),
        ts,
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, b).as_ref());
    out
}

impl Core {
    pub fn new(report: Report, key: Option<VerifyKey>) -> Core {
        Core { report, key, recent: HashMap::new(), integrity: HashMap::new(), mail: HashMap::new() }
    }

    fn count(&mut self, ch: Channel, liid: &str, kind: &str) {
        *self.report.pdus.entry(format!("{}/{}/{}", ch.name(), liid, kind)).or_default() += 1;
    }

    pub fn connection(&mut self, ch: Channel) {
        *self.report.connections.entry(ch.name().into()).or_default() += 1;
    }

    /// A one-port connection whose channel had to be guessed (see [`Channel::of_pdu`]).
    pub fn channel_guessed(&mut self, guess: Channel, peer: &str, error: String) {
        self.report.channel_guesses += 1;
        push_sample(
            &mut self.report.channel_guess_samples,
            Problem { channel: guess.name().into(), peer: peer.into(), error },
        );
    }

    pub fn framing_error(&mut self, ch: Channel, peer: &str, error: String) {
        self.report.framing_errors += 1;
        push_sample(&mut self.report.framing_samples, Problem { channel: ch.name().into(), peer: peer.into(), error });
    }

    pub fn tls_refused(&mut self, ch: Channel, peer: &str, error: String) {
        self.report.tls_refused += 1;
        push_sample(
            &mut self.report.tls_refused_samples,
            Problem { channel: ch.name().into(), peer: peer.into(), error },
        );
    }

    fn undecodable(&mut self, ch: Channel, peer: &str, error: String) {
        self.report.undecodable += 1;
        push_sample(
            &mut self.report.undecodable_samples,
            Problem { channel: ch.name().into(), peer: peer.into(), error },
        );
    }

    /// Records `seq` in its stream; `Some(dup)` when it was received before.
    fn sequence(&mut self, ch: Channel, h: &Header, kind: &str, pdu: &[u8]) -> Option<Duplicate> {
        let seq = h.seq?;
        let cin = h.cin.map_or_else(|| "-".to_string(), |c| c.to_string());
        let key = format!("{}/{}/{}/{}", ch.name(), h.liid, cin, kind);
        let d = sha256(pdu);
        let st = self.report.streams.entry(key.clone()).or_insert_with(|| StreamReport {
            channel: ch.name().into(),
            liid: h.liid.clone(),
            cin: h.cin,
            kind: kind.into(),
            ..Default::default()
        });
        st.pdus += 1;
        let recent = self.recent.entry(key).or_default();
        if st.received.insert(seq) {
            let first = st.received.min() == Some(seq);
            if !first && st.received.max() == Some(seq) && !st.received.contains(seq.wrapping_sub(1)) {
                st.gap_events += 1;
            }
            recent.put(seq, d);
            return None;
        }
        let dup = Duplicate { seq, identical: recent.digests.get(&seq).map(|old| *old == d) };
        st.duplicates += 1;
        push_sample(&mut st.duplicate_samples, dup.clone());
        Some(dup)
    }

    fn cin_reset(&mut self, ch: Channel, h: &Header) {
        let cin = h.cin.map_or_else(|| "-".to_string(), |c| c.to_string());
        for kind in ["iri", "cc", "integrity-iri", "integrity-cc"] {
            let key = format!("{}/{}/{}/{}", ch.name(), h.liid, cin, kind);
            if let Some(st) = self.report.streams.get_mut(&key) {
                // The holes before the reset stay on record; numbering starts again after it.
                st.gaps_before_reset.extend(st.received.holes());
                st.received.clear();
                st.cin_resets += 1;
            }
            self.recent.remove(&key);
        }
        // Integrity checks number afresh too, and hash only PDUs sent after the reset. Only
        // this channel's kind: the other channel may still be delivering the old run's tail.
        let kind = match ch {
            Channel::Hi2 => "iri",
            Channel::Hi3 => "cc",
        };
        self.integrity.remove(&(h.liid.clone(), h.cin, kind));
    }

    /// One framed PDU from `peer` on `ch`.
    pub fn pdu(&mut self, ch: Channel, peer: &str, pdu: &[u8], now: Timestamp) -> Outcome {
        let mut out = Outcome::default();
        let tlv = match Reader::new(pdu, 0).next_tlv() {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                self.undecodable(ch, peer, e.to_string());
                return out;
            }
            None => return out,
        };
        let v = match decode_pdu(&tlv) {
            Ok(v) => v,
            Err(e) => {
                self.undecodable(ch, peer, e.to_string());
                return out;
            }
        };
        let h = header(&v);
        let ts = h.ts.unwrap_or(now);
        let payload = &v["payload"];
        if payload["iRIPayloadSequence"].is_array() {
            self.count(ch, &h.liid, "iri");
            self.iri_line(ch, &h, pdu, ts, ("iri", &payload["iRIPayloadSequence"]), &v, &mut out);
        } else if let Some(items) = payload["cCPayloadSequence"].as_array() {
            self.count(ch, &h.liid, "cc");
            let dup = self.sequence(ch, &h, "cc", pdu);
            self.integrity_data(&h, "cc", pdu, dup.is_some());
            if dup.as_ref().is_some_and(|d| d.identical == Some(true)) {
                return out;
            }
            for it in items {
                let c = &it["cCContents"];
                let ipcc = &c["iPCC"]["iPCCContents"];
                let hexp = ipcc["iPPackets"].as_str().or_else(|| ipcc["iPTruncatedPacket"]["truncatedPacket"].as_str());
                if let Some(hx) = hexp {
                    match hex::decode(hx) {
                        Ok(packet) => out.writes.push(Write::CcPacket { liid: h.liid.clone(), ts, packet }),
                        Err(e) => self.undecodable(ch, peer, format!("iPPackets hex: {e}")),
                    }
                } else if let Some(hx) = c["emailCC"]["content"].as_str() {
                    let bytes = hex::decode(hx).unwrap_or_default();
                    self.email_piece(&h, bytes, ts, &mut out);
                }
            }
        } else if let Some(tri) = payload["tRIPayload"].as_object() {
            let data_kind = match ch {
                Channel::Hi2 => "iri",
                Channel::Hi3 => "cc",
            };
            if tri.contains_key("keep-alive") {
                self.count(ch, &h.liid, "keep-alive");
                out.reply = Some(keep_alive_response(&v, &h, pdu));
                self.report.keepalives_answered += 1;
            } else if let Some(ic) = tri.get("integrityCheck") {
                self.count(ch, &h.liid, "integrity");
                let dt = match ic["dataType"].as_str() {
                    Some("iRI") => "iri",
                    Some("cC") => "cc",
                    _ => "other",
                };
                let dup = self.sequence(ch, &h, &format!("integrity-{dt}"), pdu);
                // A resent check (after a reconnect) was verified the first time; its PDUs are
                // hashed already, so checking it again would report them missing.
                if dup.is_none_or(|d| d.identical != Some(true)) {
                    self.integrity_check(ch, &h, dt, ic);
                }
            } else if tri.contains_key("firstSegmentFlag") || tri.contains_key("lastSegmentFlag") {
                self.count(ch, &h.liid, "segment");
                let dup = self.sequence(ch, &h, data_kind, pdu);
                self.integrity_data(&h, data_kind, pdu, dup.is_some());
                let key = (h.liid.clone(), h.cin);
                if tri.contains_key("firstSegmentFlag") {
                    if dup.is_none() {
                        self.mail.insert(key, Assembly { first_seq: h.seq, ..Default::default() });
                    }
                } else if let Some(a) = self.mail.remove(&key) {
                    self.finish_object(&h, a, ts, h.seq, &mut out);
                }
            } else if tri.contains_key("cINReset") {
                self.count(ch, &h.liid, "cin-reset");
                self.cin_reset(ch, &h);
            } else {
                self.count(ch, &h.liid, "tri");
            }
        } else if let Some(op) = payload.get("hI1-Operation").filter(|o| o.is_object()) {
            // Warrant notifications number with the LIID's CIN-less IRI stream.
            self.count(ch, &h.liid, "hi1");
            self.iri_line(ch, &h, pdu, ts, ("hI1-Operation", op), &v, &mut out);
        } else {
            self.undecodable(ch, peer, "payload is neither IRI, CC, TRI nor HI1".into());
        }
        out
    }

    /// An HI2 PDU that goes to the LIID's `iri.jsonl` (IRI, and HI1 notifications, which number
    /// in the same stream): sequence and integrity bookkeeping, then one line keyed `field`,
    /// unless it is an identical resend.
    #[allow(clippy::too_many_arguments)]
    fn iri_line(
        &mut self,
        ch: Channel,
        h: &Header,
        pdu: &[u8],
        ts: Timestamp,
        (field, value): (&str, &Value),
        v: &Value,
        out: &mut Outcome,
    ) {
        let dup = self.sequence(ch, h, "iri", pdu);
        self.integrity_data(h, "iri", pdu, dup.is_some());
        if dup.as_ref().is_some_and(|d| d.identical == Some(true)) {
            return;
        }
        let mut line = serde_json::json!({
            "channel": ch.name(), "liid": h.liid, "cin": h.cin, "seq": h.seq,
            "ts": ts.to_rfc3339(), field: value,
            "pSHeader": v["pSHeader"],
        });
        if dup.is_some() {
            line["duplicate"] = Value::Bool(true);
        }
        out.writes.push(Write::IriLine { liid: h.liid.clone(), line });
    }

    fn integrity_data(&mut self, h: &Header, kind: &'static str, pdu: &[u8], dup: bool) {
        let Some(seq) = h.seq else { return };
        if dup {
            return;
        }
        let st = self.integrity.entry((h.liid.clone(), h.cin, kind)).or_default();
        st.pending_bytes = st.pending_bytes.saturating_add(pdu.len());
        st.pending.insert(seq, pdu.to_vec());
        while st.pending_bytes > PENDING_BYTES {
            let Some((_, old)) = st.pending.pop_first() else { break };
            st.pending_bytes = st.pending_bytes.saturating_sub(old.len());
        }
    }

    fn integrity_check(&mut self, ch: Channel, h: &Header, dt: &'static str, ic: &Value) {
        let included: Vec<u32> = ic["includedSequenceNumbers"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n.as_u64().and_then(|n| u32::try_from(n).ok())).collect())
            .unwrap_or_default();
        let check_type = ic["checkType"].as_str().unwrap_or("").to_string();
        let value = ic["checkValue"].as_str().and_then(|s| hex::decode(s).ok()).unwrap_or_default();
        let st = self.integrity.entry((h.liid.clone(), h.cin, dt)).or_default();
        let result: Result<(), String> = match check_type.as_str() {
            "hash" => {
                let alg = match ic["hashAlgorithm"].as_str() {
                    Some("sHA-256") | None => Some(&digest::SHA256),
                    Some("sHA-384") => Some(&digest::SHA384),
                    Some("sHA-512") => Some(&digest::SHA512),
                    _ => None,
                };
                let r = match alg {
                    None => Err(format!("hash algorithm {} not supported", ic["hashAlgorithm"])),
                    Some(alg) => {
                        let mut ctx = digest::Context::new(alg);
                        let mut missing = Vec::new();
                        for n in &included {
                            match st.pending.get(n) {
                                Some(p) => ctx.update(p),
                                None => missing.push(*n),
                            }
                        }
                        if !missing.is_empty() {
                            Err(format!("PDUs not received (or already hashed): {missing:?}"))
                        } else if ctx.finish().as_ref() != value.as_slice() {
                            Err("hash mismatch".into())
                        } else {
                            Ok(())
                        }
                    }
                };
                for n in &included {
                    if let Some(p) = st.pending.remove(n) {
                        st.pending_bytes = st.pending_bytes.saturating_sub(p.len());
                    }
                }
                if let Some(seq) = h.seq {
                    st.hashes.insert(seq, value.clone());
                    while st.hashes.len() > 4096 {
                        st.hashes.pop_first();
                    }
                }
                match r {
                    Ok(()) => self.report.integrity.hash_passed += 1,
                    Err(_) => self.report.integrity.hash_failed += 1,
                }
                r
            }
            "signature" => {
                let mut msg = Vec::new();
                let mut missing = Vec::new();
                for n in &included {
                    match st.hashes.remove(n) {
                        Some(v) => msg.extend_from_slice(&v),
                        None => missing.push(*n),
                    }
                }
                let alg = ic["signatureAlgorithm"].as_str().unwrap_or("");
                let r = if !missing.is_empty() {
                    Err(format!("hash PDUs not received: {missing:?}"))
                } else {
                    match (&self.key, alg) {
                        (None, _) => {
                            self.report.integrity.signature_unverified += 1;
                            return;
                        }
                        (Some(VerifyKey::Ed25519(k)), "edDSA") => UnparsedPublicKey::new(&ED25519, k)
                            .verify(&msg, &value)
                            .map_err(|_| "Ed25519 signature does not verify".to_string()),
                        (Some(VerifyKey::EcdsaP256(k)), "eCDSA") => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, k)
                            .verify(&msg, &value)
                            .map_err(|_| "ECDSA P-256 signature does not verify".to_string()),
                        (Some(_), a) => Err(format!("signature algorithm {a:?} does not match the configured key")),
                    }
                };
                match r {
                    Ok(()) => self.report.integrity.signature_passed += 1,
                    Err(_) => self.report.integrity.signature_failed += 1,
                }
                r
            }
            other => Err(format!("unknown checkType {other:?}")),
        };
        if let Err(reason) = result {
            push_sample(
                &mut self.report.integrity.failures,
                IntegrityFailure {
                    channel: ch.name().into(),
                    liid: h.liid.clone(),
                    cin: h.cin,
                    data_type: dt.into(),
                    check_type,
                    seq: h.seq,
                    reason,
                },
            );
        }
    }

    fn email_piece(&mut self, h: &Header, bytes: Vec<u8>, ts: Timestamp, out: &mut Outcome) {
        let key = (h.liid.clone(), h.cin);
        if let Some(a) = self.mail.get_mut(&key) {
            if a.bytes.saturating_add(bytes.len()) > MAX_OBJECT {
                a.truncated = true;
                return;
            }
            a.bytes += bytes.len();
            a.parts.insert(h.seq.unwrap_or(u32::MAX), bytes);
            return;
        }
        let mut a = Assembly { first_seq: h.seq, bytes: bytes.len(), ..Default::default() };
        a.parts.insert(h.seq.unwrap_or(0), bytes);
        self.finish_object(h, a, ts, h.seq, out);
    }

    fn finish_object(&mut self, h: &Header, a: Assembly, ts: Timestamp, last_seq: Option<u32>, out: &mut Outcome) {
        let pieces = a.parts.len();
        let mut bytes = Vec::with_capacity(a.bytes);
        for p in a.parts.into_values() {
            bytes.extend_from_slice(&p);
        }
        let sha = hex::encode(sha256(&bytes));
        self.report.objects += 1;
        let meta = serde_json::json!({
            "sha256": sha, "size": bytes.len(), "liid": h.liid, "cin": h.cin,
            "first_seq": a.first_seq, "last_seq": last_seq, "pieces": pieces,
            "truncated": a.truncated, "ts": ts.to_rfc3339(), "kind": "email",
        });
        out.writes.push(Write::Object { liid: h.liid.clone(), bytes, meta });
    }
}

/// The keep-alive response: tapir's encoder with the sender's own header values (clause 6.3: the
/// same header as the keep-alive); the received header bytes verbatim if those values are not
/// ones the encoder accepts.
fn keep_alive_response(v: &Value, h: &Header, pdu: &[u8]) -> Vec<u8> {
    let hd = &v["pSHeader"];
    let text = |x: &Value| x.as_str().map(String::from);
    let version =
        hd["li-psDomainId"].as_str().and_then(|s| s.strip_prefix("0.4.0.2.2.5.1.")).and_then(|s| s.parse::<u32>().ok());
    let ni = &hd["communicationIdentifier"]["networkIdentifier"];
    let enc = (|| {
        let mut cfg = EtsiConfig::new(&text(&ni["operatorIdentifier"])?);
        if let Some(ver) = version {
            cfg.versions.li_ps_pdu = ver;
        }
        cfg.network_element_id = text(&ni["networkElementIdentifier"]);
        cfg.authorization_country_code = text(&hd["authorizationCountryCode"]);
        cfg.delivery_country_code = text(&hd["communicationIdentifier"]["deliveryCountryCode"]);
        cfg.interception_point_id = text(&hd["interceptionPointID"]);
        use crate::deliver::etsi::ps_pdu::{TimeStampMode, TimeStampQualifier};
        cfg.timestamps = match (hd.get("timeStamp").is_some(), hd.get("microSecondTimeStamp").is_some()) {
            (true, true) => TimeStampMode::Both,
            (true, false) => TimeStampMode::Generalized,
            _ => TimeStampMode::MicroSecond,
        };
        cfg.time_stamp_qualifier = match hd["timeStampQualifier"].as_str() {
            Some("unknown") => Some(TimeStampQualifier::Unknown),
            Some("timeOfInterception") => Some(TimeStampQualifier::TimeOfInterception),
            Some("timeOfMediation") => Some(TimeStampQualifier::TimeOfMediation),
            Some("timeOfAggregation") => Some(TimeStampQualifier::TimeOfAggregation),
            _ => None,
        };
        if version.is_none() || hd["lawfulInterceptionIdentifier"].as_str().is_none() {
            return None;
        }
        let enc = Encoder::new(cfg).ok()?;
        let mut out = Vec::new();
        let hdr = PduHeader { liid: &h.liid, cin: h.cin, seq: h.seq?, ts: h.ts? };
        enc.keep_alive_response(&mut out, &hdr).ok()?;
        Some(out)
    })();
    enc.unwrap_or_else(|| raw_keep_alive_response(pdu))
}

/// SEQUENCE { <the received pSHeader TLV>, [2] { [2] { [4] NULL } } }.
fn raw_keep_alive_response(pdu: &[u8]) -> Vec<u8> {
    use crate::deliver::etsi::ber::{put_cons, put_null, Tag};
    let mut hdr: &[u8] = &[];
    if let Some(Ok(t)) = Reader::new(pdu, 0).next_tlv() {
        let mut r = t.children();
        if let Some(Ok(c)) = r.next_tlv() {
            let start = c.offset;
            hdr = pdu.get(start..start.saturating_add(c.total_len)).unwrap_or_default();
        }
    }
    let mut out = Vec::new();
    put_cons(&mut out, Tag::SEQUENCE, hdr.len() + 8, |o| {
        o.extend_from_slice(hdr);
        put_cons(o, Tag::ctx_cons(2), 4, |o| put_cons(o, Tag::ctx_cons(2), 2, |o| put_null(o, Tag::ctx(4))));
    });
    out
}
