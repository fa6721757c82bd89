//! Transcript tests: each feature on hand-made conversations. Expected hashes are computed here
//! with ring over the payload the test itself sent (never from the analyzer's output); compressed
//! bodies are made by the system's `gzip` and Python's `zlib`, independent of flate2.

use super::*;
use crate::analyze::harness::Harness;
use crate::record::{Close, Dir, ObjectRecord};

fn sha(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// Deterministic, incompressible-ish payload.
fn payload(n: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn events(h: &Harness) -> Vec<HttpEvent> {
    h.sink.iri.iter().filter_map(|r| r.event.app::<HttpEvent>().cloned()).collect()
}

/// Files as the receiver reads them: a content-coded body's decoded object, whose parent is the
/// body as sent, which [`as_sent`] lists.
fn files(h: &Harness) -> Vec<&ObjectRecord> {
    h.sink.objects.iter().filter(|o| o.meta.kind == "file" && o.meta.context["as_sent"] != true).collect()
}

/// The objects holding content-coded bodies as they were sent.
fn as_sent(h: &Harness) -> Vec<&ObjectRecord> {
    h.sink.objects.iter().filter(|o| o.meta.kind == "file" && o.meta.context["as_sent"] == true).collect()
}

fn new() -> (Harness, Http) {
    (Harness::new("192.0.2.1:40000", "192.0.2.2:8080"), Http::new())
}

fn run(exchanges: &[(Dir, &[u8])]) -> Harness {
    let (mut h, mut a) = new();
    for (d, b) in exchanges {
        h.send(&mut a, *d, b);
    }
    h.close(&mut a, Close::Fin);
    h
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn external(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut c = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    c.stdin.take().unwrap().write_all(input).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{cmd} failed");
    o.stdout
}

const OK0: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";

#[test]
fn probe_claims_http_only() {
    assert_eq!(probe(Dir::Orig, b"PUT /x HTTP/1.1\r\n"), Verdict::Match);
    assert_eq!(probe(Dir::Resp, b"HTTP/1.0 200 OK\r\n"), Verdict::Match);
    assert_eq!(probe(Dir::Orig, b"PO"), Verdict::NeedMore);
    assert_eq!(probe(Dir::Resp, b"220 smtp.example ESMTP\r\n"), Verdict::NoMatch);
    assert_eq!(probe(Dir::Orig, b"EHLO x\r\n"), Verdict::NoMatch);
    assert_eq!(probe(Dir::Orig, b"\x16\x03\x01\x02\x00"), Verdict::NoMatch);
}

#[test]
fn put_with_content_length_and_100_continue() {
    let body = payload(5000, 1);
    let req = format!(
        "PUT /upload/disk.img HTTP/1.1\r\nHost: files.example\r\nUser-Agent: curl/8.5.0\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let h = run(&[
        (Dir::Orig, req.as_bytes()),
        (Dir::Resp, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (Dir::Orig, &body[..1000]),
        (Dir::Orig, &body[1000..]),
        (Dir::Resp, OK0),
    ]);
    let f = files(&h);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].sha256, sha(&body));
    assert_eq!(f[0].meta.name.as_deref(), Some("disk.img"));
    assert_eq!(f[0].meta.declared_size, Some(5000));
    assert_eq!(f[0].meta.direction, Dir::Orig);
    assert!(f[0].complete);
    let ev = events(&h);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].method.as_deref(), Some("PUT"));
    assert_eq!(ev[0].uri.as_deref(), Some("/upload/disk.img"));
    assert_eq!(ev[0].host.as_deref(), Some("files.example"));
    assert_eq!(ev[0].user_agent.as_deref(), Some("curl/8.5.0"));
    assert_eq!(ev[0].status, Some(201));
    assert_eq!(ev[0].request_body_len, 5000);
    assert_eq!(ev[0].request_objects[0].sha256, sha(&body));
    assert!(ev[0].anomalies.is_empty(), "{:?}", ev[0].anomalies);
}

