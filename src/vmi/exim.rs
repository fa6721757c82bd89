//! Mail waiting in an Exim queue (`/var/spool/exim4/input/` on Debian, `/var/spool/exim/input/`
//! on RHEL): like a Postfix queue ([`super::mailq`]), it holds what an offline VM, or one whose
//! mail is flushed later, has not sent yet.
//!
//! Exim keeps each message in two files named after its id: `<id>-H`, the envelope and the
//! headers, and `<id>-D`, the body. The id is three base-62 fields, `tttttt-pppppp-ss` (16
//! characters) up to Exim 4.96 and `tttttt-ppppppppppp-ssss` (23) from 4.97; with
//! `split_spool_directory` the files are in `input/<c>/`, `<c>` being the id's sixth character.
//!
//! The `-H` file is lines: `<id>-H`; the login, uid and gid of the submitter; `<sender>` (`<>`
//! for a bounce); the arrival time and the count of delay warnings sent; options, each starting
//! with `-` (`--` when the value is tainted), of which `-aclc`/`-aclm <name> <length>` is followed
//! by a value of that many bytes (newlines allowed: it is skipped by its length, never read as
//! lines); the tree of addresses not to deliver to (`XX` when empty, else one `YN addr` line a
//! node, `Y`/`N` telling whether a left and a right child follow); the recipient count and one
//! line a recipient (the address, perhaps followed by `orcpt len,dsn errors_to len,pno#3` and
//! older variants, read right to left as Exim does); a blank line; then the headers. Each header
//! is `NNNc ` and `NNN` bytes of text (continuation lines included): `c` is a letter for the
//! headers Exim knows (`P` Received, `F` From, `T` To, `I` Message-Id...), a space for others,
//! and `*` for one that is no longer part of the message (rewritten, removed by an ACL, `Bcc:`
//! under `-t`): those are left out, as Exim leaves them out when it delivers.
//!
//! The `-D` file is `<id>-D` then the body as is (no dot-stuffing); with the option
//! `-spool_file_wireformat` (a message received by BDAT) its lines end in CRLF, made LF here as a
//! local delivery does. The message is rebuilt as Exim writes it when it delivers: the live
//! headers, a blank line, the body. The recipients are the envelope's list, including any
//! already delivered (those are also in the tree, which is not reported).
//!
//! Everything is bounded: the envelope lines, the recipients (Exim's own limit), the headers
//! read, the message size; counts and lengths in the file are never used to allocate.

use super::mailq::Queued;

/// Option and tree lines read at most.
const MAX_LINES: usize = 1 << 16;
/// Recipients at most: Exim refuses a spool file with more.
const MAX_RECIPIENTS: usize = 16384;
/// Header entries read at most.
const MAX_HEADERS: usize = 1 << 16;

/// Whether `s` is an Exim message id: old (6-6-2) or 4.97+ (6-11-4) format, base 62.
pub fn is_message_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    (lens == [6, 6, 2] || lens == [6, 11, 4]) && parts.iter().all(|p| p.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// Whether `path` is the `-H` file of a message in an Exim spool: `input/` of the Debian or RHEL
/// spool directory, of one of its named queues (`<spool>/<queue>/input/`), or a split spool's
/// `input/<c>/` (`<c>` the id's sixth character). `msglog/` (delivery logs) is not mail.
pub fn is_exim_header_file(path: &str) -> bool {
    let Some(rest) = ["/var/spool/exim4/", "/var/spool/exim/"].iter().find_map(|s| path.strip_prefix(s)) else {
        return false;
    };
    let rest = match rest.strip_prefix("input/") {
        Some(r) => r,
        // A named queue.
        None => match rest.split_once('/') {
            Some((queue, r)) if !queue.is_empty() && queue != "msglog" => match r.strip_prefix("input/") {
                Some(r) => r,
                None => return false,
            },
            _ => return false,
        },
    };
    let (subdir, name) = match rest.split_once('/') {
        Some((d, name)) => (Some(d), name),
        None => (None, rest),
    };
    let Some(id) = name.strip_suffix("-H").filter(|id| is_message_id(id)) else { return false };
    subdir.is_none_or(|d| d.len() == 1 && d.as_bytes()[0] == id.as_bytes()[5])
}

/// The `-D` file beside the `-H` file at `header_path`.
pub fn data_file_path(header_path: &str) -> String {
    format!("{}-D", header_path.strip_suffix("-H").unwrap_or(header_path))
}

/// Lines of a byte slice, with a cursor that can also skip a number of bytes.
struct Lines<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Lines<'a> {
    /// The next line without its LF; `None` at the end or if the file ends within it.
    fn line(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.at..)?;
        let end = rest.iter().position(|&c| c == b'\n')?;
        self.at += end + 1;
        Some(&rest[..end])
    }
}

fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

/// `-?[0-9]+`, as Exim writes uids and gids.
fn is_int(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
}

/// The bytes after an option line that are its value (`-aclc`, `-aclm` and the old `-acl`
/// carry one): 0 for any other option, `None` if malformed.
fn option_value_len(line: &[u8]) -> Option<usize> {
    let mut var = line.strip_prefix(b"-")?;
    var = var.strip_prefix(b"-").unwrap_or(var);
    // `--(lookup)name`: a value quoted for a lookup type.
    if let Some(q) = var.strip_prefix(b"(") {
        var = &q[q.iter().position(|&c| c == b')')? + 1..];
    }
    let count = if var.starts_with(b"aclc ") || var.starts_with(b"aclm ") {
        // `aclX <name> <count>`
        let rest = text(&var[5..])?;
        rest.split_once(' ')?.1.trim().parse::<usize>().ok()?
    } else if let Some(rest) = var.strip_prefix(b"acl ") {
        // `acl <index> <count>`: old Exims, still read by new ones.
        let (index, count) = text(rest)?.trim().split_once(' ')?;
        index.parse::<u32>().ok().filter(|&i| i < 20)?;
        count.trim().parse::<usize>().ok().filter(|&c| c <= 16384)?
    } else {
        return Some(0);
    };
    // The value and its newline.
    count.checked_add(1)
}

/// The address of a recipient line: Exim appends data after it in several formats over the
/// years, told apart from the end of the line (an address may hold spaces).
fn recipient(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let digits = s.trim_end_matches(|c: char| c.is_ascii_digit());
    let lossy = |a: &str| a.to_string();
    match digits.chars().last() {
        // Exim 3: `<address> <d>,<d>,<d>`.
        Some(',') => {
            let head = digits.trim_end_matches(|c: char| c.is_ascii_digit() || c == ',');
            head.strip_suffix(' ').map_or_else(|| lossy(&s), lossy)
        }
        // Early Exim 4: `<address> <pno>`.
        Some(' ') => lossy(&digits[..digits.len() - 1]),
        // `<address> <orcpt> <len>,<dsn> <errors_to> <len>,<pno>#<flags>`, orcpt part if
        // flags & 2, errors_to part if flags & 1.
        Some('#') => {
            let flags: u32 = s[digits.len()..].parse().unwrap_or(0);
            let mut rest = &digits[..digits.len() - 1];
            for bit in [1, 2] {
                if flags & bit == 0 {
                    continue;
                }
                // ` <value> <len>,<n>`: the value is `len` bytes, spaces allowed.
                let Some((before, nums)) = rest.rsplit_once(' ') else { return lossy(&s) };
                let len = nums.split(',').next().and_then(|l| l.parse::<usize>().ok());
                let cut = len.and_then(|l| before.len().checked_sub(l + 1));
                match cut.and_then(|c| before.get(c..c + 1).filter(|sp| *sp == " ").map(|_| &before[..c])) {
                    Some(r) => rest = r,
                    None => return lossy(&s),
                }
            }
            lossy(rest)
        }
        _ => lossy(&s),
    }
}

