//! SMTP analyzer on hand-written transcripts (RFC 5321, RFC 3030, RFC 4954, RFC 3207). Expected
//! values are computed by hand from the standards or with coreutils (`sha256sum`, `base64`).

use tapir::analyze::harness::Harness;
use tapir::analyze::smtp::{analyzer, SmtpEvent, SmtpWhat};
use tapir::record::{Dir, ObjectRecord};

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn run(t: &str) -> Harness {
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:25");
    let mut a = analyzer();
    h.transcript(a.as_mut(), t);
    h
}

fn events(h: &Harness, what: SmtpWhat) -> Vec<SmtpEvent> {
    h.sink.iri.iter().filter_map(|r| r.event.app::<SmtpEvent>().filter(|e| e.what == what).cloned()).collect()
}

fn mails(h: &Harness) -> Vec<&ObjectRecord> {
    h.sink.objects.iter().filter(|o| o.meta.kind == "mail").collect()
}

fn bytes<'a>(h: &'a Harness, o: &ObjectRecord) -> &'a [u8] {
    &h.sink.object_bytes[&(o.liid.clone(), o.id)]
}

const BANNER: &str = "<<<\n220 mx.example ESMTP\n>>>\nEHLO client.example\n<<<\n250-mx.example\n250-PIPELINING\n250-CHUNKING\n250-8BITMIME\n250 STARTTLS\n";

#[test]
fn data_is_dot_unstuffed_and_envelope_and_verdict_recorded() {
    let t = format!(
        "{BANNER}>>>\nMAIL FROM:<ann@a.example> BODY=8BITMIME\n<<<\n250 ok\n>>>\nRCPT TO:<bob@b.example>\n<<<\n250 ok\n\
>>>\nRCPT TO:<nobody@b.example>\n<<<\n550 no such user\n>>>\nDATA\n<<<\n354 go\n>>>\n\
Message-ID: <m1@a.example>\nSubject: dots\nFrom: ann@a.example\nTo: bob@b.example\nDate: Thu, 1 Jan 2026 00:00:00 +0000\n\n\
..leading dot\n...two\n.\n<<<\n250 queued as X1\n>>>\nQUIT\n<<<\n221 bye\n"
    );
    let h = run(&t);
    let m = mails(&h);
    assert_eq!(m.len(), 1);
    let want = b"Message-ID: <m1@a.example>\r\nSubject: dots\r\nFrom: ann@a.example\r\nTo: bob@b.example\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n.leading dot\r\n..two\r\n";
    assert_eq!(bytes(&h, m[0]), want);
    assert_eq!(m[0].sha256, sha256(want));
    assert!(m[0].complete);
    assert_eq!(m[0].meta.protocol, "smtp");
    let ctx = &m[0].meta.context;
    assert_eq!(ctx["mail_from"], "ann@a.example");
    assert_eq!(ctx["message_id"], "<m1@a.example>");
    assert_eq!(ctx["verdict"]["code"], 250);
    assert_eq!(ctx["verdict"]["text"], "queued as X1");
    let ev = events(&h, SmtpWhat::Mail);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].rcpt_to.len(), 2);
    assert_eq!(ev[0].rcpt_to[1].addr, "nobody@b.example");
    assert_eq!(ev[0].rcpt_to[1].reply.as_ref().unwrap().code, 550);
    assert_eq!(ev[0].headers.subject.as_deref(), Some("dots"));
    assert_eq!(ev[0].headers.date.as_deref(), Some("Thu, 1 Jan 2026 00:00:00 +0000"));
    assert_eq!(ev[0].object, Some(m[0].id));
    assert_eq!(ev[0].reply.as_ref().unwrap().code, 250);
}

#[test]
fn pipelined_commands_get_their_own_replies_and_two_messages_are_two_objects() {
    let t = format!(
        "{BANNER}>>>\nMAIL FROM:<a@x>\nRCPT TO:<b@y>\nRCPT TO:<c@y>\nDATA\n<<<\n250 sender ok\n250 b ok\n450 c later\n354 go\n\
>>>\nSubject: one\n\nfirst\n.\nMAIL FROM:<a@x>\nRCPT TO:<d@y>\nDATA\n<<<\n250 queued 1\n250 sender ok\n250 d ok\n354 go\n\
>>>\nSubject: two\n\nsecond\n.\n<<<\n554 rejected\n"
    );
    let h = run(&t);
    let m = mails(&h);
    assert_eq!(m.len(), 2);
    assert_eq!(bytes(&h, m[0]), b"Subject: one\r\n\r\nfirst\r\n");
    assert_eq!(bytes(&h, m[1]), b"Subject: two\r\n\r\nsecond\r\n");
    let ev = events(&h, SmtpWhat::Mail);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].mail_from_reply.as_ref().unwrap().text, "sender ok");
    assert_eq!(ev[0].rcpt_to[1].reply.as_ref().unwrap().code, 450);
    assert_eq!(ev[0].reply.as_ref().unwrap().text, "queued 1");
    assert_eq!(ev[1].rcpt_to[0].addr, "d@y");
    assert_eq!(ev[1].reply.as_ref().unwrap().code, 554);
}