#[test]
fn expect_continue_refused_body_never_sent() {
    let h = run(&[
        (Dir::Orig, b"PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"),
        (Dir::Resp, b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"),
        (Dir::Orig, b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
        (Dir::Resp, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
    ]);
    let ev = events(&h);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[0].status, Some(417));
    assert!(ev[0].anomalies.iter().any(|a| a == "expect-continue-body-not-sent"));
    assert_eq!(ev[1].uri.as_deref(), Some("/next"));
    assert_eq!(files(&h).len(), 1);
    assert_eq!(files(&h)[0].sha256, sha(b"abc"));
}

#[test]
fn multipart_parts_become_named_objects() {
    let f1 = payload(3000, 2);
    let f2 = payload(10, 3);
    let b = "------------------------53967f8d9ae3f96e";
    let body = cat(&[
        b"--",
        b.as_bytes(),
        b"\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n--",
        b.as_bytes(),
        b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n",
        &f1,
        b"\r\n--",
        b.as_bytes(),
        b"\r\nContent-Disposition: form-data; name=\"file2\"; filename=\"x.dat\"\r\n\r\n",
        &f2,
        b"\r\n--",
        b.as_bytes(),
        b"--\r\n",
    ]);
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary={b}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // Split the body at awkward places (inside a delimiter) to test the carry.
    let cut = body.len() - f2.len() - 50;
    let h = run(&[(Dir::Orig, req.as_bytes()), (Dir::Orig, &body[..cut]), (Dir::Orig, &body[cut..]), (Dir::Resp, OK0)]);
    let f = files(&h);
    assert_eq!(f.len(), 3, "{f:?}");
    assert_eq!(f[0].sha256, sha(b"hello"));
    assert_eq!(f[0].meta.name.as_deref(), Some("upload"), "no filename: last URI segment");
    assert_eq!(f[1].sha256, sha(&f1));
    assert_eq!(f[1].meta.name.as_deref(), Some("report.bin"));
    assert_eq!(f[1].meta.context["field"], "file");
    assert_eq!(f[1].meta.parent, None);
    assert_eq!(f[2].sha256, sha(&f2));
    assert_eq!(f[2].meta.name.as_deref(), Some("x.dat"));
    assert!(f.iter().all(|o| o.complete));
    let ev = events(&h);
    assert_eq!(ev[0].request_objects.len(), 3);
    assert_eq!(ev[0].request_body_len, body.len() as u64);
    assert!(ev[0].anomalies.is_empty(), "{:?}", ev[0].anomalies);
}

#[test]
fn chunked_put_with_extensions_and_trailer() {
    let data = payload(70000, 4);
    let mut wire = b"PUT /notes.bin HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for (i, c) in data.chunks(16384).enumerate() {
        wire.extend_from_slice(format!("{:x}{}\r\n", c.len(), if i == 1 { ";name=v" } else { "" }).as_bytes());
        wire.extend_from_slice(c);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\nX-Checksum: abc\r\n\r\n");
    // Byte-at-a-time for the framing, larger pieces otherwise.
    let (mut h, mut a) = new();
    for piece in wire.chunks(997) {
        h.client(&mut a, piece);
    }
    h.server(&mut a, OK0);
    h.close(&mut a, Close::Fin);
    let f = files(&h);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].sha256, sha(&data));
    assert_eq!(f[0].meta.declared_size, None);
    assert!(f[0].complete);
    assert_eq!(events(&h)[0].request_body_len, 70000);
}

