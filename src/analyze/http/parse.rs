//! Pure HTTP/1.x parsers: bytes in, a parsed item (or "not yet", or "not HTTP") out.
//!
//! No-panic contract: every function here takes arbitrary bytes; slices are only taken after a
//! length check or through `get`, numbers are parsed with overflow checks.

/// Methods a probe or a resync accepts (RFC 9110, WebDAV, a few common extensions). The parser
/// itself takes any token once the connection is known to be HTTP.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"MKCALENDAR",
    b"ACL",
    b"PURGE",
];

/// Longest line a probe looks at before saying no.
const PROBE_LINE: usize = 8192;

/// The answer of a line-shape check on the bytes seen so far.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Yes,
    No,
    /// The bytes so far are a prefix of a matching line.
    Maybe,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Does `b` start with a request line of a known method (`METHOD SP target SP HTTP/d.d EOL`)?
pub fn request_line_shape(b: &[u8]) -> Shape {
    let sp = b.iter().take(16).position(|&c| c == b' ');
    let Some(sp) = sp else {
        // A prefix of a known method is still undecided.
        let head = &b[..b.len().min(16)];
        return if METHODS.iter().any(|m| m.starts_with(head)) { Shape::Maybe } else { Shape::No };
    };
    if !METHODS.contains(&&b[..sp]) {
        return Shape::No;
    }
    let rest = &b[sp + 1..];
    let eol = rest.iter().take(PROBE_LINE).position(|&c| c == b'\n');
    let line = match eol {
        Some(i) => &b[..sp + 1 + i],
        None if rest.len() >= PROBE_LINE => return Shape::No,
        None => {
            return if rest.iter().any(|&c| c < 0x20 && c != b'\r' && c != b'\t') { Shape::No } else { Shape::Maybe }
        }
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match parse_request_line(line) {
        Some(_) => Shape::Yes,
        None => Shape::No,
    }
}

/// Does `b` start with a status line (`HTTP/d.d SP ddd`)?
pub fn status_line_shape(b: &[u8]) -> Shape {
    const P: &[u8] = b"HTTP/1.";
    if b.len() < P.len() {
        return if P.starts_with(b) { Shape::Maybe } else { Shape::No };
    }
    if !b.starts_with(P) {
        return Shape::No;
    }
    let Some(line) = b.get(..b.len().min(13)) else { return Shape::No };
    // "HTTP/1.1 200" is 12 bytes; the 13th must end the code.
    let ok_prefix = |l: &[u8]| -> bool {
        l.iter().enumerate().all(|(i, &c)| match i {
            0..=6 => true,
            7 => c.is_ascii_digit(),
            8 => c == b' ',
            9..=11 => c.is_ascii_digit(),
            _ => c == b' ' || c == b'\r' || c == b'\n',
        })
    };
    if !ok_prefix(line) {
        return Shape::No;
    }
    if line.len() < 13 {
        Shape::Maybe
    } else {
        Shape::Yes
    }
}

/// A request line, borrowed from the header block.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    /// Minor version (HTTP/1.x).
    pub minor: u8,
}

/// `METHOD SP target SP HTTP/1.d` (without the line ending). Any token as method; the target must
/// hold no control character or space.
pub fn parse_request_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let sp1 = line.iter().position(|&c| c == b' ')?;
    let method = &line[..sp1];
    if method.is_empty() || method.len() > 32 || !method.iter().all(|&c| is_tchar(c)) {
        return None;
    }
    let rest = &line[sp1 + 1..];
    let sp2 = rest.iter().rposition(|&c| c == b' ')?;
    let target = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if target.is_empty() || target.iter().any(|&c| c <= b' ' || c == 0x7f) {
        return None;
    }
    let minor = parse_version(version)?;
    Some(RequestLine { method, target, minor })
}

fn parse_version(v: &[u8]) -> Option<u8> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => Some(d - b'0'),
        _ => None,
    }
}