#[test]
fn bdat_chunks_are_concatenated_including_a_zero_size_last() {
    // Chunk bytes go raw (no CRLF added by the transcript inside a chunk: sizes count them).
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:25");
    let mut a = analyzer();
    h.server(a.as_mut(), b"220 mx ESMTP\r\n");
    h.client(a.as_mut(), b"EHLO c\r\n");
    h.server(a.as_mut(), b"250-mx\r\n250 CHUNKING\r\n");
    // Pipelined: envelope and first chunk in one segment; second chunk split across segments.
    h.client(a.as_mut(), b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 18\r\nSubject: s\r\n\r\n.x\r\n");
    h.client(a.as_mut(), b"BDAT 8\r\nbin\0");
    h.client(a.as_mut(), b"\r\n.\r");
    h.client(a.as_mut(), b"BDAT 0 LAST\r\n");
    h.server(a.as_mut(), b"250 ok\r\n250 ok\r\n250 18 octets\r\n250 8 octets\r\n250 message ok\r\n");
    // Next message: one chunk with LAST.
    h.client(a.as_mut(), b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 5 LAST\r\nhello");
    h.server(a.as_mut(), b"250 ok\r\n250 ok\r\n250 done\r\n");
    h.close(a.as_mut(), tapir::record::Close::Fin);
    let m = mails(&h);
    assert_eq!(m.len(), 2);
    assert_eq!(bytes(&h, m[0]), b"Subject: s\r\n\r\n.x\r\nbin\0\r\n.\r");
    assert_eq!(m[0].meta.declared_size, Some(26));
    assert!(m[0].complete);
    assert_eq!(bytes(&h, m[1]), b"hello");
    let ev = events(&h, SmtpWhat::Mail);
    assert_eq!(ev[0].transfer, Some("bdat"));
    assert_eq!(ev[0].reply.as_ref().unwrap().text, "message ok");
    assert_eq!(ev[1].reply.as_ref().unwrap().text, "done");
}

#[test]
fn auth_plain_and_login_keep_the_user_and_mask_the_secret() {
    // printf '\0joe\0s3cret' | base64 -> AGpvZQBzM2NyZXQ=
    // printf ann | base64 -> YW5u ; printf hunter2 | base64 -> aHVudGVyMg==
    let t = format!(
        "{BANNER}>>>\nAUTH PLAIN AGpvZQBzM2NyZXQ=\n<<<\n535 bad credentials\n>>>\nAUTH LOGIN\n<<<\n334 VXNlcm5hbWU6\n>>>\nYW5u\n\
<<<\n334 UGFzc3dvcmQ6\n>>>\naHVudGVyMg==\n<<<\n235 ok\n>>>\nMAIL FROM:<ann@x>\n<<<\n250 ok\n"
    );
    let h = run(&t);
    let ev = events(&h, SmtpWhat::Auth);
    assert_eq!(ev.len(), 2);
    assert_eq!(
        (ev[0].mechanism.as_deref(), ev[0].user.as_deref(), ev[0].success),
        (Some("PLAIN"), Some("joe"), Some(false))
    );
    assert_eq!(
        (ev[1].mechanism.as_deref(), ev[1].user.as_deref(), ev[1].success),
        (Some("LOGIN"), Some("ann"), Some(true))
    );
    assert_eq!(ev[1].secret, Some("***"));
    let all = serde_json::to_string(&h.sink.iri).unwrap();
    for secret in ["s3cret", "hunter2", "aHVudGVyMg", "AGpvZQBzM2NyZXQ"] {
        assert!(!all.contains(secret), "{secret} leaked into IRI");
    }
    // The MAIL after AUTH was parsed as a command again.
    assert_eq!(events(&h, SmtpWhat::Mail)[0].mail_from.as_deref(), Some("ann@x"));
    assert_eq!(events(&h, SmtpWhat::Mail)[0].user.as_deref(), Some("ann"));
}

#[test]
fn starttls_is_recorded_and_what_follows_is_not_parsed_as_smtp() {
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:25");
    let mut a = analyzer();
    h.server(a.as_mut(), b"220 mx ESMTP\r\n");
    h.client(a.as_mut(), b"EHLO c\r\nSTARTTLS\r\n");
    h.server(a.as_mut(), b"250 mx\r\n220 ready\r\n\x16\x03\x03\x00\x02\x02\x00");
    h.client(a.as_mut(), b"\x16\x03\x01\x00\x05MAIL FROM:<hidden@x>\r\n");
    h.close(a.as_mut(), tapir::record::Close::Fin);
    let ev = events(&h, SmtpWhat::StartTls);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].success, Some(true));
    assert_eq!(ev[0].reply.as_ref().unwrap().code, 220);
    assert!(events(&h, SmtpWhat::Mail).is_empty());
    assert!(mails(&h).is_empty());
}