#[test]
fn keep_alive_downloads_in_sequence() {
    let a1 = payload(1234, 5);
    let a2 = payload(99, 6);
    let r1 = cat(&[b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1234\r\n\r\n", &a1]);
    let r2 = cat(&[
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nContent-Disposition: attachment; filename=\"real.txt\"\r\n\r\n",
        &a2,
    ]);
    let h = run(&[
        (Dir::Orig, b"GET /img/a.png HTTP/1.1\r\nHost: h\r\n\r\n"),
        (Dir::Resp, &r1),
        (Dir::Orig, b"GET /dl?id=3 HTTP/1.1\r\nHost: h\r\n\r\n"),
        (Dir::Resp, &r2),
        (Dir::Orig, b"HEAD /img/a.png HTTP/1.1\r\nHost: h\r\n\r\n"),
        (Dir::Resp, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        (Dir::Orig, b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n"),
        (Dir::Resp, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n"),
    ]);
    let f = files(&h);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].sha256.as_str(), f[0].meta.name.as_deref()), (sha(&a1).as_str(), Some("a.png")));
    assert_eq!(f[0].meta.direction, Dir::Resp);
    assert_eq!((f[1].sha256.as_str(), f[1].meta.name.as_deref()), (sha(&a2).as_str(), Some("real.txt")));
    let ev = events(&h);
    assert_eq!(ev.len(), 4);
    assert_eq!(ev[0].response_content_type.as_deref(), Some("image/png"));
    assert_eq!(ev[2].method.as_deref(), Some("HEAD"));
    assert_eq!(ev[2].response_body_len, 0);
    assert_eq!(ev[3].status, Some(304));
    assert!(ev.iter().all(|e| e.anomalies.is_empty()), "{ev:?}");
}

#[test]
fn pipelined_requests_pair_in_order() {
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| payload(500 + i * 100, 10 + i as u8)).collect();
    let reqs = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\nGET /three HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut resp = Vec::new();
    for b in &bodies {
        resp.extend_from_slice(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes());
        resp.extend_from_slice(b);
    }
    let h = run(&[(Dir::Orig, reqs), (Dir::Resp, &resp)]);
    let ev = events(&h);
    assert_eq!(ev.len(), 3);
    for (i, (e, name)) in ev.iter().zip(["one", "two", "three"]).enumerate() {
        assert_eq!(e.uri.as_deref(), Some(format!("/{name}").as_str()));
        assert_eq!(e.response_objects[0].sha256, sha(&bodies[i]));
        assert_eq!(e.response_objects[0].name.as_deref(), Some(name));
    }
}

#[test]
fn gzip_response_and_deflate_request_are_decoded() {
    let text: Vec<u8> = (0..20000u32).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let gz = external("gzip", &["-c", "-n"], &text);
    let zlib = external(
        "python3",
        &["-c", "import sys,zlib;sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read()))"],
        &text,
    );
    let raw = external(
        "python3",
        &["-c", "import sys,zlib;c=zlib.compressobj(9,zlib.DEFLATED,-15);sys.stdout.buffer.write(c.compress(sys.stdin.buffer.read())+c.flush())"],
        &text,
    );
    let resp = cat(&[
        format!("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", gz.len()).as_bytes(),
        &gz,
    ]);
    let put1 = cat(&[
        format!("PUT /z HTTP/1.1\r\nContent-Encoding: deflate\r\nContent-Length: {}\r\n\r\n", zlib.len()).as_bytes(),
        &zlib,
    ]);
    let put2 = cat(&[
        format!("PUT /r HTTP/1.1\r\nContent-Encoding: deflate\r\nContent-Length: {}\r\n\r\n", raw.len()).as_bytes(),
        &raw,
    ]);
    let (mut h, mut a) = new();
    h.client(&mut a, b"GET /log.txt HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n");
    for p in resp.chunks(100) {
        h.server(&mut a, p);
    }
    h.client(&mut a, &put1);
    h.server(&mut a, OK0);
    h.client(&mut a, &put2);
    h.server(&mut a, OK0);
    h.close(&mut a, Close::Fin);
    let f = files(&h);
    assert_eq!(f.len(), 3);
    for o in &f {
        assert_eq!(o.sha256, sha(&text), "{:?}", o.meta.name);
        assert_eq!(o.size, text.len() as u64);
        assert!(o.complete);
    }
    // The bodies as sent are kept too, each the parent of its decoded object.
    let wire = as_sent(&h);
    assert_eq!(wire[0].meta.declared_size, Some(gz.len() as u64), "declared = Content-Length (wire)");
    for (o, w) in f.iter().zip(&wire) {
        assert_eq!(o.meta.parent, Some(w.id));
    }
    let digests = wire.iter().map(|o| o.sha256.to_string()).collect::<Vec<_>>();
    assert_eq!(digests, vec![sha(&gz), sha(&zlib), sha(&raw)]);
    assert!(wire.iter().all(|o| o.complete));
    let ev = events(&h);
    assert_eq!(ev[0].response_body_len, gz.len() as u64);
    assert!(ev.iter().all(|e| e.anomalies.is_empty()), "{ev:?}");
}

#[test]
fn truncated_gzip_is_incomplete() {
    let text = payload(50000, 7);
    let gz = external("gzip", &["-c", "-n"], &text);
    let cut = &gz[..gz.len() - 100];
    let resp = cat(&[
        format!("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", cut.len()).as_bytes(),
        cut,
    ]);
    let h = run(&[(Dir::Orig, b"GET /a HTTP/1.1\r\n\r\n"), (Dir::Resp, &resp)]);
    let f = files(&h);
    assert!(!f[0].complete);
    // All the bytes that were sent arrived: the object as sent is complete, and is the cut stream.
    assert_eq!(as_sent(&h)[0].sha256, sha(cut));
    assert!(as_sent(&h)[0].complete);
    assert!(events(&h)[0].anomalies.iter().any(|a| a == "truncated-compressed-stream"));
}

#[test]
fn gap_mid_body_then_resync_at_next_request() {
    let body = payload(4000, 8);
    let (mut h, mut a) = new();
    h.client(&mut a, b"PUT /a.bin HTTP/1.1\r\nHost: h\r\nContent-Length: 4000\r\n\r\n");
    h.client(&mut a, &body[..1000]);
    h.gap(&mut a, Dir::Orig, 500);
    h.client(&mut a, &body[1500..]);
    h.server(&mut a, OK0);
    h.client(&mut a, b"PUT /b.bin HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz");
    h.server(&mut a, OK0);
    h.close(&mut a, Close::Fin);
    let f = files(&h);
    assert_eq!(f.len(), 2);
    let mut expect = body.clone();
    expect[1000..1500].fill(0);
    assert_eq!(f[0].sha256, sha(&expect), "gap zero-filled");
    assert_eq!(f[0].gaps, vec![(1000, 500)]);
    assert!(!f[0].complete);
    assert_eq!(f[1].sha256, sha(b"xyz"));
    assert!(f[1].complete);
    let ev = events(&h);
    assert!(ev[0].anomalies.iter().any(|x| x == "gap"));
    assert!(ev[1].anomalies.is_empty(), "{:?}", ev[1].anomalies);
}

#[test]
fn gap_over_body_end_resyncs_at_the_next_request_line() {
    let (mut h, mut a) = new();
    h.client(&mut a, b"PUT /a.bin HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789");
    // The rest of the body and the start of the next request are lost; the one after is whole.
    h.gap(&mut a, Dir::Orig, 200);
    h.client(&mut a, b"-of-a-lost-header\r\nX: y\r\n\r\nPOST /c.bin HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
    h.server(&mut a, OK0);
    h.server(&mut a, OK0);
    h.server(&mut a, OK0);
    h.close(&mut a, Close::Fin);
    let f = files(&h);
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].size, 100);
    assert!(!f[0].complete);
    assert_eq!(f[1].meta.name.as_deref(), Some("c.bin"));
    assert_eq!(f[1].sha256, sha(b"ok"));
    assert!(f[1].complete);
}

