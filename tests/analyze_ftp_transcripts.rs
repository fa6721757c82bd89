//! FTP analyzer on hand-written transcripts: one control connection plus the data connections
//! it announces, driven the way the flow layer drives them (the data connection's analyzer comes
//! from `Expectations::claim`, keyed by the connection's responder).
//!
//! Expected values are hand-computed from the RFCs (PORT 198,51,100,7,165,97 = port 42337;
//! CRLF -> LF) and SHA-256 is computed with `ring` on the bytes the test sends.

use std::sync::Arc;

use serde_json::Value;
use tapir::analyze::ftp::{self, FtpAction, FtpEvent, FtpMode};
use tapir::analyze::{Cx, Expectations, StreamAnalyzer};
use tapir::content::FileLayer;
use tapir::record::{Cin, Close, Dir, FlowDescr, Liid, ObjectRecord, Provenance, Scope, VecSink};
use tapir::timestamp::Timestamp;

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn flow(orig: &str, resp: &str) -> FlowDescr {
    FlowDescr {
        proto: "tcp".into(),
        orig: orig.parse().unwrap(),
        resp: resp.parse().unwrap(),
        vlans: Vec::new(),
        tunnels: Vec::new(),
    }
}

struct Conn {
    a: Box<dyn StreamAnalyzer>,
    flow: FlowDescr,
    cin: Cin,
    off: [u64; 2],
}

struct Session {
    files: FileLayer,
    expect: Expectations,
    sink: VecSink,
    liid: Liid,
    prov: Arc<Provenance>,
    now: Timestamp,
    ctrl: Conn,
    next_cin: Cin,
}

impl Session {
    fn new(client: &str, server: &str) -> Session {
        Session {
            files: FileLayer::new(),
            expect: Expectations::default(),
            sink: VecSink::default(),
            liid: Liid::new("TEST").unwrap(),
            prov: Arc::new(Provenance { selector: "t".into(), target: "t".into(), chain: Vec::new() }),
            now: Timestamp::from_secs(1_767_225_600),
            ctrl: Conn { a: ftp::analyzer(), flow: flow(client, server), cin: Cin::FIRST, off: [0, 0] },
            next_cin: Cin::new(2),
        }
    }

    fn drive(&mut self, which: Option<&mut Conn>, f: impl FnOnce(&mut dyn StreamAnalyzer, &mut Cx, &mut [u64; 2])) {
        self.now = self.now.add_nanos(1_000_000);
        let conn = match which {
            Some(c) => c,
            None => &mut self.ctrl,
        };
        let mut cx = Cx {
            now: self.now,
            liid: &self.liid,
            cin: conn.cin,
            flow: &conn.flow,
            provenance: &self.prov,
            scope: Scope::IriAndCc,
            files: &mut self.files,
            expect: &mut self.expect,
            sink: &mut self.sink,
        };
        f(conn.a.as_mut(), &mut cx, &mut conn.off);
    }

    fn send(&mut self, which: Option<&mut Conn>, dir: Dir, bytes: &[u8]) {
        self.drive(which, |a, cx, off| {
            let o = off[dir.index()];
            off[dir.index()] += bytes.len() as u64;
            a.data(dir, o, bytes, cx);
        });
    }

    /// Client lines, each ended by CRLF.
    fn c(&mut self, text: &str) {
        for l in text.lines() {
            self.send(None, Dir::Orig, format!("{l}\r\n").as_bytes());
        }
    }

    /// Server lines, in one segment.
    fn s(&mut self, text: &str) {
        let b: String = text.lines().map(|l| format!("{l}\r\n")).collect();
        self.send(None, Dir::Resp, b.as_bytes());
    }

    /// A new connection from `orig` to `resp`: the analyzer the flow layer would give it.
    fn connect(&mut self, orig: &str, resp: &str) -> Conn {
        let f = flow(orig, resp);
        let a = self.expect.claim(&self.liid, &f, self.now).expect("an announced data connection");
        let cin = self.next_cin;
        self.next_cin = cin.next();
        Conn { a, flow: f, cin, off: [0, 0] }
    }

