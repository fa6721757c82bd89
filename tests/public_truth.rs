//! Every public capture in `../shared/pcaps/` against every file its peer-tool truth lists for
//! HTTP, FTP or SMTP (`truth/<source>/**.json`: tshark `--export-objects http|ftp-data|imf`,
//! Python's `email` parts of those exports, Suricata 7 `fileinfo` seen whole, and
//! `truth/public_agreement.tsv`, the hashes the source projects state themselves).
//!
//! One `tapir replay` per capture, with a warrant on every address. Each expected sha256 is either
//! among tapir's objects, or matched by a documented rule (`alt_rule`), or listed in `DIVERGENCES`
//! with the reason and, where it can be, a check of what tapir has instead. A divergence that
//! stops being one (tapir now has the peer's hash) fails the test too, so the table stays true.
//! Expectations come from the peers, never from tapir's own earlier output.
//!
//! The peers never check checksums (tshark and tcpflow by default, Suricata was run `-k none`),
//! and several suricata-verify captures were edited by hand without fixing them: tapir is run
//! as they were, `--checksums off`. What its default (`auto`, see `flow::evidence`) changes is
//! checked by `checksum_validation_changes_only_what_failed_its_checksum`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::Value;

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps"))
}

const WARRANT: &str = "[[warrant]]\nliid = \"ALL\"\nstart = \"1970-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"cidr:0.0.0.0/0\", \"cidr:::/0\"]\n";

/// The truth folders, one JSON per capture.
const SOURCES: &[&str] = &["suricata-verify", "zeek", "ndpi", "tcpdump", "fq"];

/// Captures whose truth is not checked at all, with why. Empty: every capture with a file in its
/// truth is replayed (the whole sweep takes seconds).
const KNOWN: &[(&str, &str)] = &[];

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// What tapir is held to instead of the peer's hash.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// Only that the peer's hash is really absent (the reason is in the table).
    Absent,
    /// The peer's file is the first `n` bytes of one of tapir's objects.
    Prefix(usize),
    /// The peer's object is a whole multipart body: Python's parts of it are all tapir files.
    PythonParts,
    /// tapir reports this anomaly in the capture's IRI instead of a file.
    Anomaly(&'static str),
    /// The peer's file (of the size the truth gives) is a slice of one of tapir's objects.
    Slice,
}

struct Div {
    cap: &'static str,
    /// sha256 prefix of the peer's file; "" = every expected file of `src` in this capture.
    sha: &'static str,
    /// Which peer listed it (`tshark-imf`, `suricata-http`, `stated`...); "" = any.
    src: &'static str,
    why: &'static str,
    check: Check,
}

const BARE_CR: &str = "a bare CR before `Transfer-Encoding: chunked` makes it an obs-fold continuation (RFC 9112 2.2: bare CR is SP), so Content-Length 68 frames the body as Suricata reads it; tshark takes the chunked line";
const MULTIPART: &str = "tshark exports the whole multipart body; tapir stores the parts";
const SURICATA_GAPS: &str =
    "Suricata hashes a file with gaps without the missing bytes; tapir zero-fills them (incomplete object)";
const LONG_LINE: &str = "winmail.dat long-line tests: tshark, Python and Suricata disagree (uncertain)";
const TSHARK_DOT: &str = "tshark keeps dot-stuffing and repeats a segment in this IMF export; Python parsed that";
const PIPELINED: &str = "tshark's IMF includes the pipelined commands sent in the DATA segment";
const DATA_REFUSED: &str = "the server refused DATA (503): tshark exports the rejected lines as mail anyway";
const ZEEK_LIMIT: &str = "zeek's test caps extraction (extract.limit): its file is a prefix of the transfer";
const NO_PEER_AGREES: &str =
    "zeek Baseline file no peer reproduces (public_agreement: Suricata, tshark, tcpflow all differ): uncertain";
const NESTED_IMF: &str =
    "tshark exports each nested message/rfc822 entity of the HTTP body as IMF; tapir stores the leaf parts";
const RTSP: &str = "RTSP, not HTTP: libhtp takes RTSP/1.0 as HTTP, tapir keeps these flows as streams";
const FTP_TSHARK_LAST_SEG: &str =
    "capture stops mid-transfer: tshark leaves out the last segment; its file is tapir's first 108,000 bytes";
const FTP_BIG_HOLES: &str = "5.4 GB RETR of which a few segments are captured: tapir keeps holes zero-filled; \
     Suricata stops at the first hole (tapir's first 14,480 bytes), tshark glues segments without holes";