#[test]
fn gap_in_chunked_framing_resyncs() {
    let (mut h, mut a) = new();
    h.client(&mut a, b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n");
    h.gap(&mut a, Dir::Orig, 7);
    h.client(&mut a, b"\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n");
    h.server(&mut a, OK0);
    h.server(&mut a, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz");
    h.close(&mut a, Close::Fin);
    let ev = events(&h);
    assert!(ev.iter().any(|e| e.uri.as_deref() == Some("/after") && e.response_objects.len() == 1), "{ev:?}");
    let f = files(&h);
    assert_eq!(f[0].sha256, sha(b"0123456789abcdef"));
    assert!(!f[0].complete);
}

#[test]
fn response_until_close_and_mid_stream_start() {
    // Caught after the request: the first bytes are the server's.
    let body = payload(777, 9);
    let (mut h, mut a) = new();
    h.send(&mut a, Dir::Orig, &cat(&[b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", &body]));
    h.close(&mut a, Close::Fin);
    let f = files(&h);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].sha256, sha(&body));
    assert!(f[0].complete, "ended by FIN as HTTP/1.0 says");
    let ev = events(&h);
    assert!(ev[0].anomalies.iter().any(|a| a == "response-without-request"));
}

#[test]
fn too_many_headers_degrades_to_raw_stream() {
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..150 {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\nGET /more HTTP/1.1\r\n\r\n");
    let h = run(&[(Dir::Orig, &req), (Dir::Resp, b"HTTP/1.1 400 Bad\r\n\r\n")]);
    let ev = events(&h);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].anomalies.iter().any(|a| a == "too-many-headers"), "{ev:?}");
    let raw: Vec<_> = h.sink.objects.iter().filter(|o| o.meta.kind == "stream").collect();
    assert_eq!(raw.len(), 2);
    let client = raw.iter().find(|o| o.meta.direction == Dir::Orig).unwrap();
    assert_eq!(client.sha256, sha(&req), "the whole request from the bad header block on");
}

#[test]
fn header_block_over_64k_degrades() {
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 70 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let (mut h, mut a) = new();
    for p in req.chunks(1460) {
        h.client(&mut a, p);
    }
    h.close(&mut a, Close::Fin);
    assert!(events(&h)[0].anomalies.iter().any(|a| a == "header-block-too-large"));
    let raw: Vec<_> = h.sink.objects.iter().filter(|o| o.meta.kind == "stream").collect();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].sha256, sha(&req));
}

