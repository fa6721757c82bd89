//! Entry points for the fuzz targets in `fuzz/` (kept in the library so they build with it and
//! cannot rot).

use crate::analyze::harness::Harness;
use crate::analyze::StreamAnalyzer;
use crate::capture::file::CaptureFile;
use crate::decode::DecodeConfig;
use crate::flow::FlowConfig;
use crate::pipeline::Pipeline;
use crate::record::{Close, Dir, VecSink};
use crate::select::parse_warrants;

/// Plays `data` as a conversation: each chunk starts with a control byte whose low bit picks the
/// direction, bit 1 makes it a gap instead of data, and the next byte gives the chunk length.
pub fn conversation(mut a: Box<dyn StreamAnalyzer>, mut data: &[u8]) {
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:80");
    while let [ctl, len, rest @ ..] = data {
        let dir = if ctl & 1 == 0 { Dir::Orig } else { Dir::Resp };
        let n = (*len as usize).min(rest.len());
        if ctl & 2 != 0 {
            h.gap(a.as_mut(), dir, *len as u64);
        } else {
            h.send(a.as_mut(), dir, &rest[..n]);
        }
        data = &rest[n..];
    }
    h.close(a.as_mut(), Close::Fin);
}

/// The RTMP analyzer on a conversation whose handshake is already done: both directions start
/// with 3073 bytes of handshake, so `data` (played as [`conversation`] does) is chunk stream
/// from its first byte, where the fuzzer's mutations matter.
pub fn rtmp(data: &[u8]) {
    let mut a = crate::analyze::rtmp::analyzer();
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:1935");
    let handshake = vec![3u8; crate::analyze::rtmp::HANDSHAKE as usize];
    h.send(a.as_mut(), Dir::Orig, &handshake);
    h.send(a.as_mut(), Dir::Resp, &handshake);
    let mut data = data;
    while let [ctl, len, rest @ ..] = data {
        let dir = if ctl & 1 == 0 { Dir::Orig } else { Dir::Resp };
        let n = (*len as usize).min(rest.len());
        if ctl & 2 != 0 && ctl & 4 != 0 {
            h.gap(a.as_mut(), dir, *len as u64);
        } else {
            h.send(a.as_mut(), dir, &rest[..n]);
        }
        data = &rest[n..];
    }
    h.close(a.as_mut(), Close::Fin);
}

/// A UDP flow's analyzer (detection, RTP, MPEG-TS) on datagrams: each chunk is a control byte
/// (low bit: direction; bit 1: a 90 kHz tick passes first) and a length byte, then the
/// datagram. Half the inputs start with three valid RTP headers so that the RTP path is reached.
pub fn datagrams(data: &[u8]) {
    let mut a = crate::analyze::udp::analyzer();
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:5004");
    let mut data = data;
    if let Some((&pt, rest)) = data.split_first() {
        if pt & 0x80 != 0 {
            for seq in 0..3u16 {
                let mut p = vec![0x80, pt & 0x7f];
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
                p.extend_from_slice(&[1, 2, 3, 4, 0x65, 0x88]);
                h.send(a.as_mut(), Dir::Orig, &p);
            }
        }
        data = rest;
    }
    while let [ctl, len, rest @ ..] = data {
        let dir = if ctl & 1 == 0 { Dir::Orig } else { Dir::Resp };
        let n = (*len as usize).min(rest.len());
        if ctl & 2 != 0 {
            h.now = h.now.add_nanos(11_111);
        }
        h.send(a.as_mut(), dir, &rest[..n]);
        data = &rest[n..];
    }
    h.close(a.as_mut(), Close::Fin);
}

/// Runs `data` as a capture file through the pipeline with a warrant on every IPv4 and IPv6
/// address.
pub fn pipeline(data: &[u8]) {
    let Ok(file) = CaptureFile::from_bytes("fuzz", data.to_vec()) else { return };
    let w = parse_warrants(
        "[[warrant]]\nliid = \"F\"\nstart = \"1970-01-01T00:00:00Z\"\nend = \"2200-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"cidr:0.0.0.0/0\", \"cidr:::/0\"]\n",
        "fuzz.toml",
    )
    .expect("static warrant");
    let mut p = Pipeline::new(w.warrants, Vec::new(), DecodeConfig::default(), FlowConfig::default());
    let mut sink = VecSink::default();
    let mut frames = file.frames();
    while let Some(f) = frames.next_frame() {
        if let Ok(f) = f {
            p.frame(&f, &mut sink);
        }
    }
    p.finish(&mut sink);
}