const SURICATA_B64_PAD: &str =
    "base64 after padding: Python (= tapir) stops at the first complete padding, Suricata decodes on";
const SURICATA_QP: &str = "Suricata's quoted-printable output is 4 bytes longer than Python's (= tapir's)";
const ZEEK_GAP_PREFIX: &str = "zeek stops the mail at the BDAT gap; tapir keeps it whole with the gap zero-filled";
const SURICATA_RANGE: &str =
    "Suricata reassembles the 206 Range responses into one file; tapir stores each response (Suricata's per-response files are found)";
const EVADER: &str =
    "http-evader: tapir does not accept the evasive framing (it reports an anomaly); Suricata decodes it as browsers do";
const TSHARK_EVADER: &str = "http-evader: tshark does not undo the evasion; tapir's body is Suricata's EICAR";

const SURICATA_PAST_CL: &str =
    "the server sends more than Content-Length before closing: Suricata keeps the extra bytes, tshark and tapir stop at the declared length";
const MULTIPART_EMPTY: &str =
    "multipart body with only the close delimiter: tshark exports the body, tapir has no part to store";
const TSHARK_CHUNKS: &str =
    "tshark stops after the first chunk (8 bytes); Suricata and tapir decode both chunks (12 bytes, found)";
const TSHARK_SPLIT: &str = "tshark splits one response into per-segment objects: each is a slice of tapir's response";
const HTTP09: &str = "HTTP/0.9 `GET /` with a header-less reply: tapir keeps it as a stream (= Suricata's 3429-byte file, found); tshark splits it per segment";
const RETRANS_DIFFERS: &str = "the server's retransmission at Seq=1 carries different, longer data: tapir and tshark keep the first copy (5-byte body, found), Suricata the later one";
const MIDSTREAM: &str = "capture starts mid-connection with holes in the client stream: tapir keeps a gapped stream (not parsed as HTTP); tshark resynchronises on one request";
const AYIYA: &str = "AYIYA tunnel (UDP 5072) is not among the tunnels tapir decodes";
const CL_NEGATIVE: &str = "smuggling test, Content-Length: -1 (RFC 9112 6.3: invalid, unrecoverable): Suricata reads the next request as body, tapir does not";
const OBS_FOLD_TE: &str = "smuggling test, `Transfer-Encoding:` obs-folded to `chunked` (RFC 9112 5.2): the body is the empty last chunk and a 2nd request follows; tshark reads the rest as body";
const TE_NOT_CHUNKED: &str = "Transfer-Encoding `lalala, chunked, lalala`: the final coding is not chunked, so RFC 9112 6.3 reads to close (tapir keeps the raw body); Suricata dechunks";
const CE_UNKNOWN: &str = "Content-Encoding includes an unknown coding: tapir keeps the raw body (unsupported-content-encoding); Suricata decodes the known part";
const TE_NBSP: &str = "`Transfer-Encoding:\\xa0chunked`: NBSP is not OWS (RFC 9110 5.6.3), so not chunked: tapir reads to close (raw body); Suricata trims it";
const NO_BODY_204: &str = "a 204 has no body (RFC 9110 15.3.5): tapir reads the chunks as a next, bad status line; tshark and Suricata take them as body";
const BUG_OUTER_FRAG: &str = "BUG?: the response is a 6715-byte TCP segment inside ERSPAN/GRE whose outer IPv4 packet is fragmented (frames 265-269, ip.id 0xe173); Suricata reassembles it, tapir records no-response";