#[test]
fn more_than_64_pending_requests_degrades() {
    let one = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * 70).collect();
    let h = run(&[(Dir::Orig, &all)]);
    let ev = events(&h);
    assert_eq!(ev.len(), 64);
    assert!(ev.iter().all(|e| e.anomalies.iter().any(|a| a == "too-many-pending-requests")));
    let raw: Vec<_> = h.sink.objects.iter().filter(|o| o.meta.kind == "stream").collect();
    assert_eq!(raw[0].size, (one.len() * 6) as u64, "requests 65..70 kept raw");
}

#[test]
fn glance_image_upload_names_the_image() {
    let img = payload(20000, 11);
    let req = format!(
        "PUT /v2/images/6d1e7d8b-5a4c-4c2e-9a44-0f5b0e2f3c11/file HTTP/1.1\r\nHost: glance:9292\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        img.len()
    );
    let h = run(&[
        (Dir::Orig, &cat(&[req.as_bytes(), &img, b"\r\n0\r\n\r\n"])),
        (Dir::Resp, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]);
    let f = files(&h);
    assert_eq!(f[0].sha256, sha(&img));
    assert_eq!(f[0].meta.name.as_deref(), Some("6d1e7d8b-5a4c-4c2e-9a44-0f5b0e2f3c11"));
    assert_eq!(f[0].meta.context["image_id"], "6d1e7d8b-5a4c-4c2e-9a44-0f5b0e2f3c11");
    let ev = events(&h);
    assert_eq!(ev[0].image_id.as_deref(), Some("6d1e7d8b-5a4c-4c2e-9a44-0f5b0e2f3c11"));
    assert_eq!(ev[0].status, Some(204));
}

#[test]
fn s3_multipart_parts_and_completion_listing() {
    let p1 = payload(6000, 12);
    let p2 = payload(3000, 13);
    let md5 = |b: &[u8]| {
        use md5::Digest;
        hex::encode(md5::Md5::digest(b))
    };
    let put = |n: u32, b: &[u8]| {
        cat(&[
            format!(
                "PUT /bkt/dir/big.iso?partNumber={n}&uploadId=UP42 HTTP/1.1\r\nHost: s3.example\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )
            .as_bytes(),
            b,
        ])
    };
    let xml = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"{}\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"{}\"</ETag></Part></CompleteMultipartUpload>",
        md5(&p1),
        md5(&p2)
    );
    let complete = format!(
        "POST /bkt/dir/big.iso?uploadId=UP42 HTTP/1.1\r\nHost: s3.example\r\nContent-Length: {}\r\n\r\n{xml}",
        xml.len()
    );
    let ok = b"HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 0\r\n\r\n";
    // Part 2 first: parts need not come in order.
    let h = run(&[
        (Dir::Orig, &put(2, &p2)),
        (Dir::Resp, ok),
        (Dir::Orig, &put(1, &p1)),
        (Dir::Resp, ok),
        (Dir::Orig, complete.as_bytes()),
        (Dir::Resp, ok),
    ]);
    let f = files(&h);
    assert_eq!(f[0].meta.context["s3"]["part_number"], 2);
    assert_eq!(f[0].meta.context["s3"]["upload_id"], "UP42");
    assert_eq!(f[0].meta.context["s3"]["bucket"], "bkt");
    assert_eq!(f[0].meta.context["s3"]["key"], "dir/big.iso");
    let ev = events(&h);
    let c = ev[2].s3_complete.as_ref().expect("completion listing");
    assert_eq!(c.upload_id, "UP42");
    let got: Vec<(u32, Option<String>, Option<String>)> =
        c.parts.iter().map(|p| (p.part_number, p.sha256.clone(), p.etag.clone())).collect();
    assert_eq!(got, vec![(1, Some(sha(&p1)), Some(md5(&p1))), (2, Some(sha(&p2)), Some(md5(&p2)))]);
}

#[test]
fn secrets_are_masked_in_the_uri() {
    let h = run(&[(Dir::Orig, b"GET /login?user=joe&password=hunter2 HTTP/1.1\r\n\r\n"), (Dir::Resp, OK0)]);
    let ev = events(&h);
    assert_eq!(ev[0].uri.as_deref(), Some("/login?user=joe&password=***"));
    let json = serde_json::to_string(&h.sink.iri[0]).unwrap();
    assert!(!json.contains("hunter2"));
}

#[test]
fn connect_tunnel_goes_raw() {
    let h = run(&[
        (Dir::Orig, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
        (Dir::Resp, b"HTTP/1.1 200 Connection established\r\n\r\n"),
        (Dir::Orig, b"\x16\x03\x01\x00\x05hello"),
    ]);
    let ev = events(&h);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].status, Some(200));
    let raw: Vec<_> = h.sink.objects.iter().filter(|o| o.meta.kind == "stream").collect();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].sha256, sha(b"\x16\x03\x01\x00\x05hello"));
}