    fn data(&mut self, c: &mut Conn, dir: Dir, bytes: &[u8]) {
        self.send(Some(c), dir, bytes);
    }

    fn data_close(&mut self, c: &mut Conn) {
        self.drive(Some(c), |a, cx, _| a.close(Close::Fin, cx));
    }

    fn close(&mut self) {
        self.drive(None, |a, cx, _| a.close(Close::Fin, cx));
    }

    fn events(&self) -> Vec<FtpEvent> {
        self.sink.iri.iter().filter_map(|r| r.event.app::<FtpEvent>().cloned()).collect()
    }

    fn transfers(&self) -> Vec<FtpEvent> {
        self.events().into_iter().filter(|e| e.action == FtpAction::Transfer).collect()
    }

    fn object(&self, name: &str) -> &ObjectRecord {
        self.sink.objects.iter().find(|o| o.meta.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no {name}"))
    }

    fn bytes(&self, o: &ObjectRecord) -> &[u8] {
        &self.sink.object_bytes[&(o.liid.clone(), o.id)]
    }
}

const CLIENT: &str = "198.51.100.7:35792";
const SERVER: &str = "203.0.113.10:21";

fn login(s: &mut Session) {
    s.s("220 pyftpdlib ready.");
    s.c("USER joe");
    s.s("331 Username ok, send password.");
    s.c("PASS secret");
    s.s("230 Login successful.");
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn passive_pasv_upload() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("TYPE I");
    s.s("200 Type set to: Binary.");
    s.c("PASV");
    s.s("227 Entering passive mode (203,0,113,10,234,104).");
    // 234*256+104 = 60008: the client connects to the server's announced port.
    let mut d = s.connect("198.51.100.7:48884", "203.0.113.10:60008");
    s.c("STOR up-passive.bin");
    s.s("125 Data connection already open. Transfer starting.");
    let body = payload(300_000);
    for chunk in body.chunks(1448) {
        s.data(&mut d, Dir::Orig, chunk);
    }
    s.data_close(&mut d);
    s.s("226 Transfer complete.");
    s.c("QUIT");
    s.s("221 Goodbye.");
    s.close();

    let o = s.object("up-passive.bin");
    assert_eq!((o.meta.kind.as_str(), o.meta.protocol.as_str()), ("file", "ftp"));
    assert_eq!(o.sha256, sha256(&body));
    assert_eq!(o.size, 300_000);
    assert!(o.complete);
    assert_eq!(o.meta.direction, Dir::Orig);
    assert_eq!(o.meta.context["user"], "joe");
    assert_eq!(o.meta.context["command"], "STOR");
    assert_eq!(o.meta.context["mode"], "passive");
    let t = s.transfers();
    assert_eq!(t.len(), 1);
    let e = &t[0];
    assert_eq!(
        (e.user.as_deref(), e.command.as_deref(), e.path.as_deref()),
        (Some("joe"), Some("STOR"), Some("up-passive.bin"))
    );
    assert_eq!(e.reply.as_ref().unwrap().code, 226);
    assert_eq!(e.success, Some(true));
    let tr = e.transfer.as_ref().unwrap();
    assert_eq!(tr.mode, Some(FtpMode::Passive));
    assert_eq!(tr.announced, Some("203.0.113.10:60008".parse().unwrap()));
    assert_eq!(tr.data_flow.as_ref().unwrap().orig, "198.51.100.7:48884".parse().unwrap());
    assert_eq!(tr.sha256.as_deref(), Some(sha256(&body).as_str()));
    assert_eq!((tr.size, tr.wire_bytes, tr.type_code.as_deref()), (Some(300_000), 300_000, Some("I")));
    assert_eq!(tr.preliminary.as_ref().unwrap().code, 125);
    // One login event, successful, with the user and no password anywhere.
    let logins: Vec<_> = s.events().into_iter().filter(|e| e.action == FtpAction::Login).collect();
    assert_eq!(logins.len(), 1);
    assert_eq!((logins[0].user.as_deref(), logins[0].success), (Some("joe"), Some(true)));
    no_secret(&s);
}

/// The password never shows in an IRI or object record.
fn no_secret(s: &Session) {
    for r in &s.sink.iri {
        let j = serde_json::to_string(r).unwrap();
        assert!(!j.contains("secret"), "{j}");
    }
    for o in &s.sink.objects {
        let j = serde_json::to_string(o).unwrap();
        assert!(!j.contains("secret"), "{j}");
    }
}

#[test]
fn active_port_upload_server_connects_to_client() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("TYPE I\r\nPORT 198,51,100,7,165,97");
    s.s("200 Type set to: Binary.");
    s.s("200 Active data connection established.");
    // 165*256+97 = 42337: the server connects from port 20 to the client's announced port.
    let mut d = s.connect("203.0.113.10:20", "198.51.100.7:42337");
    s.c("STOR up-active.bin");
    s.s("150 File status okay. About to open data connection.");
    let body = payload(5000);
    s.data(&mut d, Dir::Resp, &body);
    s.data_close(&mut d);
    s.s("226 Transfer complete.");
    s.close();
    let o = s.object("up-active.bin");
    assert_eq!(o.sha256, sha256(&body));
    assert_eq!(o.meta.direction, Dir::Resp);
    assert_eq!(o.meta.context["mode"], "active");
    let e = &s.transfers()[0];
    let tr = e.transfer.as_ref().unwrap();
    assert_eq!((tr.mode, tr.announced_by.as_deref()), (Some(FtpMode::Active), Some("PORT")));
    assert_eq!(tr.direction, Some(Dir::Resp));
}