/// `HTTP/1.d SP ddd [SP reason]` -> (minor, status).
pub fn parse_status_line(line: &[u8]) -> Option<(u8, u16)> {
    let v = line.get(..8)?;
    let minor = parse_version(v)?;
    if line.get(8) != Some(&b' ') {
        return None;
    }
    let code = line.get(9..12)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match line.get(12) {
        None | Some(b' ') | Some(b'\t') => {}
        Some(_) => return None,
    }
    let n = code.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
    Some((minor, n))
}

/// Index just past the blank line ending a header block (`LF [CR] LF`), if present.
pub fn header_block_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < b.len() {
        let off = b.get(i..)?.iter().position(|&c| c == b'\n')?;
        let lf = i + off;
        match (b.get(lf + 1), b.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// One header as received (name and value trimmed; value folded if obs-fold was used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A parsed header block.
#[derive(Debug, Default)]
pub struct Head {
    pub start_line: Vec<u8>,
    pub headers: Vec<Header>,
    pub anomalies: Vec<&'static str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    TooManyHeaders,
    Empty,
}

/// Splits a header block (start line + headers, terminator included or not) into lines. Lines
/// without a colon are counted as an anomaly and skipped; obs-fold continuations are joined.
pub fn parse_head(block: &[u8], max_headers: usize) -> Result<Head, HeadError> {
    let mut lines = block.split(|&c| c == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next().ok_or(HeadError::Empty)?;
    if start.is_empty() {
        return Err(HeadError::Empty);
    }
    let mut head = Head { start_line: start.to_vec(), ..Head::default() };
    for line in lines {
        if line.is_empty() {
            break;
        }
        // RFC 9112 2.2: a bare CR inside a header line is replaced by SP before processing (so
        // `\r \rTransfer-Encoding: chunked` is an obs-fold continuation, not a header, as
        // browsers read it: http-evader-289).
        let replaced;
        let line: &[u8] = if line.contains(&b'\r') {
            push_once(&mut head.anomalies, "bare-cr");
            replaced = line.iter().map(|&c| if c == b'\r' { b' ' } else { c }).collect::<Vec<u8>>();
            &replaced
        } else {
            line
        };
        if line[0] == b' ' || line[0] == b'\t' {
            match head.headers.last_mut() {
                Some(h) => {
                    h.value.push(' ');
                    h.value.push_str(String::from_utf8_lossy(line).trim());
                    push_once(&mut head.anomalies, "obs-fold");
                }
                None => push_once(&mut head.anomalies, "bad-header-line"),
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            push_once(&mut head.anomalies, "bad-header-line");
            continue;
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
            // "Name : value" (space before the colon) is a known smuggling vector.
            push_once(&mut head.anomalies, "bad-header-name");
        }
        if head.headers.len() >= max_headers {
            return Err(HeadError::TooManyHeaders);
        }
        head.headers.push(Header {
            name: String::from_utf8_lossy(name).trim().to_ascii_lowercase(),
            value: String::from_utf8_lossy(&line[colon + 1..]).trim().to_string(),
        });
    }
    Ok(head)
}

pub fn push_once(v: &mut Vec<&'static str>, a: &'static str) {
    if !v.contains(&a) {
        v.push(a);
    }
}

impl Head {
    /// The first value of header `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name == name).map(|h| h.value.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |h| h.name == name).map(|h| h.value.as_str())
    }

    /// Comma-separated list values of every `name` header, lower-cased and trimmed.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.all(name)
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// A Content-Length that is not one consistent decimal number (the offending value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad Content-Length {0:?}")]
pub struct BadContentLength(pub String);

/// Content-Length: `Ok(None)` when absent, `Err` when present but not a valid, consistent number.
pub fn content_length(head: &Head) -> Result<Option<u64>, BadContentLength> {
    let mut found: Option<u64> = None;
    for v in head.all("content-length") {
        for part in v.split(',') {
            let n = parse_decimal(part.trim().as_bytes()).ok_or_else(|| BadContentLength(v.to_string()))?;
            match found {
                Some(f) if f != n => return Err(BadContentLength(v.to_string())),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// `1*DIGIT` as RFC 9110 defines a length: leading zeros are allowed (`0050` is 50), and the
/// value must fit in a u64.
pub fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let first = b.iter().position(|&c| c != b'0').unwrap_or(b.len() - 1);
    let b = &b[first..];
    if b.len() > 20 {
        return None;
    }
    b.iter().try_fold(
        0u64,
        |a, &c| if c.is_ascii_digit() { a.checked_mul(10)?.checked_add(u64::from(c - b'0')) } else { None },
    )
}

/// The size of a chunk-size line (`hex [; ext]`, line ending stripped).
pub fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&c| c == b';').unwrap_or(line.len());
    let hex = trim(&line[..end]);
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    hex.iter().try_fold(0u64, |a, &c| {
        let d = (c as char).to_digit(16)?;
        a.checked_mul(16)?.checked_add(u64::from(d))
    })
}

pub fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |i| i + 1);
    b.get(s..e).unwrap_or(&[])
}

/// A parameter of a header value like `multipart/form-data; boundary="x"` or
/// `form-data; name="f"; filename="a.bin"` (name compared case-insensitively; quotes and
/// backslash escapes removed).
pub fn header_param(value: &str, param: &str) -> Option<String> {
    let mut rest = value.split_once(';')?.1;
    loop {
        let t = rest.trim_start_matches([' ', '\t', ';']);
        if t.is_empty() {
            return None;
        }
        let eq = t.find('=')?;
        let name = t[..eq].trim();
        let after = &t[eq + 1..];
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut esc = false;
            let mut end = q.len();
            for (i, c) in q.char_indices() {
                if esc {
                    out.push(c);
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    end = i + 1;
                    break;
                } else {
                    out.push(c);
                }
            }
            (out, q.get(end..).unwrap_or(""))
        } else {
            let e = after.find(';').unwrap_or(after.len());
            (after[..e].trim().to_string(), &after[e..])
        };
        if name.eq_ignore_ascii_case(param) {
            return Some(val);
        }
        rest = next;
    }
}

/// `filename*=UTF-8''na%20me` (RFC 6266/5987) if present, else `filename=`.
pub fn disposition_filename(value: &str) -> Option<String> {
    if let Some(ext) = header_param(value, "filename*") {
        if let Some((_, enc)) = ext.split_once("''") {
            return Some(percent_decode(enc));
        }
    }
    header_param(value, "filename")
}

/// Decodes `%xx` escapes (invalid ones kept as is), lossy UTF-8.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(h) = b.get(i + 1..i + 3) {
                if let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of a request target (origin form or absolute form), without the query.
pub fn target_path(target: &str) -> &str {
    let t = match target.find("://") {
        Some(i) => {
            let after = &target[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => target,
    };
    t.split(['?', '#']).next().unwrap_or("")
}

/// The query of a request target, if any.
pub fn target_query(target: &str) -> Option<&str> {
    let q = target.split_once('?')?.1;
    Some(q.split('#').next().unwrap_or(""))
}

/// A query parameter's (percent-decoded) value; a bare key (`?uploads`) gives "".
pub fn query_param(target: &str, key: &str) -> Option<String> {
    target_query(target)?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// The last non-empty path segment, percent-decoded: the natural file name of a PUT or GET.
pub fn last_segment(target: &str) -> Option<String> {
    let seg = target_path(target).rsplit('/').find(|s| !s.is_empty())?;
    let name = percent_decode(seg);
    (!name.is_empty()).then_some(name)
}

/// Query parameters whose values are credentials, masked in records.
const SECRET_PARAMS: &[&str] =
    &["password", "passwd", "pwd", "pass", "secret", "token", "access_token", "x-amz-signature", "signature", "sig"];

/// The target with credential-like query values replaced by `***` (never put a secret in IRI).
pub fn mask_target(target: &str) -> String {
    let Some((path, q)) = target.split_once('?') else { return target.to_string() };
    let masked: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.iter().any(|s| percent_decode(k).eq_ignore_ascii_case(s)) => {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

/// An OpenStack image service data upload: `PUT /v2/images/<id>/file` (or `/stage`, the
/// interoperable import's staging call), possibly under a path prefix. Returns the image id.
pub fn glance_image_id(method: &str, target: &str) -> Option<String> {
    if method != "PUT" {
        return None;
    }
    let segs: Vec<&str> = target_path(target).split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [.., v, images, id, last]
            if v.starts_with('v') && *images == "images" && (*last == "file" || *last == "stage") =>
        {
            let id = percent_decode(id);
            (!id.is_empty()).then_some(id)
        }
        _ => None,
    }
}

/// S3 facts of a request: bucket and key (path style, or virtual-hosted style from Host).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Target {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

/// Splits an S3 request target. `host` decides virtual-hosted style (`bucket.s3...`).
pub fn s3_target(host: Option<&str>, target: &str) -> S3Target {
    let path = target_path(target).trim_start_matches('/');
    let host =
        host.map(|h| h.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(h, |x| x.0));
    let vhost_bucket = host.and_then(|h| {
        let lower = h.to_ascii_lowercase();
        let i = lower.find(".s3.").or_else(|| lower.find(".s3-"))?;
        (i > 0).then(|| h[..i].to_string())
    });
    let nonempty = |s: &str| (!s.is_empty()).then(|| percent_decode(s));
    match vhost_bucket {
        Some(b) => S3Target { bucket: Some(b), key: nonempty(path) },
        None => {
            let (b, k) = path.split_once('/').unwrap_or((path, ""));
            S3Target { bucket: nonempty(b), key: nonempty(k) }
        }
    }
}

/// `<Part><PartNumber>n</PartNumber><ETag>e</ETag></Part>` entries of a CompleteMultipartUpload
/// body, in document order. A tolerant scan, not an XML parser: the body comes from the target.
pub fn s3_complete_parts(xml: &[u8], max: usize) -> Vec<(u32, Option<String>)> {
    let text = String::from_utf8_lossy(xml);
    let mut out = Vec::new();
    for part in text.split("<Part>").skip(1) {
        if out.len() >= max {
            break;
        }
        let body = part.split("</Part>").next().unwrap_or("");
        let num = tag(body, "PartNumber").and_then(|n| n.trim().parse::<u32>().ok());
        let etag = tag(body, "ETag").map(|e| e.replace("&quot;", "").trim_matches('"').to_string());
        if let Some(n) = num {
            out.push((n, etag));
        }
    }
    out
}

fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let a = s.find(&open)? + open.len();
    let b = s[a..].find(&close)? + a;
    s.get(a..b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_shapes() {
        assert_eq!(request_line_shape(b"GE"), Shape::Maybe);
        assert_eq!(request_line_shape(b"GET /x HTT"), Shape::Maybe);
        assert_eq!(request_line_shape(b"GET /x HTTP/1.1\r\n"), Shape::Yes);
        assert_eq!(request_line_shape(b"PUT /a%20b HTTP/1.0\n"), Shape::Yes);
        assert_eq!(request_line_shape(b"EHLO mail\r\n"), Shape::No);
        assert_eq!(request_line_shape(b"USER joe\r\n"), Shape::No);
        assert_eq!(request_line_shape(b"OPTIONS rtsp://h/ RTSP/1.0\r\n"), Shape::No);
        assert_eq!(request_line_shape(b"GET /x HTTP/2.0\r\n"), Shape::No);
        assert_eq!(request_line_shape(b"\x16\x03\x01"), Shape::No);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_line_shape(b"HTTP/1.1 200 OK\r\n"), Shape::Yes);
        assert_eq!(status_line_shape(b"HTTP/1"), Shape::Maybe);
        assert_eq!(status_line_shape(b"HTTP/1.1 20"), Shape::Maybe);
        assert_eq!(status_line_shape(b"220 ftp ready"), Shape::No);
        assert_eq!(parse_status_line(b"HTTP/1.1 100 Continue"), Some((1, 100)));
        assert_eq!(parse_status_line(b"HTTP/1.0 404"), Some((0, 404)));
        assert_eq!(parse_status_line(b"HTTP/1.0 4040"), None);
    }

    #[test]
    fn header_blocks() {
        assert_eq!(header_block_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nBODY", 0), Some(24));
        assert_eq!(header_block_end(b"GET / HTTP/1.1\nA: b\n\nBODY", 0), Some(21));
        assert_eq!(header_block_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        let h = parse_head(b"PUT /x HTTP/1.1\r\nHost: a\r\nX: 1\r\n  2\r\nContent-Length: 5, 5\r\n\r\n", 100).unwrap();
        assert_eq!(h.get("host"), Some("a"));
        assert_eq!(h.get("x"), Some("1 2"));
        assert_eq!(content_length(&h), Ok(Some(5)));
        assert_eq!(parse_decimal(b"00000000000000000000000000000050"), Some(50));
        assert_eq!(parse_decimal(b"000"), Some(0));
        assert_eq!(parse_decimal(b"0x5"), None);
        assert_eq!(parse_decimal(b"99999999999999999999999"), None);
        assert!(h.anomalies.contains(&"obs-fold"));
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n", 1).unwrap_err(), HeadError::TooManyHeaders);
    }

    #[test]
    fn chunk_sizes_and_numbers() {
        assert_eq!(parse_chunk_size(b"1a;ext=1"), Some(26));
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"ffffffffffffffffff"), None);
        assert_eq!(parse_chunk_size(b"zz"), None);
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
    }

    #[test]
    fn params_names_and_services() {
        let ct = "multipart/form-data; boundary=\"--x y\"; charset=utf-8";
        assert_eq!(header_param(ct, "boundary").as_deref(), Some("--x y"));
        assert_eq!(header_param(ct, "charset").as_deref(), Some("utf-8"));
        let cd = "form-data; name=\"file\"; filename=\"a \\\"q\\\".bin\"";
        assert_eq!(disposition_filename(cd).as_deref(), Some("a \"q\".bin"));
        assert_eq!(disposition_filename("attachment; filename*=UTF-8''%E2%82%AC.txt").as_deref(), Some("€.txt"));
        assert_eq!(last_segment("/upload/joe%20disk.img?x=1").as_deref(), Some("joe disk.img"));
        assert_eq!(last_segment("http://h:8080/a/b/"), Some("b".into()));
        assert_eq!(last_segment("/"), None);
        assert_eq!(glance_image_id("PUT", "/v2/images/8a1c-42/file").as_deref(), Some("8a1c-42"));
        assert_eq!(glance_image_id("PUT", "/image/v2/images/abc/stage").as_deref(), Some("abc"));
        assert_eq!(glance_image_id("GET", "/v2/images/abc/file"), None);
        assert_eq!(query_param("/b/k?partNumber=3&uploadId=u%2B1", "uploadId").as_deref(), Some("u+1"));
        assert_eq!(query_param("/b/k?uploads", "uploads").as_deref(), Some(""));
        assert_eq!(
            s3_target(Some("s3.example"), "/bkt/dir/obj.bin?x"),
            S3Target { bucket: Some("bkt".into()), key: Some("dir/obj.bin".into()) }
        );
        assert_eq!(
            s3_target(Some("bkt.s3.us-east-1.amazonaws.com:443"), "/obj"),
            S3Target { bucket: Some("bkt".into()), key: Some("obj".into()) }
        );
        assert_eq!(mask_target("/a?user=joe&password=hunter2"), "/a?user=joe&password=***");
        let xml = b"<CompleteMultipartUpload><Part><ETag>\"aa\"</ETag><PartNumber>2</PartNumber></Part>\
<Part><PartNumber>1</PartNumber><ETag>&quot;bb&quot;</ETag></Part></CompleteMultipartUpload>";
        assert_eq!(s3_complete_parts(xml, 10), vec![(2, Some("aa".into())), (1, Some("bb".into()))]);
    }
}
