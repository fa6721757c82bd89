//! The media modules against real bytes and independent oracles.
//!
//! `tests/data/media/` holds an H.264 file made by ffmpeg/x264, the RTP capture of ffmpeg
//! streaming it, and the SDP ffmpeg wrote (see its README). The oracles are ffmpeg, ffprobe and
//! tshark, run by the tests:
//! - the access units, written as Annex B, are byte for byte what
//!   `ffmpeg -bsf:v h264_mp4toannexb -f h264` makes of the source file, and as many as the
//!   frames `ffprobe -count_frames` counts;
//! - `avcC` is the MP4's extradata as ffprobe dumps it, the SPS size is ffprobe's width/height;
//! - loss, lost count and jitter agree with `tshark -z rtp,streams`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use etherparse::{SlicedPacket, TransportSlice};
use proptest::prelude::*;
use tapir::media::h264::{self, Depacketizer, Event};
use tapir::media::rtp::{self, Packet, SsrcTable, SsrcTracker};
use tapir::media::sdp;
use tapir::timestamp::Timestamp;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media").join(name)
}

fn output(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// One record of a classic (microsecond, little-endian) pcap, kept whole so it can be written
/// back into a modified capture.
struct Record {
    header: [u8; 16],
    frame: Vec<u8>,
}

impl Record {
    fn arrival(&self) -> Timestamp {
        let secs = u32::from_le_bytes(self.header[0..4].try_into().unwrap());
        let usecs = u32::from_le_bytes(self.header[4..8].try_into().unwrap());
        Timestamp::from_secs_fraction(secs as i64, usecs as i64, false)
    }

    /// The UDP payload (the RTP packet) and its offset in the frame.
    fn udp_payload(&self) -> (usize, &[u8]) {
        let sliced = SlicedPacket::from_ethernet(&self.frame).unwrap();
        let Some(TransportSlice::Udp(u)) = sliced.transport else { panic!("UDP expected") };
        let payload = u.payload();
        (self.frame.len() - payload.len(), payload)
    }
}

fn read_pcap(path: &Path) -> (Vec<u8>, Vec<Record>) {
    let (header, records) = crate::common::classic_pcap_records(path);
    (header, records.into_iter().map(|(header, frame)| Record { header, frame }).collect())
}

/// A copy of the capture with only the records `keep` says, and the payload type rewritten to
/// 34 (H.263, a static type with H.264's 90 kHz clock): tshark computes jitter only for payload
/// types whose clock it knows, and dynamic type 96 has none without signalling.
fn write_for_tshark(dir: &Path, header: &[u8], records: &[Record], keep: impl Fn(&Record) -> bool) -> PathBuf {
    let mut out = header.to_vec();
    for r in records.iter().filter(|r| keep(r)) {
        let mut frame = r.frame.clone();
        let (at, _) = r.udp_payload();
        frame[at + 1] = (frame[at + 1] & 0x80) | 34;
        out.extend_from_slice(&r.header);
        out.extend_from_slice(&frame);
    }
    let path = dir.join("tshark.pcap");
    std::fs::write(&path, out).unwrap();
    path
}

/// tshark's `-z rtp,streams` row: (packets, lost, max jitter ms, mean jitter ms). The mean is
/// not compared: tshark averages over a subset of packets (not the first, not marker packets,
/// and others by rules of its own) that is its definition, not RFC 3550's; the maximum is the
/// largest A.8 value, which both compute the same way.
fn tshark_rtp_streams(pcap: &Path) -> (u64, i64, f64, f64) {
    let text = String::from_utf8(output(Command::new("tshark").arg("-r").arg(pcap).args([
        "-d",
        "udp.port==5004,rtp",
        "-q",
        "-z",
        "rtp,streams",
    ])))
    .unwrap();
    let rows: Vec<Vec<&str>> =
        text.lines().filter(|l| l.contains("127.0.0.1")).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "one stream expected:\n{text}");
    let row = &rows[0];
    // start end src sport dst dport ssrc payload pkts lost (pct) minD meanD maxD minJ meanJ maxJ [problem]
    (row[8].parse().unwrap(), row[9].parse().unwrap(), row[16].parse().unwrap(), row[15].parse().unwrap())
}

