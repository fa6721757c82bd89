//! Pure SMTP parsers: a command line or a reply line in, a parsed item out (RFC 5321, RFC 3030
//! BDAT, RFC 4954 AUTH). No state, no allocation except where a value is returned owned, no
//! panic on any input.

use crate::content::mime::decode_base64;

/// A client command, borrowed from its line (the line without its CRLF).
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Helo {
        ehlo: bool,
        name: &'a str,
    },
    Mail {
        path: String,
        params: &'a str,
    },
    Rcpt {
        path: String,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    /// BDAT whose size is missing, negative or beyond u64.
    BdatInvalid,
    Rset,
    Auth {
        mechanism: String,
        initial: Option<&'a str>,
    },
    StartTls,
    Quit,
    /// NOOP, VRFY, EXPN, HELP, or a verb tapir does not know.
    Other(&'a str),
}

fn split_verb(line: &str) -> (&str, &str) {
    match line.find([' ', '\t']) {
        Some(i) => (line.get(..i).unwrap_or(""), line.get(i + 1..).unwrap_or("").trim_start()),
        None => (line, ""),
    }
}

/// Strips `FROM:`/`TO:` and returns the address inside `<...>` (or up to the first blank) and
/// the parameters after it.
fn path_arg<'a>(arg: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg.get(keyword.len()..)?.trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>')?;
        let addr = inner.get(..end)?;
        // Source routes (`@a,@b:user@c`) are obsolete; keep the mailbox.
        let addr = addr.rsplit_once(':').map(|(_, a)| a).unwrap_or(addr);
        Some((addr.to_string(), inner.get(end + 1..).unwrap_or("").trim()))
    } else {
        let (addr, params) = split_verb(rest);
        Some((addr.to_string(), params))
    }
}

/// Parses one command line.
pub fn parse_command(line: &[u8]) -> Command<'_> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Command::Other("");
    };
    let line = line.trim_end_matches([' ', '\t', '\r']);
    let (verb, arg) = split_verb(line);
    let is = |v: &str| verb.eq_ignore_ascii_case(v);
    if is("EHLO") || is("HELO") || is("LHLO") {
        Command::Helo { ehlo: !is("HELO"), name: arg }
    } else if is("MAIL") {
        match path_arg(arg, "FROM:") {
            Some((path, params)) => Command::Mail { path, params },
            None => Command::Other(verb),
        }
    } else if is("RCPT") {
        match path_arg(arg, "TO:") {
            Some((path, _)) => Command::Rcpt { path },
            None => Command::Other(verb),
        }
    } else if is("DATA") {
        Command::Data
    } else if is("BDAT") {
        let mut words = arg.split_ascii_whitespace();
        let size = words.next().filter(|w| w.bytes().all(|b| b.is_ascii_digit())).and_then(|w| w.parse::<u64>().ok());
        let last = match words.next() {
            None => false,
            Some(w) if w.eq_ignore_ascii_case("LAST") => true,
            Some(_) => return Command::BdatInvalid,
        };
        match size {
            Some(size) => Command::Bdat { size, last },
            None => Command::BdatInvalid,
        }
    } else if is("RSET") {
        Command::Rset
    } else if is("AUTH") {
        let (mech, initial) = split_verb(arg);
        Command::Auth { mechanism: mech.to_ascii_uppercase(), initial: Some(initial).filter(|s| !s.is_empty()) }
    } else if is("STARTTLS") {
        Command::StartTls
    } else if is("QUIT") {
        Command::Quit
    } else {
        Command::Other(verb)
    }
}

/// One reply line: code, whether it is the last line of the reply (`250 ` vs `250-`), text.
pub fn parse_reply_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let code = line.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = code.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some((n, true, &[])),
        Some(b' ') => Some((n, true, line.get(4..).unwrap_or(&[]))),
        Some(b'-') => Some((n, false, line.get(4..).unwrap_or(&[]))),
        _ => None,
    }
}

/// What an AUTH exchange revealed: the user name, and whether a secret went by (never kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthFacts {
    pub user: Option<String>,
    pub secret_sent: bool,
    pub cancelled: bool,
}

