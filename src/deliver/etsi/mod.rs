//! ETSI TS 102 232 encoding: tapir's records as PS-PDUs (BER), and back to JSON for analysts.
//!
//! Pure functions over bytes, no sockets and no clock: the delivery layer (TCP/TLS, spool,
//! keep-alive timers) numbers PDUs, calls these, and writes the bytes.
//!
//! - [`ber`]: the BER writer/reader (hand-written; see docs/handover.md for why not `rasn`).
//! - [`ps_pdu`]: TS 102 232-1 header and payload; [`Encoder`] holds one LEA's settings.
//! - [`ipaccess`]: TS 102 232-3 IPIRI/IPCC, the record mapping and the inner-packet finder.
//! - [`email`]: TS 102 232-2 EmailIRI/EmailCC (tags from public implementations).
//! - [`hi1`]: HI1 notifications (warrant activated, modified, deactivated).
//! - [`integrity`]: TRI integrityCheck state (hash and signed hash).
//! - [`decode`]: PS-PDU stream -> JSON lines.
//!
//! No-panic contract: encoders only read tapir's own values; every function that reads wire
//! bytes ([`decode`], [`ipaccess::inner_ip_packet`]) checks lengths before use.

pub mod ber;
pub mod decode;
pub mod email;
pub mod hi1;
pub mod integrity;
pub mod ipaccess;
pub mod national;
pub mod ps_pdu;

pub use decode::{decode_stream, DecodeError};
pub use email::{EmailCc, EmailEventType, EmailFormat, EmailIri, EmailProtocol, EmailStatus, Segment};
pub use hi1::Hi1Notification;
pub use integrity::{Due, IntegrityConfig, IntegrityState, SignError, Signer};
pub use ipaccess::{inner_ip_packet, map_iri, IpIriContents, MappedIri};
pub use ps_pdu::{
    CcContents, CcPayload, ConfigError, DataType, EncodeError, Encoder, EtsiConfig, GeneralizedTime, IntegrityCheck,
    IriContents, IriPayload, IriType, Payload, PayloadDirection, PduHeader, Tri, Versions,
};

impl Encoder {
    /// One IPCC PDU carrying one IP packet (see [`inner_ip_packet`]).
    pub fn ipcc(
        &self,
        out: &mut Vec<u8>,
        hdr: &PduHeader<'_>,
        packet: &[u8],
        dir: PayloadDirection,
    ) -> Result<(), EncodeError> {
        let cc = [CcPayload { direction: Some(dir), ts: None, contents: CcContents::IpPacket(packet) }];
        self.encode(out, hdr, &Payload::Cc(&cc))
    }

    /// One IPIRI PDU.
    pub fn ipiri(&self, out: &mut Vec<u8>, hdr: &PduHeader<'_>, iri: &MappedIri) -> Result<(), EncodeError> {
        let p = [IriPayload { iri_type: iri.iri_type, ts: None, contents: IriContents::IpIri(&iri.contents) }];
        self.encode(out, hdr, &Payload::Iri(&p))
    }

    /// One EmailIRI PDU.
    pub fn email_iri(
        &self,
        out: &mut Vec<u8>,
        hdr: &PduHeader<'_>,
        iri_type: IriType,
        iri: &EmailIri,
    ) -> Result<(), EncodeError> {
        let p = [IriPayload { iri_type, ts: None, contents: IriContents::EmailIri(iri) }];
        self.encode(out, hdr, &Payload::Iri(&p))
    }

    /// One EmailCC PDU (one piece of [`email::segments`]).
    pub fn email_cc(
        &self,
        out: &mut Vec<u8>,
        hdr: &PduHeader<'_>,
        dir: Option<PayloadDirection>,
        cc: EmailCc<'_>,
    ) -> Result<(), EncodeError> {
        let p = [CcPayload { direction: dir, ts: None, contents: CcContents::Email(cc) }];
        self.encode(out, hdr, &Payload::Cc(&p))
    }

    /// One HI1 notification PDU (liActivated / liModified / liDeactivated).
    pub fn hi1(&self, out: &mut Vec<u8>, hdr: &PduHeader<'_>, n: &Hi1Notification<'_>) -> Result<(), EncodeError> {
        self.encode(out, hdr, &Payload::Hi1(n))
    }

    /// One integrity-check TRI PDU.
    pub fn integrity_check(
        &self,
        out: &mut Vec<u8>,
        hdr: &PduHeader<'_>,
        ic: &IntegrityCheck,
    ) -> Result<(), EncodeError> {
        self.encode(out, hdr, &Payload::Tri(Tri::IntegrityCheck(ic)))
    }
}