#[rustfmt::skip]
const DIVERGENCES: &[Div] = &[
    // HTTP evasions (suricata-verify http-evader, zeek 261 smuggling variants).
    Div { cap: "suricata-verify/tests/http-evader/http-evader-289/input.pcap", sha: "0847ac877173", src: "tshark-http", why: BARE_CR, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-051/input.pcap", sha: "275a021bbfb6", src: "", why: EVADER, check: Check::Anomaly("bad-status-line") },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-085/input.pcap", sha: "275a021bbfb6", src: "", why: TE_NOT_CHUNKED, check: Check::Anomaly("transfer-encoding-and-content-length") },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-170/input.pcap", sha: "275a021bbfb6", src: "", why: CE_UNKNOWN, check: Check::Anomaly("unsupported-content-encoding") },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-306/input.pcap", sha: "275a021bbfb6", src: "", why: TE_NBSP, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-323/input.pcap", sha: "275a021bbfb6", src: "", why: CE_UNKNOWN, check: Check::Anomaly("unsupported-content-encoding") },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-357/input.pcap", sha: "adf57abb3de3", src: "tshark-http", why: TSHARK_EVADER, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-374/input.pcap", sha: "", src: "", why: EVADER, check: Check::Anomaly("bad-status-line") },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-391/input.pcap", sha: "275a021bbfb6", src: "", why: EVADER, check: Check::Anomaly("bad-status-line") },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-425/input.pcap", sha: "275a021bbfb6", src: "", why: EVADER, check: Check::Anomaly("no-response") },
    Div { cap: "suricata-verify/tests/http-evader/http-evader-476/input.pcap", sha: "", src: "", why: NO_BODY_204, check: Check::Anomaly("bad-status-line") },
    Div { cap: "zeek/testing/btest/Traces/http/261/variant-03-cl_negative.pcap", sha: "1b37db3f0c64", src: "suricata-http", why: CL_NEGATIVE, check: Check::Anomaly("bad-content-length") },
    Div { cap: "zeek/testing/btest/Traces/http/261/variant-09-te_obs_fold.pcap", sha: "3be1023e1269", src: "tshark-http", why: OBS_FOLD_TE, check: Check::Anomaly("obs-fold") },
    Div { cap: "zeek/testing/btest/Traces/erspan.pcap", sha: "7472c305e4a4", src: "suricata-http", why: BUG_OUTER_FRAG, check: Check::Anomaly("no-response") },
    // HTTP: where one peer alone differs.
    Div { cap: "suricata-verify/tests/http-gap-simple/input.pcap", sha: "", src: "suricata-http", why: SURICATA_PAST_CL, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-gap-double/input.pcap", sha: "", src: "suricata-http", why: SURICATA_PAST_CL, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-gap-whole-body/input.pcap", sha: "18961f319c96", src: "suricata-http", why: SURICATA_PAST_CL, check: Check::Absent },
    Div { cap: "suricata-verify/tests/output-eve-fileinfo/input.pcap", sha: "d087b2070cf1", src: "suricata-http", why: SURICATA_PAST_CL, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/http/interleaved-http-entity.pcap", sha: "261be4ee4053", src: "suricata-http", why: SURICATA_PAST_CL, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-mime-truncated/input.pcap", sha: "7b8ab07521c2", src: "tshark-http", why: MULTIPART_EMPTY, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-event-chunk/input.pcap", sha: "c0ba1fc70073", src: "tshark-http", why: TSHARK_CHUNKS, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-range-file/input.pcap", sha: "", src: "tshark-http", why: TSHARK_SPLIT, check: Check::Slice },
    Div { cap: "zeek/testing/btest/Traces/mixed-vlan-mpls.pcap", sha: "", src: "tshark-http", why: HTTP09, check: Check::Slice },
    Div { cap: "zeek/testing/btest/Traces/tcp/qi_internet_SYNACK_curl_jsonip.pcap", sha: "6019c30051c8", src: "suricata-http", why: RETRANS_DIFFERS, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/tcp/reassembly.pcap", sha: "934ca18844e9", src: "tshark-http", why: MIDSTREAM, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/tunnels/ayiya3.pcap", sha: "6f348303937c", src: "tshark-http", why: AYIYA, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/http/entity_gap.pcap", sha: "8873510ae78f", src: "stated", why: NO_PEER_AGREES, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/http/entity_gap2.pcap", sha: "a50383ae2bfa", src: "stated", why: NO_PEER_AGREES, check: Check::Absent },
    // HTTP: tshark's whole multipart bodies.
    Div { cap: "suricata-verify/tests/file-match-crossed/http-multipart-post.pcap", sha: "ce5c5a0aafe7", src: "tshark-http", why: MULTIPART, check: Check::PythonParts },
    Div { cap: "zeek/testing/btest/Traces/http/multipart-form-data.pcap", sha: "4677464a70d1", src: "tshark-http", why: MULTIPART, check: Check::PythonParts },
    Div { cap: "zeek/testing/btest/Traces/http/multipart.pcap", sha: "127d7b1f8e35", src: "tshark-http", why: MULTIPART, check: Check::PythonParts },
    Div { cap: "suricata-verify/tests/http-mime-truncated/input.pcap", sha: "91defcc1a8f8", src: "tshark-http", why: MULTIPART, check: Check::PythonParts },
    Div { cap: "zeek/testing/btest/Traces/http/deeply-nested-mime.pcap", sha: "", src: "tshark-imf", why: NESTED_IMF, check: Check::Absent },
    // Suricata / suricata-verify with gaps.
    Div { cap: "suricata-verify/tests/tcp-rst-unacked-stream-11/TLPW1-tcp-47.32.209.86-10.11.23.101-tcp-80-49470.pcap", sha: "b6e5d8314e3c", src: "stated", why: SURICATA_GAPS, check: Check::Absent },
    Div { cap: "suricata-verify/tests/tcp-rst-unacked-stream-09/TLPW1-tcp-110.37.219.134-10.12.14.101-tcp-990-49230.pcap", sha: "b95aa84c9ac4", src: "stated", why: SURICATA_GAPS, check: Check::Absent },
    // The sha256 of zero bytes: Suricata saw none of this 733-byte body (gap from byte 0).
    Div { cap: "suricata-verify/tests/http-pipeline-files-with-gap/input.pcap", sha: "e3b0c44298fc", src: "stated", why: SURICATA_GAPS, check: Check::Absent },
    Div { cap: "suricata-verify/tests/http-range-file/input.pcap", sha: "3795027cb756", src: "suricata-http", why: SURICATA_RANGE, check: Check::Absent },
    Div { cap: "ndpi/tests/cfgs/default/pcap/rtsp.pcap", sha: "", src: "suricata-http", why: RTSP, check: Check::Absent },
    // FTP (reasons from tests/analyze_ftp.rs).
    Div { cap: "ndpi/tests/cfgs/default/pcap/ftp.pcap", sha: "f4b3aa91c3f4", src: "tshark-ftp-data", why: FTP_TSHARK_LAST_SEG, check: Check::Prefix(108_000) },
    Div { cap: "zeek/testing/btest/Traces/ftp/bigtransfer.pcap", sha: "364f0871472e", src: "suricata-ftp-data", why: FTP_BIG_HOLES, check: Check::Prefix(14_480) },
    Div { cap: "zeek/testing/btest/Traces/ftp/bigtransfer.pcap", sha: "5a5119d1e151", src: "tshark-ftp-data", why: FTP_BIG_HOLES, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/ftp/retr.pcap", sha: "405994eedc3c", src: "stated", why: ZEEK_LIMIT, check: Check::Prefix(3000) },
    Div { cap: "zeek/testing/btest/Traces/ftp/retr.pcap", sha: "94df71cd5a60", src: "stated", why: ZEEK_LIMIT, check: Check::Prefix(6000) },
    Div { cap: "zeek/testing/btest/Traces/ftp/retr.pcap", sha: "e20485be6c73", src: "stated", why: NO_PEER_AGREES, check: Check::Absent },
    // SMTP (reasons from tests/analyze_smtp.rs).
    Div { cap: "suricata-verify/tests/bug-3616-smtp/input.pcap", sha: "b1c2717b5f19", src: "tshark-imf", why: TSHARK_DOT, check: Check::Absent },
    Div { cap: "suricata-verify/tests/bug-3616-smtp/input.pcap", sha: "bbf2b12cca3e", src: "python-imf", why: TSHARK_DOT, check: Check::Absent },
    Div { cap: "suricata-verify/tests/bug-3616-smtp/input.pcap", sha: "23ccf52d7363", src: "python-imf", why: TSHARK_DOT, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/smtp.pcap", sha: "b1c2717b5f19", src: "tshark-imf", why: TSHARK_DOT, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/smtp.pcap", sha: "bbf2b12cca3e", src: "python-imf", why: TSHARK_DOT, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/smtp.pcap", sha: "23ccf52d7363", src: "python-imf", why: TSHARK_DOT, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/smtp.pcap", sha: "5f42254168e2", src: "stated", why: NO_PEER_AGREES, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/smtp.pcap", sha: "2af931fb807d", src: "stated", why: NO_PEER_AGREES, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/smtp.pcap", sha: "37189212d2f2", src: "stated", why: NO_PEER_AGREES, check: Check::Absent },
    Div { cap: "suricata-verify/tests/smtp-pipelining/input.pcap", sha: "2c598abee272", src: "tshark-imf", why: PIPELINED, check: Check::Absent },
    Div { cap: "suricata-verify/tests/smtp-data-rejected/10.7.29.101_49898-178.63.41.150_25.pcap", sha: "a78b94995a0c", src: "tshark-imf", why: PIPELINED, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/smtp-mail-transactions-invalid.pcap", sha: "", src: "tshark-imf", why: DATA_REFUSED, check: Check::Absent },
    Div { cap: "suricata-verify/tests/bug-6207-2/input.pcap", sha: "73475cb40a56", src: "", why: SURICATA_B64_PAD, check: Check::Absent },
    Div { cap: "suricata-verify/tests/mime/mime-quoted-printable/input.pcap", sha: "6cf0c0b3d1ce", src: "suricata-smtp", why: SURICATA_QP, check: Check::Absent },
    Div { cap: "suricata-verify/tests/smtp-bug-5981/input.pcap", sha: "", src: "", why: LONG_LINE, check: Check::Absent },
    Div { cap: "suricata-verify/tests/smtp-bug-5989/input.pcap", sha: "", src: "", why: LONG_LINE, check: Check::Absent },
    Div { cap: "suricata-verify/tests/smtp-long-DATA-line/input.pcap", sha: "", src: "", why: LONG_LINE, check: Check::Absent },
    Div { cap: "zeek/testing/btest/Traces/smtp/smtp-bdat-gap.pcap", sha: "d82c6aa133a0", src: "stated", why: ZEEK_GAP_PREFIX, check: Check::Prefix(100) },
];

/// One expected file: its sha256 and who listed it (`tshark-http NAME`, `stated zeek FILE`...).
type Expected = BTreeMap<String, Vec<String>>;

fn expected(t: &Value, rel: &str, agreement: &str) -> Expected {
    let mut out: Expected = BTreeMap::new();
    let mut add = |sha: Option<&str>, who: String| {
        if let Some(s) = sha {
            out.entry(s.to_string()).or_default().push(who);
        }
    };
    let nonempty = |o: &Value| o["size"].as_u64().unwrap_or(0) > 0;
    for kind in ["http", "ftp-data", "imf"] {
        for o in t["tshark"]["objects"][kind].as_array().into_iter().flatten() {
            if nonempty(o) {
                add(o["sha256"].as_str(), format!("tshark-{kind} {}", o["name"]));
            }
            for p in o["mime_parts_python_email"].as_array().into_iter().flatten().filter(|p| nonempty(p)) {
                add(p["sha256"].as_str(), format!("python-{kind} {}", p["filename"]));
            }
        }
    }
    for f in t["suricata"]["fileinfo"].as_array().into_iter().flatten() {
        let proto = f["app_proto"].as_str().unwrap_or("");
        if ["http", "ftp-data", "smtp"].contains(&proto) && f["state"] == "CLOSED" && f["gaps"] == false && nonempty(f)
        {
            add(f["sha256"].as_str(), format!("suricata-{proto} {}", f["filename"]));
        }
    }
    for line in agreement.lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        if c.get(1).and_then(|p| p.strip_prefix("public/")) == Some(rel) {
            add(c.get(4).copied(), format!("stated {} {}", c[0], c.get(3).unwrap_or(&"")));
        }
    }
    out
}