/// Learns from one client response (`n` = 0 for the initial response of the AUTH command, 1
/// for the first response line after a 334, ...). `initial_given` says the AUTH command
/// carried an initial response.
pub fn auth_response(mechanism: &str, response: &str, n: u32, initial_given: bool, facts: &mut AuthFacts) {
    let response = response.trim();
    if response == "*" {
        facts.cancelled = true;
        return;
    }
    let decoded = if response == "=" { Vec::new() } else { decode_base64(response.as_bytes()) };
    let text = || String::from_utf8_lossy(&decoded).into_owned();
    match mechanism {
        "PLAIN" => {
            let mut f = decoded.split(|&b| b == 0);
            let authz = f.next().unwrap_or(&[]);
            let authc = f.next().unwrap_or(&[]);
            let who = if authc.is_empty() { authz } else { authc };
            if !who.is_empty() {
                facts.user = Some(String::from_utf8_lossy(who).into_owned());
            }
            facts.secret_sent = true;
        }
        "LOGIN" => {
            // Without an initial response the first line is the user; the next is the password.
            let user_turn = if initial_given { n == 0 } else { n == 1 };
            if user_turn {
                facts.user = Some(text());
            } else {
                facts.secret_sent = true;
            }
        }
        "CRAM-MD5" | "DIGEST-MD5" if n >= 1 && facts.user.is_none() => {
            let t = text();
            let user = if mechanism == "CRAM-MD5" {
                t.rsplit_once(' ').map(|(u, _)| u.to_string())
            } else {
                t.split(',').find_map(|kv| kv.trim().strip_prefix("username=")).map(|u| u.trim_matches('"').to_string())
            };
            facts.user = user;
            facts.secret_sent = true;
        }
        "XOAUTH2" => {
            let t = text();
            facts.user = t.split('\x01').find_map(|kv| kv.strip_prefix("user=")).map(str::to_string);
            facts.secret_sent = true;
        }
        _ => facts.secret_sent = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse_command(b"MAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME"),
            Command::Mail { path: "a@b.c".into(), params: "SIZE=10 BODY=8BITMIME" }
        );
        assert_eq!(parse_command(b"rcpt to: <@x,@y:u@v>"), Command::Rcpt { path: "u@v".into() });
        assert_eq!(parse_command(b"MAIL FROM:<>"), Command::Mail { path: "".into(), params: "" });
        assert_eq!(parse_command(b"BDAT 0 LAST"), Command::Bdat { size: 0, last: true });
        assert_eq!(parse_command(b"BDAT -1"), Command::BdatInvalid);
        assert_eq!(parse_command(b"BDAT 99999999999999999999999"), Command::BdatInvalid);
        assert_eq!(
            parse_command(b"auth plain AGEAYg=="),
            Command::Auth { mechanism: "PLAIN".into(), initial: Some("AGEAYg==") }
        );
        assert_eq!(parse_command(b"\xff\xfe"), Command::Other(""));
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply_line(b"250-PIPELINING"), Some((250, false, &b"PIPELINING"[..])));
        assert_eq!(parse_reply_line(b"354 go"), Some((354, true, &b"go"[..])));
        assert_eq!(parse_reply_line(b"25"), None);
        assert_eq!(parse_reply_line(b"2x0 no"), None);
    }

    #[test]
    fn auth_user_names_without_secrets() {
        // printf '\0joe\0s3cret' | base64 -> AGpvZQBzM2NyZXQ=
        let mut f = AuthFacts::default();
        auth_response("PLAIN", "AGpvZQBzM2NyZXQ=", 0, true, &mut f);
        assert_eq!(f.user.as_deref(), Some("joe"));
        assert!(f.secret_sent);
        // printf 'joe 0123456789abcdef' | base64
        let mut f = AuthFacts::default();
        auth_response("CRAM-MD5", "am9lIDAxMjM0NTY3ODlhYmNkZWY=", 1, false, &mut f);
        assert_eq!(f.user.as_deref(), Some("joe"));
    }
}