/// Plays `data` as segments of one TCP direction, some failing their checksum, many
/// overlapping with other bytes, and checks reassembly against a model of the receiver: per
/// stream offset, the first byte of a segment whose checksum holds is the one it keeps. Panics
/// on any difference:
/// - the bytes handed on are the model's, holes (only at the end: no bound is hit) are gaps;
/// - an accepted segment reports a conflict exactly when its bytes disagree with bytes already
///   accepted; a refused one exactly when it disagrees with them or carries bytes not yet
///   accepted (which the receiver never got).
///
/// Layout: 4 bytes of ISN, then records `[flags, offset_hi, offset_lo, len]`: flag bit 0 = the
/// checksum fails, bit 1 = the bytes differ from the stream's (XORed with the flags byte).
pub fn reassembly_against_receiver(data: &[u8]) {
    use crate::flow::tcp::{Assembler, Budget, Event};
    const SPAN: usize = 1024 + 256;
    let Some((isn, mut rest)) = data.split_first_chunk::<4>() else { return };
    let isn = u32::from_be_bytes(*isn);
    let stream = |i: usize| (i.wrapping_mul(131) + 7) as u8;
    let mut model: Vec<Option<u8>> = vec![None; SPAN];
    let mut budget = Budget::new(1 << 30);
    let mut asm = Assembler::new(1 << 30);
    let mut out: Vec<Option<Option<u8>>> = vec![None; SPAN];
    let record = |e: Event<'_>, out: &mut Vec<Option<Option<u8>>>| match e {
        Event::Data { offset, bytes } => {
            for (k, b) in bytes.iter().enumerate() {
                let slot = &mut out[offset as usize + k];
                assert!(slot.is_none(), "offset {} handed on twice", offset as usize + k);
                *slot = Some(Some(*b));
            }
        }
        Event::Gap { offset, len } => {
            for k in 0..len as usize {
                let slot = &mut out[offset as usize + k];
                assert!(slot.is_none(), "offset {} handed on twice", offset as usize + k);
                *slot = Some(None);
            }
        }
        Event::Conflict(_) => {}
    };
    asm.syn(isn);
    while let [flags, hi, lo, len, tail @ ..] = rest {
        rest = tail;
        // A narrow window, so that segments overlap often.
        let off = (usize::from(*hi) << 8 | usize::from(*lo)) % 1024;
        let bytes: Vec<u8> = (off..off + usize::from(*len))
            .map(|i| if flags & 2 != 0 { stream(i) ^ flags } else { stream(i) })
            .collect();
        let refused = flags & 1 != 0;
        let mut disagree = false;
        let mut unknown = false;
        for (k, b) in bytes.iter().enumerate() {
            match model[off + k] {
                Some(m) => disagree |= m != *b,
                None => unknown = true,
            }
        }
        let before = asm.conflicts();
        let seq = isn.wrapping_add(1).wrapping_add(off as u32);
        if refused {
            asm.refused(seq, &bytes, false, &mut budget, &mut |e| record(e, &mut out));
            assert_eq!(asm.conflicts() > before, disagree || unknown, "refused segment at {off}+{}", bytes.len());
        } else {
            asm.segment(seq, &bytes, false, &mut budget, &mut |e| record(e, &mut out));
            assert_eq!(asm.conflicts() > before, disagree, "accepted segment at {off}+{}", bytes.len());
            for (k, b) in bytes.iter().enumerate() {
                model[off + k].get_or_insert(*b);
            }
        }
    }
    asm.close(&mut budget, &mut |e| record(e, &mut out));
    let end = model.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    for i in 0..end {
        assert_eq!(out[i], Some(model[i]), "offset {i}");
    }
    assert!(out[end..].iter().all(Option::is_none), "bytes handed on past the last accepted one");
}

/// Inspects `data` as a VM image: containers, partitions, filesystems, saved RAM and carving.
pub fn vmi(data: &[u8]) {
    let report = crate::vmi::inspect(Box::new(crate::vmi::disk::MemDisk(data.into())));
    // Every carved artifact lies inside what was read.
    for a in &report.memory {
        assert!(a.size as usize == a.bytes.len() && a.size <= crate::vmi::carve::MAX_ARTIFACT as u64);
    }
}