struct Run {
    events: Vec<Event>,
    table: SsrcTable,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

fn sprop() -> String {
    let s = sdp::parse_bytes(&std::fs::read(data("h264.sdp")).unwrap()).unwrap();
    s.media[0].payload_format(96).unwrap().fmtp_param("sprop-parameter-sets").unwrap().to_string()
}

/// Feeds the capture's RTP packets, except those `drop` says, through the statistics and the
/// depacketiser, as the UDP analyzer will.
fn depacketise(records: &[Record], drop: impl Fn(u16) -> bool) -> Run {
    let mut table = SsrcTable::new(64);
    let mut d = Depacketizer::new();
    d.seed_sprop_parameter_sets(&sprop()).unwrap();
    for r in records {
        let (_, udp) = r.udp_payload();
        let p = Packet::new_checked(udp).unwrap();
        if drop(p.sequence_number()) {
            continue;
        }
        let received = table.receive(&p, r.arrival(), 90_000).unwrap();
        if let Some(seq) = received.extended_seq() {
            d.push(seq, p.timestamp(), p.marker(), p.payload());
        }
    }
    d.finish();
    let events = std::iter::from_fn(|| d.pop()).collect();
    Run { events, table, sps: d.sps().map(<[u8]>::to_vec), pps: d.pps().map(<[u8]>::to_vec) }
}

fn annex_b_by_ts(run: &Run) -> BTreeMap<u32, Vec<u8>> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::AccessUnit(a) => Some((a.rtp_ts, a.annex_b(run.sps.as_deref(), run.pps.as_deref()))),
            _ => None,
        })
        .collect()
}

#[test]
fn depacketised_stream_is_ffmpegs_annex_b() {
    let (_, records) = read_pcap(&data("h264.pcap"));
    let run = depacketise(&records, |_| false);
    let mut stream = Vec::new();
    let mut units = 0;
    for e in &run.events {
        let Event::AccessUnit(a) = e else { panic!("no loss in the unmodified capture: {e:?}") };
        stream.extend(a.annex_b(run.sps.as_deref(), run.pps.as_deref()));
        units += 1;
    }
    let reference = output(Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(data("src.mp4")).args([
        "-c:v",
        "copy",
        "-bsf:v",
        "h264_mp4toannexb",
        "-f",
        "h264",
        "-",
    ]));
    assert_eq!(stream.len(), reference.len());
    assert!(stream == reference, "Annex B differs from ffmpeg's");
    let frames = String::from_utf8(output(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(data("src.mp4")),
    ))
    .unwrap();
    assert_eq!(units, frames.trim().parse::<usize>().unwrap());
    let keyframes = run.events.iter().filter(|e| matches!(e, Event::AccessUnit(a) if a.keyframe)).count();
    assert_eq!(keyframes, 2, "-g 25 over 50 frames");
}

#[test]
fn loss_drops_exactly_the_damaged_access_units() {
    // The brief's pattern, and a denser one that also hits FU-A starts and marker packets.
    loss_case(|seq| seq % 50 == 7, 3);
    loss_case(|seq| seq % 9 == 4, 14);
}