struct Obj {
    kind: String,
    sha256: String,
    size: u64,
    path: PathBuf,
}

struct Run {
    /// Holds the case directory (stored bytes are read by the checks) until the run is dropped.
    _dir: tempfile::TempDir,
    objects: Vec<Obj>,
    iri: Vec<Value>,
}

impl Run {
    fn has(&self, sha: &str) -> bool {
        self.objects.iter().any(|o| o.sha256 == sha)
    }
    /// Stored bytes of small mail/file objects (the alternate rules are about mail).
    fn bytes(&self, kinds: &[&str]) -> Vec<Vec<u8>> {
        self.objects
            .iter()
            .filter(|o| kinds.contains(&o.kind.as_str()) && o.size <= 1 << 24)
            .filter_map(|o| std::fs::read(&o.path).ok())
            .collect()
    }
    fn prefix_matches(&self, n: usize, sha: &str) -> bool {
        self.objects.iter().filter(|o| o.size >= n as u64).any(|o| {
            let mut buf = vec![0u8; n];
            std::fs::File::open(&o.path).and_then(|mut f| f.read_exact(&mut buf)).is_ok() && sha256(&buf) == sha
        })
    }
    fn slice_matches(&self, n: usize, sha: &str) -> bool {
        self.bytes(&["file", "stream"]).iter().any(|b| n > 0 && b.windows(n).any(|w| sha256(w) == sha))
    }
    fn anomaly(&self, a: &str) -> bool {
        self.iri.iter().any(|r| r["anomalies"].as_array().is_some_and(|v| v.iter().any(|x| x == a)))
    }
}