#[test]
fn epsv_and_eprt_over_ipv6() {
    let mut s = Session::new("[2001:db8::7]:40000", "[2001:db8::10]:21");
    login(&mut s);
    s.c("EPSV");
    s.s("229 Entering extended passive mode (|||60001|).");
    // RFC 2428: the address is the control connection's server address.
    let mut d = s.connect("[2001:db8::7]:40001", "[2001:db8::10]:60001");
    s.c("STOR v6.bin");
    s.s("150 ok");
    s.data(&mut d, Dir::Orig, b"ipv6 passive");
    s.data_close(&mut d);
    s.s("226 done");
    s.c("EPRT |2|2001:db8::7|5282|");
    s.s("200 EPRT ok");
    let mut d2 = s.connect("[2001:db8::10]:20", "[2001:db8::7]:5282");
    s.c("RETR back.bin");
    s.s("150 Opening BINARY mode data connection for back.bin (11 bytes).");
    s.data(&mut d2, Dir::Orig, b"ipv6 active");
    s.data_close(&mut d2);
    s.s("226 done");
    s.close();
    assert_eq!(s.object("v6.bin").sha256, sha256(b"ipv6 passive"));
    let back = s.object("back.bin");
    assert_eq!(back.sha256, sha256(b"ipv6 active"));
    assert_eq!(back.meta.declared_size, Some(11));
    let t = s.transfers();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].transfer.as_ref().unwrap().announced_by.as_deref(), Some("EPSV"));
    assert_eq!(t[1].command.as_deref(), Some("RETR"));
    assert_eq!(t[1].transfer.as_ref().unwrap().mode, Some(FtpMode::Active));
}

#[test]
fn passive_retr_download_goes_server_to_client() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("TYPE I");
    s.s("200 ok");
    s.c("PASV");
    s.s("227 Entering Passive Mode (203,0,113,10,4,1).");
    let mut d = s.connect("198.51.100.7:50000", "203.0.113.10:1025");
    s.c("RETR /pub/robots.txt");
    s.s("150 Opening BINARY mode data connection (77 bytes).");
    s.data(&mut d, Dir::Resp, b"User-agent: *\nDisallow: /\n");
    s.data_close(&mut d);
    s.s("226 Transfer complete.");
    s.close();
    let o = s.object("/pub/robots.txt");
    assert_eq!(o.meta.direction, Dir::Resp);
    assert_eq!(s.bytes(o), b"User-agent: *\nDisallow: /\n");
    assert_eq!(o.meta.declared_size, Some(77));
}

