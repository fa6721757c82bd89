//! TS 102 232-2 EmailPDU: EmailIRI and EmailCC.
//!
//! The EmailPDU ASN.1 module was not in hand (see schemas/etsi/SOURCES.md). The tags below come
//! from the issue that asked for this module, which recorded them from public implementations:
//! EmailIRI `[0] objId, [1] eventType, [2] client-Address, [3] server-Address, [4] client-Port,
//! [5] server-Port, [6] server-Octets-Sent, [7] client-Octets-Sent, [8] protocol-ID,
//! [9] e-mail-Sender, [10] e-mail-Recipients, [11] status, [12] total-Recipient-Count,
//! [13] message-ID, [16] aAAInformation`; EmailCC `[0] objId, [1] email-Format, [2] content`.
//! The types under those tags are our reading: objId RELATIVE-OID {li-ps(5) email(2) versionN
//! iRI(1)|cC(2)}, addresses LI-PS-PDU IPAddress, ports/octets/count INTEGER, sender UTF8String,
//! recipients SEQUENCE OF UTF8String, message-ID OCTET STRING, content OCTET STRING. Keep all
//! EmailPDU knowledge in this module so that it can be corrected in one place once the module
//! itself is obtained.

use std::net::SocketAddr;

use super::ber::{put_cons, put_prim, put_uint, Tag};
use super::ipaccess::IpAddress;
use super::ps_pdu::EncodeError;

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmailEventType {
    Send = 1,
    Receive = 2,
    Download = 3,
    LogonAttempt = 4,
    Logon = 5,
    LogonFailure = 6,
    Logoff = 7,
    PartialDownload = 8,
    Upload = 9,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmailProtocol {
    Smtp = 1,
    Pop3 = 2,
    Imap = 3,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmailStatus {
    Unknown = 1,
    Failed = 2,
    Succeeded = 3,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmailFormat {
    IpPacket = 1,
    Application = 2,
}

/// What one mail event says, protocol-neutral: the lead maps `analyze::smtp::SmtpEvent` to it.
#[derive(Clone, Debug, PartialEq)]
pub struct EmailIri {
    pub event_type: EmailEventType,
    pub protocol: EmailProtocol,
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    pub server_octets_sent: Option<u64>,
    pub client_octets_sent: Option<u64>,
    /// The envelope sender (MAIL FROM) as given.
    pub sender: Option<String>,
    /// The envelope recipients (RCPT TO) as given.
    pub recipients: Vec<String>,
    pub status: Option<EmailStatus>,
    pub total_recipient_count: Option<u32>,
    pub message_id: Option<Vec<u8>>,
}

impl EmailIri {
    pub fn new(event_type: EmailEventType, protocol: EmailProtocol) -> EmailIri {
        EmailIri {
            event_type,
            protocol,
            client: None,
            server: None,
            server_octets_sent: None,
            client_octets_sent: None,
            sender: None,
            recipients: Vec::new(),
            status: None,
            total_recipient_count: None,
            message_id: None,
        }
    }

    /// The content octets of EmailIRI (the caller writes `emailIRI [1]`).
    pub fn encode(&self, o: &mut Vec<u8>, obj_id: &[u8]) -> Result<(), EncodeError> {
        put_prim(o, Tag::ctx(0), obj_id);
        put_uint(o, Tag::ctx(1), self.event_type as u64);
        if let Some(a) = self.client {
            IpAddress::host(a.ip()).encode(o, Tag::ctx_cons(2));
        }
        if let Some(a) = self.server {
            IpAddress::host(a.ip()).encode(o, Tag::ctx_cons(3));
        }
        if let Some(a) = self.client {
            put_uint(o, Tag::ctx(4), a.port().into());
        }
        if let Some(a) = self.server {
            put_uint(o, Tag::ctx(5), a.port().into());
        }
        if let Some(n) = self.server_octets_sent {
            put_uint(o, Tag::ctx(6), n);
        }
        if let Some(n) = self.client_octets_sent {
            put_uint(o, Tag::ctx(7), n);
        }
        put_uint(o, Tag::ctx(8), self.protocol as u64);
        if let Some(s) = &self.sender {
            put_prim(o, Tag::ctx(9), s.as_bytes());
        }
        if !self.recipients.is_empty() {
            put_cons(o, Tag::ctx_cons(10), 0, |o| {
                for r in &self.recipients {
                    put_prim(o, Tag::UTF8_STRING, r.as_bytes());
                }
            });
        }
        if let Some(s) = self.status {
            put_uint(o, Tag::ctx(11), s as u64);
        }
        if let Some(n) = self.total_recipient_count {
            put_uint(o, Tag::ctx(12), n.into());
        }
        if let Some(m) = &self.message_id {
            put_prim(o, Tag::ctx(13), m);
        }
        Ok(())
    }
}

/// One EmailCC: a whole message (`application`) or a segment of one.
#[derive(Copy, Clone, Debug)]
pub struct EmailCc<'a> {
    pub format: EmailFormat,
    pub content: &'a [u8],
}

impl EmailCc<'_> {
    /// The content octets of EmailCC (the caller writes `emailCC [1]`).
    pub fn encode(&self, o: &mut Vec<u8>, obj_id: &[u8]) {
        put_prim(o, Tag::ctx(0), obj_id);
        put_uint(o, Tag::ctx(1), self.format as u64);
        put_prim(o, Tag::ctx(2), self.content);
    }
}

/// One step of delivering content too large for one PDU.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    /// A TRI PDU with firstSegmentFlag, sent before the first piece.
    First,
    /// One piece of the content, in its own CC PDU.
    Piece(&'a [u8]),
    /// A TRI PDU with lastSegmentFlag, sent after the last piece.
    Last,
}

/// Splits application content (a mail, a file) into PDUs of at most `max` content bytes.
/// Content that fits in one PDU is one `Piece` with no flags; larger content is bracketed by
/// firstSegmentFlag and lastSegmentFlag TRI PDUs (TS 102 232-1 TRIPayload \[5\]/\[6\]), all on the
/// same (LIID, CIN) so that the LEMF reassembles by sequence number.
pub fn segments(content: &[u8], max: usize) -> impl Iterator<Item = Segment<'_>> {
    let max = max.max(1);
    let split = content.len() > max;
    let first = split.then_some(Segment::First);
    let last = split.then_some(Segment::Last);
    let pieces: Box<dyn Iterator<Item = Segment<'_>>> = if content.is_empty() {
        Box::new(std::iter::once(Segment::Piece(content)))
    } else {
        Box::new(content.chunks(max).map(Segment::Piece))
    };
    first.into_iter().chain(pieces).chain(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segmenting_brackets_only_split_content() {
        let one: Vec<_> = segments(b"abc", 3).collect();
        assert_eq!(one, [Segment::Piece(b"abc")]);
        let three: Vec<_> = segments(b"abcdefg", 3).collect();
        assert_eq!(
            three,
            [Segment::First, Segment::Piece(b"abc"), Segment::Piece(b"def"), Segment::Piece(b"g"), Segment::Last]
        );
    }
}
