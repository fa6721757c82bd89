//! Pure TLS wire parsers: record headers, handshake headers, ClientHello, ServerHello and the
//! TLS 1.2 Certificate message.
//!
//! No-panic contract: every function takes untrusted bytes and returns `None` (or a short
//! result) on anything malformed; reads go through [`Reader`], which checks every length before
//! slicing. Nothing here allocates more than the input's own size.

/// Record content types (RFC 8446 §5.1).
pub const CT_CHANGE_CIPHER_SPEC: u8 = 20;
pub const CT_ALERT: u8 = 21;
pub const CT_HANDSHAKE: u8 = 22;
pub const CT_APPLICATION_DATA: u8 = 23;

/// Handshake message types (RFC 8446 §4, RFC 5246 §7.4).
pub const HS_CLIENT_HELLO: u8 = 1;
pub const HS_SERVER_HELLO: u8 = 2;
pub const HS_CERTIFICATE: u8 = 11;
pub const HS_SERVER_HELLO_DONE: u8 = 14;

/// Largest record fragment a peer may send: 2^14 plus the TLS 1.2 ciphertext expansion
/// (RFC 5246 §6.2.3); anything larger is not TLS.
pub const MAX_RECORD: usize = (1 << 14) + 2048;

/// `SHA-256("HelloRetryRequest")`: a ServerHello with this random is a HelloRetryRequest
/// (RFC 8446 §4.1.3).
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11,
    0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Extension types that matter here.
pub const EXT_SERVER_NAME: u16 = 0x0000;
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
pub const EXT_ALPN: u16 = 0x0010;
pub const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// Caps on what a hello may make us keep (a 64 KiB hello could otherwise list 32k values).
const MAX_ALPN: usize = 32;
const MAX_NAME: usize = 255;

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ..., 0xfafa.
pub fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A bounds-checked cursor over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    /// A vector with a one-byte length prefix.
    pub fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    /// A vector with a two-byte length prefix.
    pub fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    /// A vector with a three-byte length prefix.
    pub fn vec24(&mut self) -> Option<&'a [u8]> {
        let n = self.u24()?;
        self.take(n)
    }
}

/// A TLS record header (RFC 8446 §5.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: u8,
    pub version: u16,
    pub len: usize,
}

/// The header at the start of `b`, `None` if fewer than 5 bytes.
pub fn record_header(b: &[u8]) -> Option<RecordHeader> {
    let h = b.get(..5)?;
    Some(RecordHeader {
        content_type: h[0],
        version: u16::from_be_bytes([h[1], h[2]]),
        len: usize::from(u16::from_be_bytes([h[3], h[4]])),
    })
}

impl RecordHeader {
    /// Plausible as TLS: a known content type, an SSL 3.0..TLS 1.3 record version (TLS 1.3
    /// keeps 0x0301/0x0303 on the wire) and a length within the protocol limit.
    pub fn plausible(&self) -> bool {
        (CT_CHANGE_CIPHER_SPEC..=CT_APPLICATION_DATA).contains(&self.content_type)
            && (0x0300..=0x0304).contains(&self.version)
            && self.len <= MAX_RECORD
    }
}

/// A handshake message header: type and body length (RFC 8446 §4).
pub fn handshake_header(b: &[u8]) -> Option<(u8, usize)> {
    let mut r = Reader::new(b);
    Some((r.u8()?, r.u24()?))
}

/// What a ClientHello says that tapir keeps (GREASE values kept as sent; the fingerprints drop
/// them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    /// The first host_name of the server_name extension.
    pub sni: Option<String>,
    /// ALPN protocol names, raw, in the order offered (at most `MAX_ALPN`).
    pub alpn: Vec<Vec<u8>>,
    pub signature_algorithms: Vec<u16>,
    pub supported_versions: Vec<u16>,
}

/// What a ServerHello says that tapir keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    /// The supported_versions extension's selected version (TLS 1.3).
    pub selected_version: Option<u16>,
    pub alpn: Option<Vec<u8>>,
    /// A HelloRetryRequest (RFC 8446 §4.1.4), not the final ServerHello.
    pub retry: bool,
}

impl ServerHello {
    /// The negotiated version: supported_versions wins over the frozen legacy field.
    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }
}