fn replay(capture: &Path, checksums: &str) -> Result<Run, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let w = dir.path().join("w.toml");
    std::fs::write(&w, WARRANT).map_err(|e| e.to_string())?;
    let out = dir.path().join("case");
    let r = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .arg("replay")
        .arg(capture)
        .arg("--warrants")
        .arg(&w)
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .args(["--checksums", checksums])
        .output()
        .map_err(|e| e.to_string())?;
    if !r.status.success() {
        return Err(format!("tapir replay failed: {}", String::from_utf8_lossy(&r.stderr)));
    }
    let mut run = Run { _dir: dir, objects: Vec::new(), iri: Vec::new() };
    // Every LIID directory (one warrant here, but the layout is not assumed).
    for liid in std::fs::read_dir(&out).map_err(|e| e.to_string())?.flatten() {
        let d = liid.path();
        if !d.is_dir() {
            continue;
        }
        let lines = |name: &str| -> Vec<Value> {
            std::fs::read_to_string(d.join(name))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        };
        for o in lines("objects.jsonl") {
            run.objects.push(Obj {
                kind: o["kind"].as_str().unwrap_or("").into(),
                sha256: o["sha256"].as_str().unwrap_or("").into(),
                size: o["size"].as_u64().unwrap_or(0),
                path: d.join(o["path"].as_str().unwrap_or("")),
            });
        }
        run.iri.extend(lines("iri.jsonl"));
    }
    Ok(run)
}