#[test]
fn resync_on_a_request_line_split_across_segments() {
    let (mut h, mut a) = new();
    h.client(&mut a, b"PUT /a HTTP/1.1\r\nContent-Length: 50\r\n\r\n0123");
    h.gap(&mut a, Dir::Orig, 60);
    // Junk, then a request line cut after "PU", then the rest with a body in the same segment.
    h.client(&mut a, b"junk\r\nPU");
    h.client(&mut a, b"T /b.txt HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    h.server(&mut a, OK0);
    h.server(&mut a, OK0);
    h.close(&mut a, Close::Fin);
    let f = files(&h);
    let b = f.iter().find(|o| o.meta.name.as_deref() == Some("b.txt")).expect("b.txt after resync");
    assert_eq!(b.sha256, sha(b"hello"));
    assert!(b.complete);
}

#[test]
fn garbage_never_panics_and_stays_bounded() {
    // A few hostile shapes: huge chunk size, bad gzip, endless trailer, NUL-filled headers.
    let h = run(&[
        (Dir::Orig, b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc"),
        (Dir::Resp, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n\r\n\x1f\x8b\x09\x00garbage!"),
    ]);
    assert!(!files(&h).iter().any(|o| o.complete));
    let ev = events(&h);
    assert!(
        ev.iter().any(|e| e.anomalies.iter().any(|a| a == "content-decoding-error" || a == "bad-gzip-header")),
        "{ev:?}"
    );
}