#[test]
fn data_before_command_whole_connection() {
    // The data connection opens, carries the file and closes before the STOR is seen (capture
    // reordering between two connections): the object still gets its name and the IRI its hash.
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("PASV");
    s.s("227 Entering passive mode (203,0,113,10,234,105).");
    let mut d = s.connect("198.51.100.7:48885", "203.0.113.10:60009");
    let body = payload(2000);
    s.data(&mut d, Dir::Orig, &body);
    s.data_close(&mut d);
    assert!(s.sink.objects.is_empty(), "held until the command names it");
    s.c("STOR early.bin");
    s.s("150 ok\r\n226 Transfer complete.");
    s.close();
    let o = s.object("early.bin");
    assert_eq!(o.sha256, sha256(&body));
    // No TYPE was sent: the bytes are kept as sent.
    let e = &s.transfers()[0];
    assert_eq!(e.path.as_deref(), Some("early.bin"));
    assert_eq!(e.transfer.as_ref().unwrap().sha256.as_deref(), Some(sha256(&body).as_str()));
}

#[test]
fn data_before_reply_and_over_the_hold_bound() {
    // 100 KiB arrive before the STOR: 64 KiB are held, then the object opens without a name;
    // its metadata is completed before it ends.
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("TYPE I");
    s.s("200 ok");
    s.c("PASV");
    s.s("227 Entering passive mode (203,0,113,10,234,106).");
    let mut d = s.connect("198.51.100.7:48886", "203.0.113.10:60010");
    let body = payload(100_000);
    for chunk in body.chunks(1000) {
        s.data(&mut d, Dir::Orig, chunk);
    }
    s.c("STOR late.bin");
    s.data_close(&mut d);
    s.s("150 ok");
    s.s("226 ok");
    s.close();
    let o = s.object("late.bin");
    assert_eq!(o.sha256, sha256(&body));
    assert_eq!(o.meta.context["opened_before_command"], true);
    assert_eq!(o.meta.context["command"], "STOR");
    assert_eq!(s.transfers()[0].reply.as_ref().unwrap().code, 226);
}

#[test]
fn rest_and_appe_offsets() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("TYPE I");
    s.s("200 ok");
    s.c("PASV");
    s.s("227 =203,0,113,10,200,1");
    let mut d = s.connect("198.51.100.7:40001", "203.0.113.10:51201");
    s.c("REST 1000");
    s.s("350 Restarting at 1000.");
    s.c("APPE big.img");
    s.s("150 ok");
    s.data(&mut d, Dir::Orig, b"the tail of the image");
    s.data_close(&mut d);
    s.s("226 ok");
    s.close();
    let o = s.object("big.img");
    assert_eq!(s.bytes(o), b"the tail of the image", "the object holds the bytes sent");
    assert_eq!(o.meta.context["offset"], 1000);
    assert_eq!(o.meta.context["command"], "APPE");
    let e = &s.transfers()[0];
    assert_eq!(e.command.as_deref(), Some("APPE"));
    assert_eq!(e.transfer.as_ref().unwrap().offset, Some(1000));
}

#[test]
fn ascii_mode_undone() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("TYPE A");
    s.s("200 Type set to: ASCII.");
    s.c("PASV");
    s.s("227 ok (203,0,113,10,1,2)");
    let mut d = s.connect("198.51.100.7:40002", "203.0.113.10:258");
    s.c("STOR notes.txt");
    s.s("150 ok");
    // A CRLF split across segments, and a lone CR that must stay.
    s.data(&mut d, Dir::Orig, b"line one\r");
    s.data(&mut d, Dir::Orig, b"\nline\rtwo\r\n\r");
    s.data_close(&mut d);
    s.s("226 ok");
    s.close();
    let o = s.object("notes.txt");
    assert_eq!(s.bytes(o), b"line one\nline\rtwo\n\r");
    assert_eq!(o.sha256, sha256(b"line one\nline\rtwo\n\r"));
    assert_eq!(o.meta.context["ascii_crlf_to_lf"], true);
    let tr = s.transfers()[0].transfer.clone().unwrap();
    assert!(tr.ascii_crlf_to_lf);
    assert_eq!((tr.type_code.as_deref(), tr.wire_bytes, tr.size), (Some("A"), 9 + 12, Some(19)));
}