/// Documented, checked transformations between a peer's bytes and tapir's.
fn alt_rule(run: &Run, sha: &str, who: &[String]) -> Option<&'static str> {
    let from = |p: &str| who.iter().any(|w| w.starts_with(p));
    if from("tshark-imf") {
        // tshark drops the message's last line when it is empty (`...\r\n\r\n.\r\n`); RFC 5321
        // 4.1.1.4 makes that empty line part of the message: tapir keeps it.
        if run.bytes(&["mail"]).iter().any(|b| b.ends_with(b"\r\n\r\n") && sha256(&b[..b.len() - 2]) == sha) {
            return Some("tshark drops an empty last line of the mail");
        }
    }
    if from("suricata-smtp") {
        for b in run.bytes(&["file"]) {
            // Suricata 7 keeps the line break before the boundary in unencoded and
            // quoted-printable parts; RFC 2046 5.1.1 (and Python) give it to the boundary.
            let mut plus = b.clone();
            plus.extend_from_slice(b"\r\n");
            if sha256(&plus) == sha {
                return Some("Suricata keeps the CRLF before the MIME boundary");
            }
            // A single-part message that is itself the attachment: Suricata drops its last CRLF.
            if b.ends_with(b"\r\n") && sha256(&b[..b.len() - 2]) == sha {
                return Some("Suricata drops the last CRLF of a single-part attachment");
            }
        }
    }
    None
}

/// The size a peer gives for the file with this hash.
fn peer_size(t: &Value, sha: &str) -> Option<usize> {
    let objects = t["tshark"]["objects"].as_object()?;
    objects
        .values()
        .filter_map(|v| v.as_array())
        .flatten()
        .chain(t["suricata"]["fileinfo"].as_array().into_iter().flatten())
        .find(|o| o["sha256"] == sha)
        .and_then(|o| o["size"].as_u64())
        .and_then(|n| usize::try_from(n).ok())
}

fn find_div(cap: &str, sha: &str, who: &[String]) -> Option<&'static Div> {
    DIVERGENCES.iter().find(|d| {
        d.cap == cap && sha.starts_with(d.sha) && (d.src.is_empty() || who.iter().any(|w| w.starts_with(d.src)))
    })
}

/// What happened to each expected file of one capture.
#[derive(Default)]
struct Outcome {
    expected: usize,
    found: usize,
    alt: BTreeMap<&'static str, usize>,
    div: BTreeMap<&'static str, usize>,
    used: BTreeSet<usize>,
    failures: Vec<String>,
}