/// Host names are DNS names (RFC 6066 §3): keep printable ASCII, escape the rest, cap the size.
pub fn printable(b: &[u8]) -> String {
    let b = &b[..b.len().min(MAX_NAME)];
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'\\' {
            s.push(char::from(c));
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

fn u16_list(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

fn parse_alpn_list(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut r = Reader::new(data);
    let mut list = Reader::new(r.vec16()?);
    let mut out = Vec::new();
    while !list.is_empty() {
        let name = list.vec8()?;
        if out.len() < MAX_ALPN {
            out.push(name.to_vec());
        }
    }
    Some(out)
}

fn parse_sni(data: &[u8]) -> Option<String> {
    let mut r = Reader::new(data);
    let mut list = Reader::new(r.vec16()?);
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 {
            return Some(printable(name));
        }
    }
    None
}

/// Parses a ClientHello body (the handshake header removed). Extensions it cannot read end the
/// parse with what was read so far, flagged by the `bool` (false = malformed).
pub fn client_hello(body: &[u8]) -> Option<(ClientHello, bool)> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16()?;
    r.take(32)?;
    r.vec8()?;
    let suites = r.vec16()?;
    r.vec8()?;
    let mut ch = ClientHello { legacy_version, ciphers: u16_list(suites), ..ClientHello::default() };
    if r.is_empty() {
        // Pre-extension hellos (SSL 3.0, old TLS 1.0 stacks) end here.
        return Some((ch, suites.len() % 2 == 0));
    }
    let Some(exts) = r.vec16() else { return Some((ch, false)) };
    let mut e = Reader::new(exts);
    while !e.is_empty() {
        let (Some(ty), Some(data)) = (e.u16(), e.vec16()) else { return Some((ch, false)) };
        ch.extensions.push(ty);
        let ok = match ty {
            EXT_SERVER_NAME => {
                if ch.sni.is_none() {
                    ch.sni = parse_sni(data);
                }
                true
            }
            EXT_ALPN => parse_alpn_list(data).map(|l| ch.alpn = l).is_some(),
            EXT_SIGNATURE_ALGORITHMS => {
                Reader::new(data).vec16().map(|l| ch.signature_algorithms = u16_list(l)).is_some()
            }
            EXT_SUPPORTED_VERSIONS => Reader::new(data).vec8().map(|l| ch.supported_versions = u16_list(l)).is_some(),
            _ => true,
        };
        if !ok {
            return Some((ch, false));
        }
    }
    Some((ch, suites.len() % 2 == 0))
}

/// Parses a ServerHello body (the handshake header removed).
pub fn server_hello(body: &[u8]) -> Option<(ServerHello, bool)> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16()?;
    let random = r.take(32)?;
    r.vec8()?;
    let cipher = r.u16()?;
    r.u8()?;
    let mut sh = ServerHello { legacy_version, cipher, retry: random == HRR_RANDOM, ..ServerHello::default() };
    if r.is_empty() {
        return Some((sh, true));
    }
    let Some(exts) = r.vec16() else { return Some((sh, false)) };
    let mut e = Reader::new(exts);
    while !e.is_empty() {
        let (Some(ty), Some(data)) = (e.u16(), e.vec16()) else { return Some((sh, false)) };
        sh.extensions.push(ty);
        let ok = match ty {
            EXT_SUPPORTED_VERSIONS => Reader::new(data).u16().map(|v| sh.selected_version = Some(v)).is_some(),
            EXT_ALPN => parse_alpn_list(data).map(|l| sh.alpn = l.into_iter().next()).is_some(),
            _ => true,
        };
        if !ok {
            return Some((sh, false));
        }
    }
    Some((sh, true))
}

/// The DER certificates of a TLS 1.0–1.2 Certificate message body (RFC 5246 §7.4.2), leaf
/// first. `None` if the outer list is malformed; a truncated entry ends the list.
pub fn certificate_list(body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut r = Reader::new(body);
    let mut list = Reader::new(r.vec24()?);
    let mut out = Vec::new();
    while !list.is_empty() {
        match list.vec24() {
            Some(der) => out.push(der),
            None => break,
        }
    }
    Some(out)
}

/// A version as people write it.
pub fn version_name(v: u16) -> String {
    match v {
        0x0002 => "SSL 2.0".into(),
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        v if v >> 8 == 0x7f => format!("TLS 1.3 draft {}", v & 0xff),
        v => format!("0x{v:04x}"),
    }
}

/// IANA names of the cipher suites commonly seen; others are shown by number.
pub fn cipher_name(c: u16) -> Option<&'static str> {
    Some(match c {
        0x0004 => "TLS_RSA_WITH_RC4_128_MD5",
        0x0005 => "TLS_RSA_WITH_RC4_128_SHA",
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0033 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x0039 => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256",
        0x003d => "TLS_RSA_WITH_AES_256_CBC_SHA256",
        0x0067 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
        0x006b => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0x1305 => "TLS_AES_128_CCM_8_SHA256",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc011 => "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc023 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc024 => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xc028 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xccaa => "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values_are_the_sixteen_of_rfc8701() {
        let all: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        let want: Vec<u16> = (0..16u16).map(|i| (i << 12) | 0x0a00 | (i << 4) | 0x0a).collect();
        assert_eq!(all, want);
        assert_eq!(all[0], 0x0a0a);
        assert_eq!(all[15], 0xfafa);
    }

    #[test]
    fn truncated_inputs_give_none_not_panics() {
        assert_eq!(record_header(&[0x16, 3, 1, 0]), None);
        assert_eq!(handshake_header(&[1, 0]), None);
        assert_eq!(client_hello(&[3, 3, 0]), None);
        assert_eq!(server_hello(&[]), None);
        assert_eq!(certificate_list(&[0, 0]), None);
        // A list that claims more than it has ends at what is there.
        assert_eq!(certificate_list(&[0, 0, 4, 0, 0, 9, 1]), Some(vec![]));
    }

    #[test]
    fn printable_escapes_control_and_caps_length() {
        assert_eq!(printable(b"a\x00b\\"), "a\\x00b\\x5c");
        assert_eq!(printable(&[b'x'; 1000]).len(), 255);
    }
}