#[test]
fn login_failure_then_success_and_file_commands() {
    let mut s = Session::new(CLIENT, SERVER);
    s.s("220-Welcome\r\n to the server\r\n220 ready");
    s.c("FEAT");
    s.s("211-Features supported:\r\n EPRT\r\n 230 is not a code here\r\n211 End FEAT.");
    s.c("USER joe\r\nPASS wrongsecret");
    s.s("331 ok\r\n530 Authentication failed.");
    s.c("USER joe\r\nPASS secret");
    s.s("331 ok\r\n230 Login successful.");
    s.c("RNFR a.txt\r\nRNTO b.txt");
    s.s("350 Ready for destination name.\r\n250 Renaming ok.");
    s.c("DELE old.txt");
    s.s("250 File removed.");
    s.c("MKD /new dir");
    s.s("257 \"/new dir\" directory created.");
    s.c("DELE missing");
    s.s("550 No such file or directory.");
    s.close();
    let ev = s.events();
    let logins: Vec<_> = ev.iter().filter(|e| e.action == FtpAction::Login).collect();
    assert_eq!(logins.len(), 2);
    assert_eq!((logins[0].success, logins[0].reply.as_ref().unwrap().code), (Some(false), 530));
    assert_eq!((logins[1].success, logins[1].user.as_deref()), (Some(true), Some("joe")));
    let rename = ev.iter().find(|e| e.action == FtpAction::Rename).unwrap();
    assert_eq!(
        (rename.path.as_deref(), rename.to.as_deref(), rename.success),
        (Some("a.txt"), Some("b.txt"), Some(true))
    );
    let dele: Vec<_> = ev.iter().filter(|e| e.action == FtpAction::Delete).collect();
    assert_eq!(dele.len(), 2);
    assert_eq!((dele[0].path.as_deref(), dele[0].success), (Some("old.txt"), Some(true)));
    assert_eq!((dele[1].success, dele[1].reply.as_ref().unwrap().code), (Some(false), 550));
    let mkd = ev.iter().find(|e| e.action == FtpAction::Mkdir).unwrap();
    assert_eq!(mkd.path.as_deref(), Some("/new dir"));
    assert_eq!(mkd.reply.as_ref().unwrap().text, "\"/new dir\" directory created.");
    no_secret(&s);
    let j = serde_json::to_string(&s.sink.iri).unwrap();
    assert!(!j.contains("wrongsecret"));
}

#[test]
fn multi_line_reply_text_is_joined() {
    let mut s = Session::new(CLIENT, SERVER);
    s.s("220 ready");
    s.c("USER joe");
    s.s("230-Welcome\r\n230-  second line\r\n230 Logged in.");
    s.close();
    let e = &s.events()[0];
    assert_eq!(e.reply.as_ref().unwrap().text, "Welcome\n  second line\nLogged in.");
    assert_eq!(e.success, Some(true));
}

#[test]
fn auth_tls_stops_parsing() {
    let mut s = Session::new(CLIENT, SERVER);
    s.s("220 ready");
    s.c("AUTH TLS");
    s.s("234 AUTH TLS successful");
    // What follows is TLS; even bytes that look like commands are not parsed.
    s.send(None, Dir::Orig, b"\x16\x03\x01\x00\x05hello");
    s.c("USER joe\r\nPASV\r\nSTOR x");
    s.s("227 (203,0,113,10,1,1)");
    s.close();
    let ev = s.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].action, ev[0].success, ev[0].path.as_deref()), (FtpAction::AuthTls, Some(true), Some("TLS")));
    assert!(s.expect.is_empty(), "nothing announced after TLS");
}