fn check_capture(rel: &str, t: &Value, want: &Expected) -> Outcome {
    let mut out = Outcome { expected: want.len(), ..Default::default() };
    let run = match replay(&shared().join(rel), "off") {
        Ok(r) => r,
        Err(e) => {
            out.failures.push(format!("{rel}: {e}"));
            return out;
        }
    };
    for (sha, who) in want {
        // A wildcard entry excuses only what is missing; a named hash must really be absent.
        let div = find_div(rel, sha, who).filter(|d| !(d.sha.is_empty() && run.has(sha)));
        if let Some(d) = div {
            if let Some(i) = DIVERGENCES.iter().position(|x| std::ptr::eq(x, d)) {
                out.used.insert(i);
            }
            if run.has(sha) {
                out.failures.push(format!("{rel}: {who:?} {sha} now found: drop the divergence ({})", d.why));
                continue;
            }
            let ok = match d.check {
                Check::Absent => true,
                Check::Prefix(n) => run.prefix_matches(n, sha),
                Check::Anomaly(a) => run.anomaly(a),
                Check::Slice => peer_size(t, sha).is_some_and(|n| run.slice_matches(n, sha)),
                Check::PythonParts => {
                    let parts: Vec<&str> = t["tshark"]["objects"]["http"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|o| o["sha256"] == sha.as_str())
                        .flat_map(|o| o["mime_parts_python_email"].as_array().into_iter().flatten())
                        .filter(|p| p["size"].as_u64().unwrap_or(0) > 0)
                        .filter_map(|p| p["sha256"].as_str())
                        .collect();
                    !parts.is_empty() && parts.iter().all(|p| run.has(p))
                }
            };
            if ok {
                *out.div.entry(d.why).or_default() += 1;
            } else {
                out.failures.push(format!("{rel}: {who:?} {sha}: divergence check {:?} failed ({})", d.check, d.why));
            }
            continue;
        }
        if run.has(sha) {
            out.found += 1;
        } else if let Some(rule) = alt_rule(&run, sha, who) {
            *out.alt.entry(rule).or_default() += 1;
        } else {
            let mut got: Vec<String> = run
                .objects
                .iter()
                .filter(|o| o.kind != "stream")
                .map(|o| format!("{} {} {}", o.kind, o.size, o.sha256.get(..12).unwrap_or("")))
                .collect();
            got.truncate(12);
            out.failures.push(format!("{rel}: {who:?} sha256 {sha} not found; tapir has {got:?}"));
        }
    }
    out
}

fn truth_jsons() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = SOURCES.iter().map(|s| shared().join("truth").join(s)).collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())).flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The captures the sweep replays: those whose truth lists a file.
fn captures_with_files(agreement: &str) -> Vec<(String, Value, Expected)> {
    let truth_root = shared().join("truth");
    let mut work = Vec::new();
    for p in truth_jsons() {
        let t: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let rel = p.strip_prefix(&truth_root).unwrap().to_string_lossy().trim_end_matches(".json").to_string();
        let want = expected(&t, &rel, agreement);
        if !want.is_empty() && !KNOWN.iter().any(|(c, _)| *c == rel) {
            work.push((rel, t, want));
        }
    }
    work
}

/// TCP segments with payload whose checksum fails, by tshark's own check.
fn tshark_bad_checksum_segments(capture: &Path) -> usize {
    let o = Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args(["-o", "tcp.check_checksum:TRUE", "-Y", "tcp.checksum.status == 0 && tcp.len > 0", "-T", "fields"])
        .args(["-e", "frame.number"])
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&o.stdout).lines().count()
}