fn loss_case(dropped: fn(u16) -> bool, expect_removed: usize) {
    let (header, records) = read_pcap(&data("h264.pcap"));
    let whole = annex_b_by_ts(&depacketise(&records, |_| false));
    let run = depacketise(&records, dropped);
    // Which access units lost packets, from the capture itself: (ts -> (dropped, total)).
    let mut per_ts: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    let mut removed = 0;
    for r in &records {
        let p = Packet::new_checked(r.udp_payload().1).unwrap();
        let e = per_ts.entry(p.timestamp()).or_default();
        e.1 += 1;
        if dropped(p.sequence_number()) {
            e.0 += 1;
            removed += 1;
        }
    }
    assert_eq!(removed, expect_removed);
    let damaged: BTreeSet<u32> = per_ts.iter().filter(|(_, (d, n))| *d > 0 && d < n).map(|(ts, _)| *ts).collect();
    let wholly_lost: usize = per_ts.values().filter(|(d, n)| *d > 0 && d == n).map(|(d, _)| *d).sum();
    let lost: BTreeSet<u32> = run
        .events
        .iter()
        .filter_map(|e| if let Event::Lost { rtp_ts, .. } = e { Some(*rtp_ts) } else { None })
        .collect();
    assert_eq!(lost, damaged);
    let gaps: u64 = run.events.iter().map(|e| if let Event::Gap { packets } = e { *packets } else { 0 }).sum();
    assert_eq!(gaps as usize, wholly_lost);
    // Every access unit handed on is intact: the bytes of the same unit without loss.
    let got = annex_b_by_ts(&run);
    assert_eq!(got.len() + damaged.len() + per_ts.values().filter(|(d, n)| d == n).count(), whole.len());
    for (ts, bytes) in &got {
        assert_eq!(Some(bytes), whole.get(ts), "access unit {ts}");
    }
    let stats = run.table.sources().next().unwrap().stats();
    assert_eq!(stats.lost, removed as i64);

    // tshark on the same lossy capture.
    let dir = tempfile::tempdir().unwrap();
    let pcap = write_for_tshark(dir.path(), &header, &records, |r| {
        !dropped(Packet::new_checked(r.udp_payload().1).unwrap().sequence_number())
    });
    let (packets, lost, _, _) = tshark_rtp_streams(&pcap);
    eprintln!("removed {removed} packets, {} access units lost, tshark: {packets} packets, {lost} lost", damaged.len());
    assert_eq!(lost, stats.lost);
    // RFC 3550 A.1 counts from the packet that ends probation: the first one is not counted.
    assert_eq!(stats.packets + 1, packets);
}

#[test]
fn stats_agree_with_tshark() {
    let (header, records) = read_pcap(&data("h264.pcap"));
    let run = depacketise(&records, |_| false);
    let stats = run.table.sources().next().unwrap().stats();
    let dir = tempfile::tempdir().unwrap();
    let (packets, lost, max_jitter, _) = tshark_rtp_streams(&write_for_tshark(dir.path(), &header, &records, |_| true));
    assert_eq!((stats.packets + 1, stats.lost, stats.reordered, stats.duplicates), (packets, lost, 0, 0));
    assert_eq!(stats.expected, stats.last_seq - stats.first_seq + 1);
    eprintln!("ours: max jitter {} ms, tshark {max_jitter}; {:?}", stats.max_jitter_ms, stats);
    assert!(
        (stats.max_jitter_ms - max_jitter).abs() < 0.01,
        "max jitter {} vs tshark {max_jitter}",
        stats.max_jitter_ms
    );
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["packets"], stats.packets);
    // The flow is confirmed as RTP without signalling within three packets.
    let mut tracker = SsrcTracker::new(3);
    let confirmed = records.iter().position(|r| tracker.observe(r.udp_payload().1));
    assert_eq!(confirmed, Some(2));
    assert!(records.iter().all(|r| rtp::probe(r.udp_payload().1) && !rtp::is_rtcp(r.udp_payload().1)));
}