#[test]
fn stou_name_from_reply_and_failed_transfer() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("PASV");
    s.s("227 (203,0,113,10,1,3)");
    let mut d = s.connect("198.51.100.7:40003", "203.0.113.10:259");
    s.c("STOU");
    s.s("150 FILE: up.1");
    s.data(&mut d, Dir::Orig, b"unique");
    s.data_close(&mut d);
    s.s("226 Transfer complete.");
    s.c("RETR nothere");
    s.s("550 No such file.");
    s.close();
    assert_eq!(s.object("up.1").sha256, sha256(b"unique"));
    let t = s.transfers();
    assert_eq!(t.len(), 2);
    assert_eq!((t[1].success, t[1].transfer.as_ref().unwrap().object), (Some(false), None));
}

#[test]
fn bounds_long_lines_expectations_pending() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    let long = format!("STOR {}", "x".repeat(9000));
    s.c(&long);
    s.s("425 Use PORT or PASV first.");
    for i in 0..20 {
        s.c("PASV");
        s.s(&format!("227 (203,0,113,10,10,{i})"));
    }
    assert_eq!(s.expect.len(), 16, "at most 16 announcements per control connection");
    for _ in 0..70 {
        s.c("NOOP");
    }
    s.c("STOR after.bin");
    s.close();
    let ev = s.events();
    let a = ev.iter().find(|e| e.action == FtpAction::Anomaly).unwrap();
    assert_eq!(a.anomalies.long_lines, 1);
    assert_eq!(a.anomalies.expect_refused, 4);
    assert_eq!(a.anomalies.pending_overflow, 1);
    // After degrading, the rest of the client's bytes are a raw stream object.
    let raw = s.sink.objects.iter().find(|o| o.meta.kind == "stream").unwrap();
    assert!(s.bytes(raw).ends_with(b"STOR after.bin\r\n"));
    // The long line was cut to 8 KiB, not lost: its STOR is a transfer (no data, no reply).
    let t = s.transfers();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].path.as_ref().map(String::len), Some(8 * 1024 - "STOR ".len()));
    assert_eq!(t[0].reply.as_ref().map(|r| r.code), Some(425));
}

#[test]
fn gap_resyncs_on_a_command() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.send(None, Dir::Orig, b"DELE par");
    s.drive(None, |a, cx, off| {
        let o = off[0];
        off[0] += 10;
        a.gap(Dir::Orig, o, 10, cx);
    });
    s.send(None, Dir::Orig, b"tial.txt\r\nMKD d\r\n");
    s.s("250 ok");
    s.close();
    let ev = s.events();
    let mkd = ev.iter().find(|e| e.action == FtpAction::Mkdir).unwrap();
    assert_eq!(mkd.path.as_deref(), Some("d"));
    assert!(ev.iter().all(|e| e.action != FtpAction::Delete));
    let a = ev.iter().find(|e| e.action == FtpAction::Anomaly).unwrap();
    assert_eq!(a.anomalies.gaps, 1);
}

#[test]
fn iri_json_shape() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.close();
    let j: Value = serde_json::to_value(&s.sink.iri[0]).unwrap();
    assert_eq!(j["event"], "ftp");
    assert_eq!(j["action"], "login");
    assert_eq!(j["user"], "joe");
    assert_eq!(j["reply"]["code"], 230);
}

#[test]
fn no_type_command_keeps_bytes_as_sent() {
    let mut s = Session::new(CLIENT, SERVER);
    login(&mut s);
    s.c("PASV");
    s.s("227 ok (203,0,113,10,1,4)");
    let mut d = s.connect("198.51.100.7:40004", "203.0.113.10:260");
    s.c("STOR raw.bin");
    s.s("150 ok");
    s.data(&mut d, Dir::Orig, b"a\r\nb\r\n");
    s.data_close(&mut d);
    s.s("226 ok");
    s.close();
    let o = s.object("raw.bin");
    assert_eq!(s.bytes(o), b"a\r\nb\r\n");
    let tr = s.transfers()[0].transfer.clone().unwrap();
    assert_eq!((tr.type_code, tr.ascii_crlf_to_lf), (None, false));
}
