//! Mail waiting in a Postfix queue (`/var/spool/postfix/{maildrop,incoming,active,deferred,
//! hold}`): a VM that is offline, or whose mail a crontab flushes later, keeps it there.
//!
//! A queue file is a sequence of records: a type byte, a length (7 bits a byte, low first,
//! high bit for "more") and the data. `T` is the arrival time, `S` the envelope sender, `R` a
//! recipient, `M` starts the message, `N` is a line and `L` part of one, `X` ends the message
//! and `E` the file; `p` points at the offset where reading goes on (cleanup's in-place edits).
//! The message is rebuilt as `postcat -bh` prints it: lines ended by LF. Everything is bounded:
//! the records read, the pointer jumps followed, the message size.

/// What a queue file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    /// Seconds since the epoch the message arrived.
    pub arrived: Option<i64>,
    pub message: Vec<u8>,
}

/// Records read at most, pointer records followed at most.
const MAX_RECORDS: usize = 1 << 20;
const MAX_JUMPS: usize = 4096;

/// Whether `path` is where Postfix queues mail.
pub fn is_postfix_queue(path: &str) -> bool {
    ["maildrop", "incoming", "active", "deferred", "hold"]
        .iter()
        .any(|q| path.starts_with(&format!("/var/spool/postfix/{q}/")))
}

/// The message and envelope of a Postfix queue file; `None` if it is not one.
pub fn postfix(b: &[u8], max_message: usize) -> Option<Queued> {
    let mut q = Queued { sender: None, recipients: Vec::new(), arrived: None, message: Vec::new() };
    let (mut at, mut jumps, mut in_message, mut saw_message) = (0usize, 0usize, false, false);
    for n in 0..MAX_RECORDS {
        let kind = *b.get(at)?;
        let (len, used) = length(b.get(at + 1..)?)?;
        let data = b.get(at + 1 + used..at + 1 + used + len)?;
        at += 1 + used + len;
        // The first record of every queue file is its size (`C`) or time (`T`).
        if n == 0 && kind != b'C' && kind != b'T' {
            return None;
        }
        match kind {
            b'T' if q.arrived.is_none() => {
                q.arrived = std::str::from_utf8(data).ok()?.split_whitespace().next()?.parse().ok();
            }
            b'S' => q.sender = Some(String::from_utf8_lossy(data).into_owned()),
            b'R' => q.recipients.push(String::from_utf8_lossy(data).into_owned()),
            b'M' => {
                in_message = true;
                saw_message = true;
            }
            // Past `max_message` the rest is left out (the size says so).
            b'N' | b'L' if in_message && q.message.len() + data.len() < max_message => {
                q.message.extend_from_slice(data);
                if kind == b'N' {
                    q.message.push(b'\n');
                }
            }
            b'X' => in_message = false,
            b'E' => break,
            b'p' => {
                let to: usize = std::str::from_utf8(data).ok()?.trim().parse().ok()?;
                if to > 0 {
                    jumps += 1;
                    if jumps > MAX_JUMPS || to >= b.len() {
                        return None;
                    }
                    at = to;
                }
            }
            _ => {}
        }
        if at >= b.len() {
            break;
        }
    }
    saw_message.then_some(q)
}

/// A record length: 7 bits a byte, least significant first; the byte count used.
fn length(b: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for (i, byte) in b.iter().take(5).enumerate() {
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((len, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: u8, d: &[u8]) -> Vec<u8> {
        let mut v = vec![t, d.len() as u8];
        v.extend_from_slice(d);
        v
    }

    #[test]
    fn records_pointers_and_hostile_files() {
        let mut f =
            [rec(b'T', b"1796460540 548014"), rec(b'S', b"joe@example.org"), rec(b'R', b"bob@example.net")].concat();
        f.extend(rec(b'M', b""));
        f.extend(rec(b'N', b"Subject: x"));
        // A pointer to the rest, past a stretch of junk that must be skipped.
        let target = f.len() + 2 + 15 + 5;
        f.extend(rec(b'p', format!("{target:15}").as_bytes()));
        f.extend(b"JUNKS");
        f.extend(rec(b'L', b"long "));
        f.extend(rec(b'N', b"line"));
        f.extend(rec(b'X', b""));
        f.extend(rec(b'E', b""));
        let q = postfix(&f, 1 << 20).unwrap();
        assert_eq!(q.message, b"Subject: x\nlong line\n");
        assert_eq!(
            (q.sender.as_deref(), q.recipients.len(), q.arrived),
            (Some("joe@example.org"), 1, Some(1796460540))
        );
        // Not a queue file; a pointer loop; a length past the end.
        assert!(postfix(b"From: a\n\nb", 1 << 20).is_none());
        // A pointer record that points at itself: followed a bounded number of times.
        let mut looped = [rec(b'T', b"1"), rec(b'M', b"")].concat();
        let at = looped.len();
        looped.extend(rec(b'p', format!("{at:15}").as_bytes()));
        assert!(postfix(&looped, 1 << 20).is_none());
        assert!(postfix(&[b'T', 0x7f, b'1'], 1 << 20).is_none());
    }
}