/// With `--checksums auto` (the default) against `off`, over the whole corpus: a capture's
/// objects differ only where tshark finds TCP segments whose checksum fails, and there tapir
/// counts them refused in the session's end and reports each as a wire conflict.
#[test]
fn checksum_validation_changes_only_what_failed_its_checksum() {
    let agreement = std::fs::read_to_string(shared().join("truth/public_agreement.tsv")).unwrap();
    let work = captures_with_files(&agreement);
    assert!(work.len() > 100, "only {} captures with files", work.len());
    let next = AtomicUsize::new(0);
    let changed: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((rel, _, _)) = work.get(i) else { break };
                let cap = shared().join(rel);
                let (auto, off) = (replay(&cap, "auto").unwrap(), replay(&cap, "off").unwrap());
                let shas = |r: &Run| r.objects.iter().map(|o| o.sha256.clone()).collect::<BTreeSet<_>>();
                if shas(&auto) == shas(&off) {
                    continue;
                }
                let mut problems = Vec::new();
                let tshark = tshark_bad_checksum_segments(&cap);
                if tshark == 0 {
                    problems.push("tshark finds no failing TCP checksum".to_string());
                }
                let refused: u64 = auto
                    .iri
                    .iter()
                    .filter(|r| r["event"] == "session-end")
                    .flat_map(|r| r["counters"]["checksum_failed"].as_array().cloned().unwrap_or_default())
                    .filter_map(|v| v.as_u64())
                    .sum();
                if refused == 0 {
                    problems.push("no session counts a refused segment".into());
                }
                let reported =
                    auto.iri.iter().filter(|r| r["event"] == "wire-conflict" && r["kind"] == "bad-checksum").count();
                if reported == 0 {
                    problems.push("no bad-checksum wire conflict reported".into());
                }
                println!(
                    "{rel}: auto refused {refused} segment(s), tshark finds {tshark} failing; {reported} reported"
                );
                changed.lock().unwrap().push((rel.clone(), problems.join("; ")));
            });
        }
    });
    let changed = changed.into_inner().unwrap();
    // The hand-edited suricata-verify captures that Suricata itself replays with `-k none`.
    assert!(changed.iter().any(|(c, _)| c.contains("bug-6207-2")), "{changed:?}");
    for (c, p) in &changed {
        assert!(p.is_empty(), "{c}: {p}");
    }
}

#[test]
fn every_public_upload_and_transfer_is_found_by_sha256() {
    let agreement = std::fs::read_to_string(shared().join("truth/public_agreement.tsv")).unwrap();
    let mut work: Vec<(String, Value, Expected)> = Vec::new();
    let mut without_files = 0;
    let truth_root = shared().join("truth");
    for p in truth_jsons() {
        let t: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        // The capture sits where its truth JSON sits, minus `truth/` and `.json`.
        let rel = p.strip_prefix(&truth_root).unwrap().to_string_lossy().trim_end_matches(".json").to_string();
        assert!(shared().join(&rel).exists(), "{rel}: capture missing");
        assert!(t["capture"].as_str().is_some_and(|c| c.ends_with(&rel)), "{rel}: truth names {}", t["capture"]);
        let want = expected(&t, &rel, &agreement);
        if let Some((_, why)) = KNOWN.iter().find(|(c, _)| *c == rel) {
            println!("not checked: {rel}: {why}");
            continue;
        }
        if want.is_empty() {
            without_files += 1;
            continue;
        }
        work.push((rel, t, want));
    }
    assert!(work.len() > 100, "only {} captures with files: is ../shared/pcaps complete?", work.len());
    // Every public_agreement row is about a capture that is checked.
    for line in agreement.lines().skip(1) {
        let c = line.split('\t').nth(1).and_then(|p| p.strip_prefix("public/")).unwrap_or("");
        assert!(work.iter().any(|(r, _, _)| r == c), "public_agreement.tsv row for unchecked {c}");
    }

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(String, Outcome)>> = Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((rel, t, want)) = work.get(i) else { break };
                let o = check_capture(rel, t, want);
                results.lock().unwrap().push((rel.clone(), o));
            });
        }
    });
    let results = results.into_inner().unwrap();

    let (mut expected_n, mut found, mut used) = (0, 0, BTreeSet::new());
    let mut alt: BTreeMap<&str, usize> = BTreeMap::new();
    let mut div: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (_, o) in &results {
        expected_n += o.expected;
        found += o.found;
        for (k, v) in &o.alt {
            *alt.entry(k).or_default() += v;
        }
        for (k, v) in &o.div {
            *div.entry(k).or_default() += v;
        }
        used.extend(o.used.iter().copied());
        failures.extend(o.failures.iter().cloned());
    }
    for (i, d) in DIVERGENCES.iter().enumerate() {
        if !used.contains(&i) {
            failures.push(format!("stale divergence: {} {} {} ({})", d.cap, d.src, d.sha, d.why));
        }
    }
    println!(
        "public truth: {} captures checked, {} without HTTP/FTP/SMTP files in their truth, {} not checked (KNOWN), {:.1}s",
        results.len(),
        without_files,
        KNOWN.len(),
        started.elapsed().as_secs_f64()
    );
    println!("expected files {expected_n}: found by sha256 {found}");
    for (k, v) in &alt {
        println!("  {v:4} by rule: {k}");
    }
    for (k, v) in &div {
        println!("  {v:4} divergence: {k}");
    }
    println!("  {:4} failures", failures.len());
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} unexplained (see FAIL lines above)", failures.len());
}