#[test]
fn rset_discards_the_envelope() {
    let t = format!(
        "{BANNER}>>>\nMAIL FROM:<old@x>\nRCPT TO:<old@y>\nRSET\nMAIL FROM:<new@x>\nRCPT TO:<new@y>\nDATA\n\
<<<\n250 ok\n250 ok\n250 reset\n250 ok\n250 ok\n354 go\n>>>\nbody\n.\n<<<\n250 ok\n"
    );
    let h = run(&t);
    let ev = events(&h, SmtpWhat::Mail);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].mail_from.as_deref(), Some("old@x"));
    assert_eq!(ev[0].object, None);
    assert_eq!(ev[1].mail_from.as_deref(), Some("new@x"));
    assert_eq!(ev[1].rcpt_to.len(), 1);
    assert_eq!(ev[1].rcpt_to[0].addr, "new@y");
    assert_eq!(bytes(&h, mails(&h)[0]), b"body\r\n");
}

#[test]
fn refused_data_is_not_a_message_and_following_lines_are_commands() {
    let t = format!(
        "{BANNER}>>>\nMAIL FROM:<a@x>\nRCPT TO:<b@y>\nDATA\n<<<\n250 ok\n550 no\n554 no valid recipients\n>>>\nQUIT\n<<<\n221 bye\n"
    );
    let h = run(&t);
    assert!(mails(&h).is_empty());
    let ev = events(&h, SmtpWhat::Mail);
    assert_eq!(ev[0].reply.as_ref().unwrap().code, 554);
}

#[test]
fn long_lines_are_bounded_and_long_body_lines_stream() {
    let long = "x".repeat(100_000);
    let t = format!(
        "{BANNER}>>>\nNOOP {long}\nMAIL FROM:<a@x>\nRCPT TO:<b@y>\nDATA\n<<<\n250 ok\n250 ok\n250 ok\n354 go\n>>>\n{long}\n.\n<<<\n250 ok\n"
    );
    let h = run(&t);
    let m = mails(&h);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].size, 100_002);
    let anomalies = &events(&h, SmtpWhat::Anomaly)[0].anomalies;
    assert_eq!(anomalies.get("command_line_too_long"), Some(&1));
}

#[test]
fn a_gap_in_the_body_marks_the_message_and_the_end_is_still_found() {
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:25");
    let mut a = analyzer();
    h.client(a.as_mut(), b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nline one\r\n");
    h.gap(a.as_mut(), Dir::Orig, 10);
    h.client(a.as_mut(), b"tail\r\nlast\r\n.\r\nQUIT\r\n");
    h.close(a.as_mut(), tapir::record::Close::Fin);
    let m = mails(&h);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].gaps, vec![(10, 10)]);
    assert!(!m[0].complete);
    assert_eq!(&bytes(&h, m[0])[20..], b"tail\r\nlast\r\n");
}

#[test]
fn probe_claims_on_the_client_command_not_the_banner() {
    use tapir::analyze::detect::Verdict;
    use tapir::analyze::smtp::probe;
    assert_eq!(probe(Dir::Resp, b"220 ftp.example FTP server ready\r\n"), Verdict::NeedMore);
    assert_eq!(probe(Dir::Resp, b"220 mx.example ESMTP Postfix\r\n"), Verdict::Match);
    assert_eq!(probe(Dir::Resp, b"HTTP/1.1 200 OK\r\n"), Verdict::NoMatch);
    assert_eq!(probe(Dir::Orig, b"EHL"), Verdict::NeedMore);
    assert_eq!(probe(Dir::Orig, b"ehlo x\r\n"), Verdict::Match);
    assert_eq!(probe(Dir::Orig, b"USER joe\r\n"), Verdict::NoMatch);
    assert_eq!(probe(Dir::Orig, b"GET / HTTP/1.1\r\n"), Verdict::NoMatch);
    assert_eq!(probe(Dir::Orig, b"AUTH TLS\r\n"), Verdict::NoMatch);
}