/// Appends `b` to `out`, up to `max` bytes in all.
fn push(out: &mut Vec<u8>, b: &[u8], max: usize) {
    let room = max.saturating_sub(out.len());
    out.extend_from_slice(&b[..b.len().min(room)]);
}

/// The message and envelope of an Exim `-H` file, with the body from its `-D` file (`data`) if
/// read; `None` if `header` is not an Exim `-H` file. The message is cut at `max_message` bytes.
/// A `-D` file of another message is not used. A header section cut short (a damaged file)
/// gives the headers read up to there.
pub fn exim(header: &[u8], data: Option<&[u8]>, max_message: usize) -> Option<Queued> {
    let mut r = Lines { b: header, at: 0 };
    let id = text(r.line()?)?.strip_suffix("-H").filter(|id| is_message_id(id))?;
    // The submitter: `<login> <uid> <gid>` (the login may hold spaces).
    let who = String::from_utf8_lossy(r.line()?);
    let mut fields = who.trim_end().rsplitn(3, ' ');
    let (gid, uid) = (fields.next()?, fields.next()?);
    fields.next()?;
    if !is_int(gid) || !is_int(uid) {
        return None;
    }
    let sender = r.line()?.strip_prefix(b"<")?.strip_suffix(b">")?;
    let mut time = text(r.line()?)?.split_whitespace();
    let arrived: i64 = time.next()?.parse().ok()?;
    time.next()?.parse::<i64>().ok()?;
    let mut q = Queued {
        sender: Some(String::from_utf8_lossy(sender).into_owned()),
        recipients: Vec::new(),
        arrived: Some(arrived),
        message: Vec::new(),
    };
    let mut wire = false;
    let mut line = r.line()?;
    let mut lines = 0usize;
    while line.first() == Some(&b'-') {
        let skip = option_value_len(line)?;
        r.at = r.at.checked_add(skip).filter(|&at| at <= header.len())?;
        wire |= line == b"-spool_file_wireformat";
        lines += 1;
        if lines > MAX_LINES {
            return None;
        }
        line = r.line()?;
    }
    // The non-recipients tree, in preorder: each node says whether two children follow.
    if line != b"XX" {
        let mut pending = 1usize;
        loop {
            match line {
                [l @ (b'Y' | b'N'), rt @ (b'Y' | b'N'), b' ', _, ..] => {
                    pending = pending - 1 + usize::from(*l == b'Y') + usize::from(*rt == b'Y');
                }
                _ => return None,
            }
            lines += 1;
            if lines > MAX_LINES {
                return None;
            }
            if pending == 0 {
                break;
            }
            line = r.line()?;
        }
    }
    let count: usize = text(r.line()?)?.trim().parse().ok()?;
    if count > MAX_RECIPIENTS {
        return None;
    }
    for _ in 0..count {
        let l = r.line().filter(|l| !l.is_empty())?;
        q.recipients.push(recipient(l));
    }
    if r.line()? != b"" {
        return None;
    }
    // Headers: `<length><flag>`, white space, then `length` bytes.
    let mut at = r.at;
    for _ in 0..MAX_HEADERS {
        let rest = &header[at.min(header.len())..];
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            break;
        }
        let Some(&flag) = rest.get(digits) else { break };
        let Some(len) = text(&rest[..digits]).and_then(|d| d.parse::<usize>().ok()) else { break };
        let start = digits + 1 + rest[digits + 1..].iter().take_while(|c| c.is_ascii_whitespace()).count();
        let body = &rest[start..rest.len().min(start + len)];
        if flag != b'*' {
            push(&mut q.message, body, max_message);
        }
        at += start + body.len();
        if body.len() < len {
            break;
        }
    }
    push(&mut q.message, b"\n", max_message);
    let body = data.and_then(|d| d.strip_prefix(id.as_bytes())).and_then(|d| d.strip_prefix(b"-D\n"));
    match body {
        Some(b) if wire => {
            let mut pieces = b.split(|&c| c == b'\n').peekable();
            while let Some(p) = pieces.next() {
                if q.message.len() >= max_message {
                    break;
                }
                if pieces.peek().is_some() {
                    push(&mut q.message, p.strip_suffix(b"\r").unwrap_or(p), max_message);
                    push(&mut q.message, b"\n", max_message);
                } else {
                    push(&mut q.message, p, max_message);
                }
            }
        }
        Some(b) => push(&mut q.message, b, max_message),
        None => {}
    }
    Some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures (see `tests/data/exim/README.md`): id, `-H`, `-D`, Exim's delivery of it.
    type Fixture = (&'static str, &'static [u8], &'static [u8], &'static [u8]);
    const SPOOL: [Fixture; 4] = [
        (
            "1xZnaq-0002v8-0R",
            include_bytes!("../../tests/data/exim/1xZnaq-0002v8-0R-H"),
            include_bytes!("../../tests/data/exim/1xZnaq-0002v8-0R-D"),
            include_bytes!("../../tests/data/exim/1xZnaq-0002v8-0R.delivered.eml"),
        ),
        (
            "1xZnar-0002vC-0U",
            include_bytes!("../../tests/data/exim/1xZnar-0002vC-0U-H"),
            include_bytes!("../../tests/data/exim/1xZnar-0002vC-0U-D"),
            include_bytes!("../../tests/data/exim/1xZnar-0002vC-0U.delivered.eml"),
        ),
        (
            "1xZnas-0002vG-0X",
            include_bytes!("../../tests/data/exim/1xZnas-0002vG-0X-H"),
            include_bytes!("../../tests/data/exim/1xZnas-0002vG-0X-D"),
            include_bytes!("../../tests/data/exim/1xZnas-0002vG-0X.delivered.eml"),
        ),
        (
            "1xZnbK-00034M-25",
            include_bytes!("../../tests/data/exim/1xZnbK-00034M-25-H"),
            include_bytes!("../../tests/data/exim/1xZnbK-00034M-25-D"),
            include_bytes!("../../tests/data/exim/1xZnbK-00034M-25.delivered.eml"),
        ),
    ];
    const BP: &str = include_str!("../../tests/data/exim/queue.bp.txt");
    const EXIPICK: &str = include_str!("../../tests/data/exim/exipick.txt");

    /// `exim -bp`'s size, sender and recipients of `id`.
    fn bp(id: &str) -> (usize, String, Vec<String>) {
        let mut lines = BP.lines().skip_while(|l| !l.contains(id));
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let sender = head[3].trim_start_matches('<').trim_end_matches('>').to_string();
        let rcpts = lines.take_while(|l| !l.trim().is_empty()).map(|l| l.trim().to_string()).collect();
        (head[1].parse().unwrap(), sender, rcpts)
    }

    /// exipick's `name='value'` for `id`.
    fn exipick(id: &str, name: &str) -> String {
        let line = EXIPICK.lines().find(|l| l.starts_with(id)).unwrap();
        let from = line.find(&format!(" {name}='")).unwrap() + name.len() + 3;
        line[from..from + line[from..].find('\'').unwrap()].to_string()
    }

    #[test]
    fn real_spool_files_as_exim_delivers_them() {
        for (id, h, d, delivered) in SPOOL {
            let q = exim(h, Some(d), 1 << 20).unwrap();
            assert_eq!(String::from_utf8_lossy(&q.message), String::from_utf8_lossy(delivered), "{id}");
            let (size, sender, rcpts) = bp(id);
            assert_eq!((q.sender.as_deref(), &q.recipients), (Some(sender.as_str()), &rcpts), "{id}");
            assert_eq!(q.sender.unwrap(), exipick(id, "sender_address"), "{id}");
            assert_eq!(q.arrived.unwrap().to_string(), exipick(id, "received_time"), "{id}");
            // -bp's size is the live headers plus the -D file as stored (CRLF for BDAT).
            let crs = if id == "1xZnbK-00034M-25" { d.iter().filter(|&&c| c == b'\r').count() } else { 0 };
            assert_eq!(q.message.len() + crs, size, "{id}");
        }
        // The first: headers Exim marked `*` are gone, the ACL variable's lines that look like
        // recipients are not read as such, and the tree's address is not a recipient.
        let q = exim(SPOOL[0].1, Some(SPOOL[0].2), 1 << 20).unwrap();
        let m = String::from_utf8(q.message).unwrap();
        for gone in ["Bcc:", "X-Internal-Secret", "old.example.net", "X-rewrote", "Bad:", "evil@"] {
            assert!(!m.contains(gone), "{gone}");
        }
        assert_eq!(q.recipients, ["bob@example.net", "carol@example.com"]);
        assert_eq!(exipick("1xZnaq-0002v8-0R", "recipients_del"), "nobody@example.org");
    }

    #[test]
    fn missing_or_foreign_body_and_truncation() {
        let (_, h, d, delivered) = SPOOL[1];
        let headers = &delivered[..delivered.windows(2).position(|w| w == b"\n\n").unwrap() + 2];
        assert_eq!(exim(h, None, 1 << 20).unwrap().message, headers);
        // The -D file of another message is not this one's body.
        assert_eq!(exim(h, Some(SPOOL[2].2), 1 << 20).unwrap().message, headers);
        for max in [0, 1, 100, headers.len(), delivered.len() - 1] {
            assert_eq!(exim(h, Some(d), max).unwrap().message, &delivered[..max]);
        }
        let (_, h, d, delivered) = SPOOL[3];
        assert_eq!(exim(h, Some(d), delivered.len() - 3).unwrap().message, &delivered[..delivered.len() - 3]);
    }

    #[test]
    fn new_format_ids() {
        // Exim 4.97+ ids (6-11-4): the third fixture with the id of its first lines made one
        // (the headers keep the old one, their lengths unchanged).
        let (old, h, d, delivered) = SPOOL[2];
        let new = "1xZnas-00000002vG0-0X00";
        let swap = |b: &[u8]| String::from_utf8_lossy(b).replacen(old, new, 1).into_bytes();
        assert_eq!(exim(&swap(h), Some(&swap(d)), 1 << 20).unwrap().message, delivered);
        assert!(is_message_id(new) && is_message_id(old));
        for bad in ["1xZnas-0002vG-0", "1xZnas-0002vG-0X-", "1xZnas_0002vG-0X", "1xZnas-0002v!-0X", ""] {
            assert!(!is_message_id(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        for yes in [
            "/var/spool/exim4/input/1xZnaq-0002v8-0R-H",
            "/var/spool/exim/input/1xZnaq-0002v8-0R-H",
            "/var/spool/exim4/input/q/1xZnaq-0002v8-0R-H",
            "/var/spool/exim4/input/s/1xZnas-00000002vG0-0X00-H",
            "/var/spool/exim4/slow/input/1xZnaq-0002v8-0R-H",
        ] {
            assert!(is_exim_header_file(yes), "{yes}");
        }
        for no in [
            "/var/spool/exim4/msglog/1xZnaq-0002v8-0R",
            "/var/spool/exim4/msglog/input/1xZnaq-0002v8-0R-H",
            "/var/spool/exim4/input/1xZnaq-0002v8-0R-D",
            "/var/spool/exim4/input/1xZnaq-0002v8-0R-J",
            "/var/spool/exim4/input/x/1xZnaq-0002v8-0R-H",
            "/var/spool/exim4/input/q/r/1xZnaq-0002v8-0R-H",
            "/var/spool/exim4/input/hdr.1234",
            "/var/spool/exim4/db/retry",
            "/var/spool/postfix/deferred/1xZnaq-0002v8-0R-H",
            "/home/u/var/spool/exim4/input/1xZnaq-0002v8-0R-H",
        ] {
            assert!(!is_exim_header_file(no), "{no}");
        }
        assert_eq!(
            data_file_path("/var/spool/exim4/input/q/1xZnaq-0002v8-0R-H"),
            "/var/spool/exim4/input/q/1xZnaq-0002v8-0R-D"
        );
    }

    #[test]
    fn recipient_line_formats() {
        assert_eq!(recipient(b"a@example.net"), "a@example.net");
        assert_eq!(recipient(b"a@10.0.0.1"), "a@10.0.0.1");
        assert_eq!(recipient(b"a@example.net 3"), "a@example.net");
        assert_eq!(recipient(b"a@example.net 0,3,0"), "a@example.net");
        assert_eq!(recipient(b"a@example.net  0,-1#1"), "a@example.net");
        assert_eq!(recipient(b"a@example.net e@x.org 7,-1#1"), "a@example.net");
        assert_eq!(recipient(b"a b@example.net rfc822;a b@x 12,4 e@x.org 7,2#3"), "a b@example.net");
        // Lengths that do not fit: the line as is.
        assert_eq!(recipient(b"a@example.net e 99,-1#1"), "a@example.net e 99,-1#1");
        assert_eq!(recipient(b"#3"), "#3");
    }

    #[test]
    fn hostile_files() {
        let (_, h, d, _) = SPOOL[0];
        // Every truncation and every single-byte change: no panic; anything cut within the
        // envelope is not a spool file.
        let last = b"carol@example.com\n\n";
        let envelope_end = h.windows(last.len()).position(|w| w == last).unwrap() + last.len() - 1;
        for n in 0..h.len() {
            assert_eq!(exim(&h[..n], Some(d), 1 << 20).is_some(), n > envelope_end, "{n}");
        }
        for i in 0..h.len() {
            for c in [0u8, b'\n', b'-', b'9', b'Y', b'*', 0xff] {
                let mut m = h.to_vec();
                m[i] = c;
                let _ = exim(&m, Some(d), 1 << 20);
            }
        }
        let env = "1xZnaq-0002v8-0R-H\nroot 0 0\n<a@b>\n1 0\n";
        let q = |rest: &str| exim(format!("{env}{rest}").as_bytes(), None, 1 << 20);
        // Huge counts and lengths: refused or cut, never allocated.
        assert!(q("XX\n99999999999999999999\n").is_none());
        assert!(q("XX\n16385\n").is_none());
        assert!(q("XX\n16384\na@b\n").is_none());
        assert!(q("-aclm x 18446744073709551615\nXX\n0\n\n").is_none());
        assert!(q("-aclm x 999999999\nXX\n0\n\n").is_none());
        assert!(q("-acl 3 20000\nXX\n0\n\n").is_none());
        assert_eq!(q("XX\n0\n\n999999999  Subject: x\n").unwrap().message, b"Subject: x\n\n");
        assert_eq!(q("XX\n0\n\n99999999999999999999  x\n").unwrap().message, b"\n");
        assert_eq!(q("XX\n0\n\n3").unwrap().message, b"\n");
        // A tree that promises children it does not have; one that is not a tree.
        assert!(q("YY a@b\nNN c@d\n0\n\n").is_none());
        assert!(q("ZZ a@b\n0\n\n").is_none());
        assert_eq!(q("YN a@b\nNN c@d\n1\ne@f\n\n").unwrap().recipients, ["e@f"]);
        // Not -H files.
        assert!(exim(d, None, 1 << 20).is_none());
        assert!(exim(b"From: a\n\nb", None, 1 << 20).is_none());
        assert!(exim(b"1xZnaq-0002v8-0R-H\nroot x 0\n<a>\n1 0\nXX\n0\n\n", None, 1 << 20).is_none());
        assert!(exim(b"1xZnaq-0002v8-0R-H\nroot 0 0\na\n1 0\nXX\n0\n\n", None, 1 << 20).is_none());
    }
}