/// One filesystem reader on `data` as a whole volume (`fat`, `ntfs`, `ext4`: the walk and the
/// extraction of artifacts), or the LVM2 metadata reader, or the Postfix queue file reader.
pub fn vmi_reader(kind: &str, data: &[u8]) {
    use crate::vmi::disk::{Disk, MemDisk};
    match kind {
        "lvm" => {
            if let Ok(vg) = crate::vmi::lvm::read(&mut MemDisk(data.into())) {
                for lv in &vg.logical_volumes {
                    for (_, pv, len) in &lv.segments {
                        assert!(pv.saturating_add(*len) <= data.len() as u64, "a segment past the device");
                    }
                }
            }
        }
        "mailq" => {
            if let Some(q) = crate::vmi::mailq::postfix(data, 1 << 20) {
                assert!(q.message.len() < 1 << 20);
            }
        }
        "exim" => {
            // The header file, then (after the first NUL) the data file.
            let (h, d) = match data.iter().position(|b| *b == 0) {
                Some(at) => (&data[..at], Some(&data[at + 1..])),
                None => (data, None),
            };
            if let Some(q) = crate::vmi::exim::exim(h, d, 1 << 20) {
                assert!(q.message.len() <= 1 << 20);
            }
        }
        "registry" => {
            let _ = crate::vmi::registry::windows_version(data);
        }
        // A container over the bytes: its guest view read at spread offsets, each read either
        // filled or refused.
        "qcow2" | "vmdk" | "vhd" | "vdi" | "vhdx" => {
            use crate::vmi::{qcow2::Qcow2, vhd::Blocked, vhdx::Vhdx, vmdk::Vmdk};
            // A VHDX's structures sit at fixed offsets in its first 4 MiB, its data blocks past
            // them: the bytes are its start, zeros up to 16 MiB.
            let size = if kind == "vhdx" { (data.len() as u64).max(16 << 20) } else { data.len() as u64 };
            let file = Padded(data.into(), size);
            let guest: Option<Box<dyn Disk>> = match kind {
                "qcow2" => Qcow2::open(file).ok().map(|d| Box::new(d) as Box<dyn Disk>),
                "vmdk" => Vmdk::open(file).ok().map(|d| Box::new(d) as Box<dyn Disk>),
                "vhd" => Blocked::open_vhd(file).ok().map(|d| Box::new(d) as Box<dyn Disk>),
                "vdi" => Blocked::open_vdi(file).ok().map(|d| Box::new(d) as Box<dyn Disk>),
                _ => Vhdx::open(file).ok().map(|d| Box::new(d) as Box<dyn Disk>),
            };
            if let Some(mut g) = guest {
                let size = g.size();
                let mut buf = vec![0u8; 65536];
                for i in 0..8u64 {
                    let _ = g.read_at(size / 8 * i, &mut buf);
                }
                let _ = crate::vmi::partition::partitions(g.as_mut());
            }
        }
        // A filesystem whose first bytes are `data` and the rest zeros, up to 64 MiB: mkfs
        // tools lay out the structures a walk reads near the start, and a volume that small
        // keeps its AGs or groups inside what the fuzzer varies.
        "xfs" | "btrfs" => {
            let size = (data.len() as u64).max(64 << 20);
            let _ = crate::vmi::inspect_volume(Box::new(Padded(data.into(), size)), std::time::Duration::from_secs(5));
        }
        _ => {
            let _ = crate::vmi::inspect_volume(Box::new(MemDisk(data.into())), std::time::Duration::from_secs(5));
        }
    }
}

/// Bytes followed by zeros up to a size.
struct Padded(Vec<u8>, u64);

impl crate::vmi::disk::Disk for Padded {
    fn size(&self) -> u64 {
        self.1
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        crate::vmi::disk::check(offset, buf.len(), self.1)?;
        buf.fill(0);
        let have = self.0.len() as u64;
        if offset < have {
            let n = ((have - offset) as usize).min(buf.len());
            buf[..n].copy_from_slice(&self.0[offset as usize..offset as usize + n]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipeline_entry_takes_a_real_capture_and_garbage() {
        let real = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/http-put.pcap")).unwrap();
        super::pipeline(&real);
        super::pipeline(&real[..real.len() / 2]);
        super::pipeline(b"\xd4\xc3\xb2\xa1garbage");
        for kind in ["xfs", "btrfs", "exim", "registry", "qcow2", "vmdk", "vhd", "vdi", "vhdx", "lvm", "mailq", "ntfs"]
        {
            super::vmi_reader(kind, b"XFSBQFI\xfbKDMVconectixvhdxfile<<< Oracle VM VirtualBox Disk Image >>>\n\0regf");
        }
        super::conversation(Box::new(crate::analyze::stream::RawStream::new()), &[0, 3, b'a', b'b', b'c', 3, 9]);
        // EVIL (refused) then GOOD at the same place; a valid conflicting overlap; a hole.
        super::reassembly_against_receiver(&[0xff, 0xff, 0xff, 0xf0, 3, 0, 0, 4, 0, 0, 0, 4, 2, 0, 2, 4, 0, 0, 9, 3]);
    }
}
