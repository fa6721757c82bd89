//! Pure FTP parsers (RFC 959, 2428, 3659): bytes in, a parsed item out, nothing kept.
//!
//! No-panic contract: every function here takes untrusted wire bytes; none indexes without a
//! length check, none unwraps a data-derived value, and numbers are parsed with overflow checks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A command line: the verb upper-cased, the argument as sent (lossy UTF-8, trimmed of the line
/// end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub verb: String,
    pub arg: String,
}

/// Longest verb accepted: RFC 959 verbs have 3 or 4 letters; a few extensions (`CLNT`, `HOST`,
/// `XPWD`) still fit, `STARTTLS`-like words do not exist in FTP.
const MAX_VERB: usize = 4;

/// Parses one command line (without its line end). `None` when the line is not shaped like an FTP
/// command (a verb of 3-4 ASCII letters, then a space or the end).
pub fn command(line: &[u8]) -> Option<Command> {
    let line = trim_eol(line);
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (line.get(..i)?, line.get(i + 1..).unwrap_or(&[])),
        None => (line, &[][..]),
    };
    if verb.len() < 3 || verb.len() > MAX_VERB || !verb.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
    Some(Command { verb, arg: String::from_utf8_lossy(arg).into_owned() })
}

/// One reply line: the code and the character after it (`-` opens a multi-line reply, ` ` or
/// the end of the line closes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    pub code: u16,
    pub more: bool,
    pub text: &'a [u8],
}

/// Parses a line that starts with a reply code (`NNN`, `NNN-`, `NNN text`). `None` when the line
/// does not start with three digits (a continuation line of a multi-line reply, or not FTP).
pub fn reply_line(line: &[u8]) -> Option<ReplyLine<'_>> {
    let line = trim_eol(line);
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..600).contains(&code) {
        return None;
    }
    match line.get(3) {
        None => Some(ReplyLine { code, more: false, text: &[] }),
        Some(b'-') => Some(ReplyLine { code, more: true, text: line.get(4..).unwrap_or(&[]) }),
        Some(b' ') => Some(ReplyLine { code, more: false, text: line.get(4..).unwrap_or(&[]) }),
        Some(_) => None,
    }
}

/// Strips a trailing LF and CR.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A decimal number of at most `max` value in `s`; `None` on anything else.
fn number(s: &str, max: u64) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|n| *n <= max)
}

/// `h1,h2,h3,h4,p1,p2` (PORT argument, and inside a 227 reply's text): the first run of six
/// comma-separated numbers.
pub fn host_port(text: &str) -> Option<SocketAddr> {
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if bytes.get(start).is_some_and(u8::is_ascii_digit) && (start == 0 || !bytes[start - 1].is_ascii_digit()) {
            let end = bytes[start..]
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b',' || *b == b' '))
                .map_or(bytes.len(), |p| start + p);
            let fields: Vec<&str> = text.get(start..end)?.split(',').collect();
            if fields.len() >= 6 {
                let n: Option<Vec<u64>> = fields.iter().take(6).map(|f| number(f, 255)).collect();
                if let Some(n) = n {
                    let ip = Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
                    let port = ((n[4] as u16) << 8) | n[5] as u16;
                    return Some(SocketAddr::new(IpAddr::V4(ip), port));
                }
            }
            start = end.max(start + 1);
        } else {
            start += 1;
        }
    }
    None
}

/// EPRT argument (RFC 2428): `<d>proto<d>addr<d>port<d>`, `d` any printable character.
pub fn eprt(arg: &str) -> Option<SocketAddr> {
    let arg = arg.trim();
    let d = arg.chars().next()?;
    let mut parts = arg.split(d);
    let (empty, proto, addr, port, tail) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !empty.is_empty() || !tail.is_empty() {
        return None;
    }
    let ip: IpAddr = match proto {
        "1" => IpAddr::V4(addr.parse().ok()?),
        "2" => IpAddr::V6(addr.parse().ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, number(port, u64::from(u16::MAX))? as u16))
}