#[test]
fn ffmpegs_sdp_and_parameter_sets() {
    let s = sdp::parse_bytes(&std::fs::read(data("h264.sdp")).unwrap()).unwrap();
    assert_eq!(s.name.as_deref(), Some("No Name"));
    assert_eq!(s.connection.as_ref().unwrap().address, "127.0.0.1");
    assert_eq!(s.origin.as_ref().unwrap().address, "127.0.0.1");
    let m = &s.media[0];
    assert_eq!(
        (m.media.as_str(), m.port, m.proto.as_str(), m.formats.as_slice()),
        ("video", 5004, "RTP/AVP", &["96".to_string()][..])
    );
    let f = m.payload_format(96).unwrap();
    assert_eq!((f.encoding_name.as_deref(), f.clock_rate, f.channels), (Some("H264"), Some(90000), None));
    assert_eq!(f.fmtp_param("packetization-mode"), Some("1"));
    assert_eq!(f.fmtp_param("profile-level-id"), Some("64000C"));
    assert_eq!(f.fmtp_param("sprop-parameter-sets"), Some("Z2QADKyyAoM/PgIgAAADACAAAAZB4oVJ,aOvDyyLA"));

    let sets = h264::sprop_parameter_sets(&sprop()).unwrap();
    let avcc = h264::avc_decoder_configuration_record(&sets[0], &sets[1]).unwrap();
    // ffprobe's hex dump of the MP4's extradata (ffmpeg's avcC).
    let dump = String::from_utf8(output(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=extradata,width,height",
                "-show_data",
                "-of",
                "default",
            ])
            .arg(data("src.mp4")),
    ))
    .unwrap();
    let mut extradata = Vec::new();
    let (mut width, mut height) = (0, 0);
    for line in dump.lines() {
        if let Some(w) = line.strip_prefix("width=") {
            width = w.parse().unwrap();
        } else if let Some(h) = line.strip_prefix("height=") {
            height = h.parse().unwrap();
        } else if let Some((offset, rest)) = line.split_once(": ") {
            if offset.len() == 8 && offset.chars().all(|c| c.is_ascii_hexdigit()) {
                // "00000000: 0164 000c ...  ascii": up to 8 groups of 4 hex digits.
                for group in rest.split(' ').take_while(|g| !g.is_empty()).take(8) {
                    extradata.extend(hex::decode(group).unwrap());
                }
            }
        }
    }
    assert_eq!(hex::encode(&avcc), hex::encode(&extradata));
    let sps = h264::parse_sps(&sets[0]).unwrap();
    assert_eq!((sps.width, sps.height), (width, height));
    assert_eq!((width, height), (320, 180), "cropped from 320x192 macroblocks");
}

#[test]
fn fake_ssrc_flood_stays_at_the_cap() {
    let mut table = SsrcTable::new(64);
    let mut b = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x41];
    for ssrc in 0..100_000u32 {
        b[8..12].copy_from_slice(&ssrc.to_be_bytes());
        let p = Packet::new_checked(&b).unwrap();
        let _ = table.receive(&p, Timestamp(ssrc as i64), 90_000);
    }
    assert_eq!((table.len(), table.refused()), (64, 100_000 - 64));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hostile_bytes_never_panic(packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..40),
                                 text in ".{0,400}") {
        let mut table = SsrcTable::new(4);
        let mut d = Depacketizer::new();
        for (i, b) in packets.iter().enumerate() {
            let _ = rtp::probe(b);
            let _ = rtp::is_rtcp(b);
            if let Ok(p) = Packet::new_checked(b) {
                let _ = (p.csrcs().count(), p.extension_header(), p.payload().len());
                if let Some(r) = table.receive(&p, Timestamp(i as i64 * 1_000_000), 90_000) {
                    if let Some(seq) = r.extended_seq() {
                        d.push(seq, p.timestamp(), p.marker(), p.payload());
                    }
                }
            }
            let _ = h264::parse_sps(b);
            let _ = h264::avc_decoder_configuration_record(b, b);
        }
        d.finish();
        while let Some(e) = d.pop() {
            if let Event::AccessUnit(a) = e {
                let _ = (a.annex_b(d.sps(), d.pps()), a.avcc_sample());
            }
        }
        for s in table.sources() {
            let _ = s.stats();
        }
        let _ = sdp::parse(&text);
        let _ = h264::sprop_parameter_sets(&text);
        // The fuzz target's entry point, so that it is built and run with the tests.
        let flat: Vec<u8> = packets.iter().flat_map(|p| std::iter::once(p.len() as u8).chain(p.iter().copied())).collect();
        tapir::media::fuzz::media_rtp(&flat);
    }

    #[test]
    fn truncations_of_the_fixture_never_panic(cut in 0usize..700, which in 0usize..122) {
        let (_, records) = read_pcap(&data("h264.pcap"));
        let udp = records[which % records.len()].udp_payload().1.to_vec();
        let b = &udp[..cut.min(udp.len())];
        let mut d = Depacketizer::new();
        if let Ok(p) = Packet::new_checked(b) {
            d.push(1, p.timestamp(), p.marker(), p.payload());
        }
        d.finish();
        let sdp_text = std::fs::read(data("h264.sdp")).unwrap();
        let _ = sdp::parse_bytes(&sdp_text[..cut.min(sdp_text.len())]);
    }
}
