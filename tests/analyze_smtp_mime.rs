//! The streaming MIME decoder through the SMTP analyzer: attachments decoded from base64 and
//! quoted-printable, nested multiparts, and a 50 MB attachment in bounded memory. Expected part
//! bytes come from mail-parser (an independent MIME implementation) or are generated here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;

use mail_parser::{MessageParser, MimeHeaders};
use tapir::analyze::harness::Harness;
use tapir::analyze::smtp::analyzer;
use tapir::analyze::{Cx, Expectations};
use tapir::content::FileLayer;
use tapir::record::{Close, Dir, FlowDescr, Record, RecordSink};
use tapir::select::Provenance;
use tapir::timestamp::Timestamp;

/// Counts live heap bytes and their peak, to prove the decoder streams. Only the measuring
/// thread counts (tests run in parallel threads of one process).
struct Counting;
thread_local! {
    static ON: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counting() -> bool {
    ON.try_with(|c| c.get()).unwrap_or(false)
}
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(l) };
        if !counting() {
            return p;
        }
        let now = LIVE.fetch_add(l.size() as isize, Ordering::Relaxed) + l.size() as isize;
        PEAK.fetch_max(now.max(0) as usize, Ordering::Relaxed);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) };
        if !counting() {
            return;
        }
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// Sends `msg` as a dot-stuffed DATA body in `chunk`-byte segments.
fn submit(msg: &[u8], chunk: usize) -> Harness {
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:25");
    let mut a = analyzer();
    h.server(a.as_mut(), b"220 mx ESMTP\r\n");
    h.client(a.as_mut(), b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    h.server(a.as_mut(), b"250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    let mut stuffed = Vec::new();
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    stuffed.extend_from_slice(b".\r\n");
    for piece in stuffed.chunks(chunk) {
        h.client(a.as_mut(), piece);
    }
    h.server(a.as_mut(), b"250 queued\r\n");
    h.close(a.as_mut(), Close::Fin);
    h
}

const MSG: &str = "From: a@x\r\nTo: b@y\r\nSubject: parts\r\nMessage-ID: <p@x>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\nhello\r\n.dot line\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--inner--\r\n\
--outer\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\r\nMDEyMzQ1Njc4OTo7PD0+P0BBQkNE\r\n\
--outer\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\
Content-Disposition: inline; filename*=utf-8''caf%C3%A9.txt\r\n\r\ncaf=C3=A9 =3D soft=\r\nbreak\r\nline two  \r\n\
--outer\r\nContent-Type: multipart/mixed; boundary=\"deep\"\r\n\r\n--deep\r\nContent-Type: image/png\r\n\
Content-Disposition: attachment; filename=\"x.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--deep--\r\n--outer--\r\nepilogue\r\n";

#[test]
fn attachments_match_an_independent_mime_parser_whatever_the_segmentation() {
    let oracle = MessageParser::default().parse(MSG.as_bytes()).unwrap();
    let mut want: Vec<(String, String)> = oracle
        .parts
        .iter()
        .filter(|p| p.attachment_name().is_some())
        .map(|p| {
            let name = p.attachment_name().unwrap_or("").to_string();
            // mail-parser hands text parts back as normalised text, not the decoded bytes; for
            // that part the oracle is Python's email package:
            // email.message_from_bytes(MSG).walk() -> part.get_payload(decode=True) -> sha256
            let sha = if name == "café.txt" {
                "5117d694e974c1a7521dc310d8988262b3c54ccb989e416e030e33856b14c496".to_string()
            } else {
                sha256(p.contents())
            };
            (name, sha)
        })
        .collect();
    want.sort();
    assert_eq!(want.len(), 3, "oracle sees the three named parts");
    for chunk in [1, 3, 64, 1460, 1 << 20] {
        let h = submit(MSG.as_bytes(), chunk);
        let mail = h.sink.objects.iter().find(|o| o.meta.kind == "mail").unwrap();
        assert_eq!(h.sink.object_bytes[&(mail.liid.clone(), mail.id)], MSG.as_bytes(), "chunk {chunk}");
        let mut got: Vec<(String, String)> = h
            .sink
            .objects
            .iter()
            .filter(|o| o.meta.kind == "file")
            .map(|o| {
                assert_eq!(o.meta.parent, Some(mail.id));
                assert!(o.complete);
                (o.meta.name.clone().unwrap_or_default(), o.sha256.clone())
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "chunk {chunk}");
    }
    // Hand check of the quoted-printable part (RFC 2045 6.7: soft break, =3D, trailing blanks kept).
    let h = submit(MSG.as_bytes(), 7);
    let qp = h.sink.objects.iter().find(|o| o.meta.name.as_deref() == Some("café.txt")).unwrap();
    assert_eq!(h.sink.object_bytes[&(qp.liid.clone(), qp.id)], "café = softbreak\r\nline two  ".as_bytes());
    let b64 = h.sink.objects.iter().find(|o| o.meta.name.as_deref() == Some("data.bin")).unwrap();
    assert_eq!(h.sink.object_bytes[&(b64.liid.clone(), b64.id)], (0u8..=68).collect::<Vec<u8>>());
}

/// Hashes object bytes and keeps nothing else.
#[derive(Default)]
struct HashSink {
    objects: Vec<(String, String, u64, bool)>,
}

impl RecordSink for HashSink {
    fn record(&mut self, rec: Record<'_>) {
        if let Record::ObjectEnd(r, _) = rec {
            self.objects.push((r.meta.kind.clone(), r.sha256.clone(), r.size, r.complete));
        }
    }
}

#[test]
fn a_50_mb_attachment_streams_in_bounded_memory() {
    const SIZE: usize = 50 * 1024 * 1024;
    // Deterministic content, hashed here as it is generated (never held whole).
    let block: Vec<u8> = (0..57 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let mut want = ring::digest::Context::new(&ring::digest::SHA256);
    let mut mail_hash = ring::digest::Context::new(&ring::digest::SHA256);

    let flow = FlowDescr {
        proto: "tcp".into(),
        orig: "192.0.2.1:40000".parse().unwrap(),
        resp: "192.0.2.2:25".parse().unwrap(),
        vlans: Vec::new(),
        tunnels: Vec::new(),
    };
    let liid = tapir::record::Liid::new("MEM").unwrap();
    let prov = Arc::new(Provenance { selector: "t".into(), target: "t".into(), chain: Vec::new() });
    let mut files = FileLayer::new();
    let mut expect = Expectations::default();
    let mut sink = HashSink::default();
    let mut a = analyzer();
    let mut off = [0u64; 2];
    let mut send = |a: &mut dyn tapir::analyze::StreamAnalyzer,
                    files: &mut FileLayer,
                    expect: &mut Expectations,
                    sink: &mut HashSink,
                    dir: Dir,
                    b: &[u8]| {
        let mut cx = Cx {
            now: Timestamp::from_secs(1_767_225_600),
            liid: &liid,
            cin: tapir::record::Cin::FIRST,
            flow: &flow,
            provenance: &prov,
            scope: tapir::record::Scope::IriAndCc,
            files,
            expect,
            sink,
        };
        a.data(dir, off[dir.index()], b, &mut cx);
        off[dir.index()] += b.len() as u64;
    };
    send(
        a.as_mut(),
        &mut files,
        &mut expect,
        &mut sink,
        Dir::Orig,
        b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n",
    );
    send(
        a.as_mut(),
        &mut files,
        &mut expect,
        &mut sink,
        Dir::Resp,
        b"220 mx ESMTP\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n",
    );
    let head = b"Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    mail_hash.update(head);
    send(a.as_mut(), &mut files, &mut expect, &mut sink, Dir::Orig, head);

    ON.with(|c| c.set(true));
    let base_live = LIVE.load(Ordering::Relaxed);
    PEAK.store(base_live.max(0) as usize, Ordering::Relaxed);
    let mut sent = 0usize;
    let mut seg = Vec::with_capacity(80 * 1024);
    while sent < SIZE {
        let n = block.len().min(SIZE - sent);
        want.update(&block[..n]);
        seg.clear();
        // 76-column base64 lines, as mail clients write them.
        let mut enc = String::new();
        base64_encode(&block[..n], &mut enc);
        for line in enc.as_bytes().chunks(76) {
            seg.extend_from_slice(line);
            seg.extend_from_slice(b"\r\n");
        }
        mail_hash.update(&seg);
        for piece in seg.chunks(1448) {
            send(a.as_mut(), &mut files, &mut expect, &mut sink, Dir::Orig, piece);
        }
        sent += n;
    }
    let tail = b"--b--\r\n";
    mail_hash.update(tail);
    send(a.as_mut(), &mut files, &mut expect, &mut sink, Dir::Orig, tail);
    send(a.as_mut(), &mut files, &mut expect, &mut sink, Dir::Orig, b".\r\n");
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base_live.max(0) as usize);
    ON.with(|c| c.set(false));
    send(a.as_mut(), &mut files, &mut expect, &mut sink, Dir::Resp, b"250 queued\r\n");
    {
        let mut cx = Cx {
            now: Timestamp::from_secs(1_767_225_601),
            liid: &liid,
            cin: tapir::record::Cin::FIRST,
            flow: &flow,
            provenance: &prov,
            scope: tapir::record::Scope::IriAndCc,
            files: &mut files,
            expect: &mut expect,
            sink: &mut sink,
        };
        a.close(Close::Fin, &mut cx);
    }
    let want = hex::encode(want.finish().as_ref());
    let mail_want = hex::encode(mail_hash.finish().as_ref());
    let file = sink.objects.iter().find(|o| o.0 == "file").expect("attachment object");
    assert_eq!(file.2, SIZE as u64);
    assert_eq!(file.1, want);
    assert!(file.3);
    let mail = sink.objects.iter().find(|o| o.0 == "mail").expect("mail object");
    assert_eq!(mail.1, mail_want);
    // Over 68 MB of encoded mail went through; the analyzer's extra heap while streaming stays
    // below 1 MiB (the test's own segment buffers are allocated before the baseline).
    assert!(peak < 1 << 20, "peak extra heap while streaming: {peak} bytes");
}

fn base64_encode(input: &[u8], out: &mut String) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
}