/// The port of a 229 reply (RFC 2428): `(<d><d><d>port<d>)` somewhere in the text.
pub fn epsv_port(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = text.get(open + 1..)?;
    let close = inner.find(')')?;
    let inner = inner.get(..close)?;
    let d = inner.chars().next()?;
    let mut parts = inner.split(d);
    let (a, b, c, port, tail) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !(a.is_empty() && b.is_empty() && c.is_empty() && tail.is_empty()) {
        return None;
    }
    Some(number(port, u64::from(u16::MAX))? as u16)
}

/// The size announced in a 150 reply, `... (12345 bytes)`, as many servers write it.
pub fn announced_size(text: &str) -> Option<u64> {
    let end = text.rfind(" bytes)")?;
    let open = text.get(..end)?.rfind('(')?;
    number(text.get(open + 1..end)?, u64::MAX)
}

/// The name a server gave to a STOU upload (RFC 1123 4.1.2.9: `FILE: name`).
pub fn stou_name(text: &str) -> Option<String> {
    let at = text.find("FILE:")?;
    let name = text.get(at + 5..)?.trim();
    let name = name.split(['\n', '\r']).next()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The quoted path of a 257 reply (`257 "/dir" is current`), with `""` unescaped to `"`.
pub fn quoted_path(text: &str) -> Option<String> {
    let rest = text.get(text.find('"')? + 1..)?;
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// The representation type of a TYPE argument: `A` (ASCII, with or without a format), `I`, `E`,
/// `L n`. `None` for anything else.
pub fn type_code(arg: &str) -> Option<char> {
    let c = arg.trim().chars().next()?.to_ascii_uppercase();
    matches!(c, 'A' | 'I' | 'E' | 'L').then_some(c)
}

/// A REST argument (RFC 3659 stream-mode restart marker: a byte count).
pub fn rest_offset(arg: &str) -> Option<u64> {
    number(arg, u64::MAX)
}

/// The data connection one line of a control connection announces, read on its own: a 227
/// reply's address (`227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`), a PORT or an EPRT
/// command's. A 229 reply names no address (its data connection goes to the control
/// connection's server). For readers that see a segment at a time, without the dialogue (the
/// sharded dispatch, `pipeline::announced`); the control analyzer follows the dialogue itself.
pub fn announced(line: &[u8]) -> Option<SocketAddr> {
    let line = trim_eol(line);
    if let Some(r) = reply_line(line) {
        return if r.code == 227 { host_port(std::str::from_utf8(r.text).ok()?) } else { None };
    }
    let verb = line.get(..5)?;
    if verb.eq_ignore_ascii_case(b"PORT ") {
        host_port(std::str::from_utf8(line.get(5..)?).ok()?)
    } else if verb.eq_ignore_ascii_case(b"EPRT ") {
        eprt(std::str::from_utf8(line.get(5..)?).ok()?)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_read_line_by_line() {
        let a = |s: &str| announced(s.as_bytes()).map(|a| a.to_string());
        assert_eq!(a("227 Entering Passive Mode (198,51,100,12,234,103).\r\n").as_deref(), Some("198.51.100.12:60007"));
        assert_eq!(a("PORT 10,0,0,5,4,1\r\n").as_deref(), Some("10.0.0.5:1025"));
        assert_eq!(a("port 10,0,0,5,4,1").as_deref(), Some("10.0.0.5:1025"));
        assert_eq!(a("EPRT |2|2001:db8::7|6446|\r\n").as_deref(), Some("[2001:db8::7]:6446"));
        // No address of its own, or not an announcement.
        assert_eq!(a("229 Entering Extended Passive Mode (|||6446|)"), None);
        assert_eq!(a("200 PORT command successful (10,0,0,5,4,1)"), None);
        assert_eq!(a("227-multi-line (10,0,0,5,4,1)"), Some("10.0.0.5:1025".into()));
        assert_eq!(a("PORT"), None);
        assert_eq!(a("PORTS 10,0,0,5,4,1"), None);
        assert_eq!(a("227 (300,0,0,5,4,1)"), None);
        assert_eq!(announced(&[0x32, 0x32, 0x37, 0x20, 0xff, 0xfe]), None);
    }

    #[test]
    fn commands() {
        assert_eq!(command(b"USER joe\r\n"), Some(Command { verb: "USER".into(), arg: "joe".into() }));
        assert_eq!(command(b"pasv"), Some(Command { verb: "PASV".into(), arg: String::new() }));
        assert_eq!(command(b"STOR my file.bin\r"), Some(Command { verb: "STOR".into(), arg: "my file.bin".into() }));
        assert_eq!(command(b"EHLO5 x"), None);
        assert_eq!(command(b"GET / HTTP/1.1"), Some(Command { verb: "GET".into(), arg: "/ HTTP/1.1".into() }));
        assert_eq!(command(b"STARTTLS"), None);
        assert_eq!(command(b""), None);
    }

    #[test]
    fn replies() {
        assert_eq!(reply_line(b"220 ready\r\n"), Some(ReplyLine { code: 220, more: false, text: b"ready" }));
        assert_eq!(reply_line(b"211-Features:"), Some(ReplyLine { code: 211, more: true, text: b"Features:" }));
        assert_eq!(reply_line(b"200"), Some(ReplyLine { code: 200, more: false, text: b"" }));
        assert_eq!(reply_line(b" EPRT"), None);
        assert_eq!(reply_line(b"2000 x"), None);
        assert_eq!(reply_line(b"099 x"), None);
        assert_eq!(reply_line(b"22"), None);
    }

    #[test]
    fn addresses() {
        // Hand-computed: 234*256+104 = 60008 (ftp-upload.pcap's PASV reply).
        assert_eq!(
            host_port("Entering passive mode (203,0,113,10,234,104)."),
            Some("203.0.113.10:60008".parse().unwrap())
        );
        assert_eq!(host_port("198,51,100,7,165,97"), Some("198.51.100.7:42337".parse().unwrap()));
        assert_eq!(host_port("Entering Passive Mode 1,2,3,4,5"), None);
        assert_eq!(host_port("(256,0,0,1,1,1)"), None);
        assert_eq!(host_port("=10,0,0,1,4,1"), Some("10.0.0.1:1025".parse().unwrap()));
        assert_eq!(eprt("|2|2001:db8::7|5282|"), Some("[2001:db8::7]:5282".parse().unwrap()));
        assert_eq!(eprt("!1!10.0.0.1!21!"), Some("10.0.0.1:21".parse().unwrap()));
        assert_eq!(eprt("|1|10.0.0.1|70000|"), None);
        assert_eq!(eprt("|3|x|1|"), None);
        assert_eq!(epsv_port("Entering extended passive mode (|||60000|)."), Some(60000));
        assert_eq!(epsv_port("ok (!!!21!)"), Some(21));
        assert_eq!(epsv_port("(|||x|)"), None);
        assert_eq!(epsv_port("(|"), None);
    }

    #[test]
    fn reply_texts() {
        assert_eq!(announced_size("Opening BINARY mode data connection for x (16557 bytes)."), Some(16557));
        assert_eq!(announced_size("Opening data connection"), None);
        assert_eq!(stou_name("FILE: up.1"), Some("up.1".into()));
        assert_eq!(quoted_path("\"/a \"\"b\"\"\" is current"), Some("/a \"b\"".into()));
        assert_eq!(type_code("a n"), Some('A'));
        assert_eq!(type_code("X"), None);
        assert_eq!(rest_offset("100"), Some(100));
        assert_eq!(rest_offset("-1"), None);
    }
}
