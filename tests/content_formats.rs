//! Format detection on real files made at test time by the tools that own the formats
//! (qemu-img, sfdisk/sgdisk, genisoimage, tar, gzip, xz, zstd, bzip2, zip), fed through the
//! FileLayer in random chunk sizes, some with holes. Expected values come from the same tools'
//! own readers (`qemu-img info --output=json`, `sfdisk --json`, `isoinfo -d`, `tar -tvf`,
//! `gzip -l`, `xz --robot -l`, `zstd -lv`, `zipinfo`), never from this code.
//!
//! Debian packages: qemu-utils, fdisk, gdisk, genisoimage, tar, gzip, xz-utils, zstd, bzip2, zip,
//! unzip, ffmpeg (a session description).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use tapir::content::format::FormatVerdict;
use tapir::content::FileLayer;
use tapir::record::{Cin, Dir, FlowDescr, Liid, ObjectMeta, ObjectRecord, Provenance, Record, RecordSink};
use tapir::timestamp::Timestamp;

/// Keeps only finished objects: the images are megabytes and their bytes are not the point.
#[derive(Default)]
struct EndSink(Vec<ObjectRecord>);

impl RecordSink for EndSink {
    fn record(&mut self, rec: Record<'_>) {
        if let Record::ObjectEnd(r, _) = rec {
            self.0.push(r);
        }
    }
}

/// xorshift64*: deterministic chunk sizes per seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Mostly small chunks (like TCP segments), sometimes large ones.
    fn chunk(&mut self) -> usize {
        match self.next() % 8 {
            0 => 1 + (self.next() % 7) as usize,
            1 => 60_000 + (self.next() % 70_000) as usize,
            _ => 1 + (self.next() % 3000) as usize,
        }
    }
}

/// Feeds `bytes` through a FileLayer in random chunks; `hole` = (offset, len) never delivered.
fn feed_with(bytes: &[u8], seed: u64, hole: Option<(usize, usize)>) -> ObjectRecord {
    feed_object(bytes, seed, hole, FileLayer::new(), |_| {})
}

/// [`feed_with`] through `files`, the object's metadata set by `meta` first.
fn feed_object(
    bytes: &[u8],
    seed: u64,
    hole: Option<(usize, usize)>,
    mut files: FileLayer,
    meta: impl FnOnce(&mut ObjectMeta),
) -> ObjectRecord {
    let liid = Liid::new("LIID-1").unwrap();
    let prov = Arc::new(Provenance { selector: "ipv4:10.0.0.1".into(), target: "t".into(), chain: vec![] });
    let flow = FlowDescr {
        proto: "tcp".into(),
        orig: "10.0.0.1:1".parse().unwrap(),
        resp: "10.0.0.2:2".parse().unwrap(),
        vlans: vec![],
        tunnels: vec![],
    };
    let now = Timestamp::from_secs(1_700_000_000);
    let mut sink = EndSink::default();
    let mut m = ObjectMeta::new("file", "http", &flow, Dir::Resp, Cin::FIRST, now);
    meta(&mut m);
    let id = files.open(m, &liid, &prov, &mut sink);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut off = 0usize;
    while off < bytes.len() {
        let n = rng.chunk().min(bytes.len() - off);
        let (s, e) = (off, off + n);
        match hole {
            // Deliver only the parts of the chunk outside the hole; the layer sees the jump.
            Some((hs, hl)) if s < hs + hl && e > hs => {
                if s < hs {
                    files.data(&liid, id, s as u64, &bytes[s..hs], now, &mut sink);
                }
                if e > hs + hl {
                    files.data(&liid, id, (hs + hl) as u64, &bytes[hs + hl..e], now, &mut sink);
                }
            }
            _ => files.data(&liid, id, s as u64, &bytes[s..e], now, &mut sink),
        }
        off = e;
    }
    if let Some((hs, hl)) = hole {
        if hs + hl >= bytes.len() {
            files.gap(&liid, id, hs as u64, (bytes.len() - hs) as u64, now, &mut sink);
        }
    }
    files.end(&liid, id, true, now, &mut sink);
    assert_eq!(sink.0.len(), 1);
    sink.0.pop().unwrap()
}

/// The verdict, checked to be the same for three chunkings.
fn verdict_of(path: &Path) -> FormatVerdict {
    let bytes = std::fs::read(path).unwrap();
    let first = feed_with(&bytes, 1, None);
    assert_eq!(first.size, bytes.len() as u64);
    let v = first.format.expect("every finished object has a verdict");
    for seed in [2, 3] {
        assert_eq!(feed_with(&bytes, seed, None).format.as_ref(), Some(&v), "seed {seed}");
    }
    v
}

fn run(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} must be installed (see the list at the top of this file): {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(dir: &Path, script: &str) -> String {
    run(dir, "sh", &["-ec", script])
}

fn qemu_info(dir: &Path, file: &str, fmt: Option<&str>) -> Value {
    let mut args = vec!["info", "--output=json"];
    if let Some(f) = fmt {
        args.extend(["-f", f]);
    }
    args.push(file);
    serde_json::from_str(&run(dir, "qemu-img", &args)).unwrap()
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    (d, p)
}

fn d<'a>(v: &'a FormatVerdict, k: &str) -> &'a Value {
    &v.details[k]
}

// ---------------------------------------------------------------------------------------------
// qcow2

fn check_qcow2(v: &FormatVerdict, info: &Value) {
    assert_eq!(v.format, "qcow2", "{v:?}");
    let fs = &info["format-specific"]["data"];
    assert_eq!(d(v, "virtual_size"), &info["virtual-size"]);
    assert_eq!(d(v, "cluster_size"), &info["cluster-size"]);
    assert_eq!(d(v, "compat"), &fs["compat"]);
    assert_eq!(d(v, "compression_type"), &fs["compression-type"]);
    assert_eq!(d(v, "refcount_bits"), &fs["refcount-bits"]);
    assert_eq!(d(v, "encryption"), "none");
    if fs["compat"] == "1.1" {
        assert_eq!(d(v, "lazy_refcounts"), &fs["lazy-refcounts"]);
        assert_eq!(d(v, "corrupt"), &fs["corrupt"]);
        assert_eq!(d(v, "extended_l2"), &fs["extended-l2"]);
    }
}

#[test]
fn qcow2_v3_matches_qemu_img() {
    let (_t, dir) = tmp();
    run(&dir, "qemu-img", &["create", "-q", "-f", "qcow2", "x.qcow2", "64M"]);
    let v = verdict_of(&dir.join("x.qcow2"));
    check_qcow2(&v, &qemu_info(&dir, "x.qcow2", None));
    assert!(v.reason.starts_with("magic \"QFI\\xfb\" at 0; version 3"), "{}", v.reason);
    assert_eq!(d(&v, "backing_file"), &Value::Null);
}

#[test]
fn qcow2_v2_zstd_and_backing_file() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "qemu-img create -q -f raw base.raw 16M
         qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
         qemu-img create -q -f qcow2 -o compression_type=zstd,cluster_size=4096,lazy_refcounts=on z.qcow2 1G
         qemu-img create -q -f qcow2 -b base.raw -F raw child.qcow2",
    );
    let v2 = verdict_of(&dir.join("v2.qcow2"));
    check_qcow2(&v2, &qemu_info(&dir, "v2.qcow2", None));
    assert_eq!(d(&v2, "version"), 2);
    let z = verdict_of(&dir.join("z.qcow2"));
    let zi = qemu_info(&dir, "z.qcow2", None);
    check_qcow2(&z, &zi);
    assert_eq!(zi["format-specific"]["data"]["compression-type"], "zstd");
    assert_eq!(zi["format-specific"]["data"]["lazy-refcounts"], true);
    let c = verdict_of(&dir.join("child.qcow2"));
    let ci = qemu_info(&dir, "child.qcow2", None);
    check_qcow2(&c, &ci);
    assert_eq!(d(&c, "backing_file"), &ci["backing-filename"]);
    assert_eq!(d(&c, "backing_format"), &ci["backing-filename-format"]);
}

#[test]
fn qcow2_with_hole_over_the_header_is_not_claimed() {
    let (_t, dir) = tmp();
    run(&dir, "qemu-img", &["create", "-q", "-f", "qcow2", "x.qcow2", "64M"]);
    let bytes = std::fs::read(dir.join("x.qcow2")).unwrap();
    let r = feed_with(&bytes, 7, Some((0, 100)));
    let v = r.format.unwrap();
    assert_ne!(v.format, "qcow2");
    assert!(v.reason.contains("100 of the first 65536 bytes were missing"), "{}", v.reason);
    assert_eq!(r.gaps, vec![(0, 100)]);
    // A hole after the header changes nothing but the reason.
    let r = feed_with(&bytes, 8, Some((70_000, 5000)));
    let v = r.format.unwrap();
    assert_eq!(v.format, "qcow2");
    assert!(!r.complete);
}

// ---------------------------------------------------------------------------------------------
// VMDK

fn check_vmdk(v: &FormatVerdict, info: &Value, create_type: &str) {
    assert_eq!(v.format, "vmdk", "{v:?}");
    let fs = &info["format-specific"]["data"];
    assert_eq!(d(v, "virtual_size"), &info["virtual-size"]);
    assert_eq!(d(v, "grain_size"), &info["cluster-size"]);
    let desc = d(v, "descriptor");
    assert_eq!(desc["cid"], fs["cid"]);
    assert_eq!(desc["parent_cid"], fs["parent-cid"]);
    assert_eq!(desc["create_type"], create_type);
    assert_eq!(fs["create-type"], create_type);
    let ext = &fs["extents"][0];
    assert_eq!(desc["extents"][0]["size"], ext["virtual-size"]);
    assert_eq!(desc["extents"][0]["file"], ext["filename"]);
    assert_eq!(d(v, "stream_optimized"), &Value::Bool(ext["compressed"] == true));
}

#[test]
fn vmdk_sparse_and_stream_optimized_match_qemu_img() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "qemu-img create -q -f vmdk s.vmdk 64M
         qemu-img create -q -f vmdk -o subformat=streamOptimized o.vmdk 200M",
    );
    let s = verdict_of(&dir.join("s.vmdk"));
    check_vmdk(&s, &qemu_info(&dir, "s.vmdk", None), "monolithicSparse");
    assert_eq!(d(&s, "compression"), "none");
    let o = verdict_of(&dir.join("o.vmdk"));
    check_vmdk(&o, &qemu_info(&dir, "o.vmdk", None), "streamOptimized");
    assert_eq!(d(&o, "compression"), "deflate");
    assert!(o.reason.contains("stream-optimised"), "{}", o.reason);
}

#[test]
fn vmdk_text_descriptor() {
    let (_t, dir) = tmp();
    run(&dir, "qemu-img", &["create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "f.vmdk", "32M"]);
    let v = verdict_of(&dir.join("f.vmdk"));
    assert_eq!(v.format, "vmdk-descriptor", "{v:?}");
    let info = qemu_info(&dir, "f.vmdk", None);
    let fs = &info["format-specific"]["data"];
    let desc = d(&v, "descriptor");
    assert_eq!(desc["create_type"], "monolithicFlat");
    assert_eq!(desc["cid"], fs["cid"]);
    assert_eq!(desc["extents"][0]["type"], "FLAT");
    assert_eq!(desc["extents"][0]["size"], info["virtual-size"]);
    // qemu-img names the extent by its path; the descriptor holds the bare name.
    let path = fs["extents"][0]["filename"].as_str().unwrap();
    assert!(path.ends_with(desc["extents"][0]["file"].as_str().unwrap()), "{path}");
    // The flat extent itself is raw zeros: nothing to claim.
    assert_eq!(verdict_of(&dir.join("f-flat.vmdk")).format, "data");
}

// ---------------------------------------------------------------------------------------------
// VHD, VHDX, VDI

#[test]
fn vhd_fixed_and_dynamic_match_qemu_img() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "qemu-img create -q -f vpc -o subformat=fixed fixed.vhd 4M
         qemu-img create -q -f vpc dyn.vhd 64M",
    );
    // A fixed VHD looks raw to qemu's prober: name the format.
    let fi = qemu_info(&dir, "fixed.vhd", Some("vpc"));
    let f = verdict_of(&dir.join("fixed.vhd"));
    assert_eq!(f.format, "vhd", "{f:?}");
    assert_eq!(d(&f, "disk_type"), "fixed");
    assert_eq!(d(&f, "current_size"), &fi["virtual-size"]);
    assert_eq!(d(&f, "checksum_ok"), true);
    assert!(f.reason.starts_with("\"conectix\" footer in the last 512 bytes;"), "{}", f.reason);
    let di = qemu_info(&dir, "dyn.vhd", None);
    assert_eq!(di["format"], "vpc");
    let dv = verdict_of(&dir.join("dyn.vhd"));
    assert_eq!(dv.format, "vhd");
    assert_eq!(d(&dv, "disk_type"), "dynamic");
    assert_eq!(d(&dv, "current_size"), &di["virtual-size"]);
    assert_eq!(d(&dv, "block_size"), &di["cluster-size"]);
    assert!(dv.reason.contains("its copy at 0"), "{}", dv.reason);
    // A hole in the middle of a fixed disk does not hide the footer.
    let bytes = std::fs::read(dir.join("fixed.vhd")).unwrap();
    let r = feed_with(&bytes, 5, Some((1 << 20, 300_000)));
    assert_eq!(r.format.unwrap().details["current_size"], fi["virtual-size"]);
    assert_eq!(r.gaps, vec![(1 << 20, 300_000)]);
}

#[test]
fn vhd_fixed_holding_an_mbr_disk_says_so() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "qemu-img create -q -f raw d.raw 4M
         printf 'label: dos\\n2048,,83\\n' | sfdisk -q d.raw
         qemu-img convert -O vpc -o subformat=fixed d.raw d.vhd",
    );
    let v = verdict_of(&dir.join("d.vhd"));
    assert_eq!(v.format, "vhd");
    assert_eq!(d(&v, "contents")["format"], "mbr");
    assert_eq!(d(&v, "contents")["details"]["partitions"][0]["start_lba"], 2048);
}

#[test]
fn vhdx_sizes_come_from_follow_up_windows() {
    let (_t, dir) = tmp();
    run(&dir, "qemu-img", &["create", "-q", "-f", "vhdx", "x.vhdx", "100M"]);
    let info = qemu_info(&dir, "x.vhdx", None);
    let v = verdict_of(&dir.join("x.vhdx"));
    assert_eq!(v.format, "vhdx", "{v:?}");
    assert_eq!(d(&v, "virtual_size"), &info["virtual-size"]);
    assert_eq!(d(&v, "block_size"), &info["cluster-size"]);
    assert_eq!(d(&v, "logical_sector_size"), 512);
    assert!(d(&v, "creator").as_str().unwrap().starts_with("QEMU"));
}

#[test]
fn vdi_dynamic_and_static_match_qemu_img() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "qemu-img create -q -f vdi d.vdi 64M
         qemu-img create -q -f vdi -o static=on s.vdi 2M",
    );
    for (file, kind) in [("d.vdi", "dynamic"), ("s.vdi", "fixed")] {
        let info = qemu_info(&dir, file, None);
        let v = verdict_of(&dir.join(file));
        assert_eq!(v.format, "vdi", "{v:?}");
        assert_eq!(d(&v, "image_type"), kind);
        assert_eq!(d(&v, "disk_size"), &info["virtual-size"]);
        assert_eq!(d(&v, "block_size"), &info["cluster-size"]);
        assert!(v.reason.contains("0xbeda107f at 0x40"));
    }
}

// ---------------------------------------------------------------------------------------------
// Partition tables and ISO

#[test]
fn mbr_matches_sfdisk() {
    let (_t, dir) = tmp();
    sh(&dir, "truncate -s 8M m.raw; printf 'label: dos\\n2048,4096,83,*\\n6144,,82\\n' | sfdisk -q m.raw");
    let truth: Value = serde_json::from_str(&run(&dir, "sfdisk", &["--json", "m.raw"])).unwrap();
    let t = &truth["partitiontable"];
    let v = verdict_of(&dir.join("m.raw"));
    assert_eq!(v.format, "mbr", "{v:?}");
    assert_eq!(d(&v, "disk_signature"), &t["id"]);
    let parts = d(&v, "partitions").as_array().unwrap();
    let tp = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), tp.len());
    for (p, q) in parts.iter().zip(tp) {
        assert_eq!(p["start_lba"], q["start"]);
        assert_eq!(p["sectors"], q["size"]);
        assert_eq!(p["type"], q["type"]);
        assert_eq!(p["bootable"], q.get("bootable").cloned().unwrap_or(Value::Bool(false)));
    }
}

#[test]
fn gpt_matches_sfdisk_and_sgdisk() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "truncate -s 8M g.raw
         sgdisk -n 1:2048:+2M -t 1:8300 -c 1:root -n 2:0:0 -t 2:ef00 -c 2:esp g.raw >/dev/null",
    );
    let truth: Value = serde_json::from_str(&run(&dir, "sfdisk", &["--json", "g.raw"])).unwrap();
    let t = &truth["partitiontable"];
    let v = verdict_of(&dir.join("g.raw"));
    assert_eq!(v.format, "gpt", "{v:?}");
    assert!(v.reason.contains("protective MBR") && v.reason.contains("header CRC ok"), "{}", v.reason);
    assert_eq!(d(&v, "entries_crc_ok"), true);
    assert_eq!(d(&v, "disk_guid"), &t["id"]);
    assert_eq!(d(&v, "first_usable_lba"), &t["firstlba"]);
    assert_eq!(d(&v, "last_usable_lba"), &t["lastlba"]);
    assert_eq!(d(&v, "partition_entries_lba"), 2);
    let parts = d(&v, "partitions").as_array().unwrap();
    let tp = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), tp.len());
    for (p, q) in parts.iter().zip(tp) {
        assert_eq!(p["first_lba"], q["start"]);
        assert_eq!(p["sectors"], q["size"]);
        assert_eq!(p["type_guid"], q["type"]);
        assert_eq!(p["guid"], q["uuid"]);
        assert_eq!(p["name"], q["name"]);
    }
    // `sgdisk -p` prints the last sector of each partition.
    let listing = run(&dir, "sgdisk", &["-p", "g.raw"]);
    let ends: Vec<u64> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0].parse::<u32>().is_ok()).then(|| f[2].parse().unwrap())
        })
        .collect();
    let mine: Vec<u64> = parts.iter().map(|p| p["last_lba"].as_u64().unwrap()).collect();
    assert_eq!(mine, ends);
    assert_eq!(parts[1]["type_name"], "EFI System");
}

fn isoinfo_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{key} in {out}")).trim()
}

#[test]
fn iso9660_matches_isoinfo() {
    let (_t, dir) = tmp();
    sh(&dir, "mkdir src; echo hello > src/a.txt; genisoimage -quiet -V TAPIR_VOL -J -o x.iso src");
    let info = run(&dir, "isoinfo", &["-d", "-i", "x.iso"]);
    let v = verdict_of(&dir.join("x.iso"));
    assert_eq!(v.format, "iso9660", "{v:?}");
    assert_eq!(d(&v, "volume_id"), isoinfo_field(&info, "Volume id:"));
    assert_eq!(d(&v, "system_id"), isoinfo_field(&info, "System id:"));
    assert_eq!(d(&v, "volume_space_size").to_string(), isoinfo_field(&info, "Volume size is:"));
    assert_eq!(d(&v, "logical_block_size").to_string(), isoinfo_field(&info, "Logical block size is:"));
    assert!(info.contains("Joliet with UCS level 3 found"));
    assert_eq!(d(&v, "joliet_level"), 3);
}

// ---------------------------------------------------------------------------------------------
// Compression and archives

#[test]
fn compressed_streams_match_their_tools() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "seq 1 20000 > numbers.txt
         gzip -k -9 numbers.txt
         xz -k --check=crc64 numbers.txt
         zstd -q -k numbers.txt
         bzip2 -k -1 numbers.txt
         zip -q n.zip numbers.txt numbers.txt.gz",
    );
    let size = std::fs::metadata(dir.join("numbers.txt")).unwrap().len();

    let g = verdict_of(&dir.join("numbers.txt.gz"));
    assert_eq!(g.format, "gzip");
    assert_eq!(d(&g, "original_name"), "numbers.txt");
    // `gzip -l`: compressed uncompressed ratio name.
    let gl = run(&dir, "gzip", &["-l", "numbers.txt.gz"]);
    let unc: u64 = gl.lines().nth(1).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(d(&g, "isize"), unc);
    assert_eq!(unc, size);

    let x = verdict_of(&dir.join("numbers.txt.xz"));
    assert_eq!(x.format, "xz");
    // `xz --robot -l`: the "file" line's 9th field is the check name.
    let xl = run(&dir, "xz", &["--robot", "-l", "numbers.txt.xz"]);
    let check = xl.lines().find(|l| l.starts_with("file\t")).unwrap().split('\t').nth(6).unwrap();
    assert_eq!(d(&x, "check"), check);
    assert_eq!(d(&x, "stream_flags_crc_ok"), true);

    let z = verdict_of(&dir.join("numbers.txt.zst"));
    assert_eq!(z.format, "zstd");
    let zl = run(&dir, "zstd", &["-lv", "numbers.txt.zst"]);
    let dec = zl.lines().find(|l| l.contains("Decompressed Size")).unwrap();
    assert!(dec.contains(&format!("({size} B)")), "{dec}");
    assert_eq!(d(&z, "content_size"), size);

    let b = verdict_of(&dir.join("numbers.txt.bz2"));
    assert_eq!(b.format, "bzip2");
    assert_eq!(d(&b, "block_size"), 100_000);

    let zp = verdict_of(&dir.join("n.zip"));
    assert_eq!(zp.format, "zip");
    assert_eq!(d(&zp, "first_entry")["name"], "numbers.txt");
    let zi = run(&dir, "zipinfo", &["-t", "n.zip"]);
    let n: u64 = zi.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(d(&zp, "entries"), n);
}

/// `tar -tvf` lines as (name, size): perms owner size date time name.
fn tar_tv(dir: &Path, file: &str) -> Vec<(String, u64)> {
    run(dir, "tar", &["--numeric-owner", "-tvf", file])
        .lines()
        .map(|l| {
            // Skip five whitespace-separated fields; the rest of the line is the name.
            let mut rest = l;
            let mut fields = Vec::new();
            for _ in 0..5 {
                rest = rest.trim_start();
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            (rest.trim_start().trim_end_matches('/').to_string(), fields[2].parse().unwrap())
        })
        .collect()
}

fn listing(v: &FormatVerdict) -> Vec<(String, u64)> {
    d(v, "entries")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().trim_end_matches('/').to_string(), e["size"].as_u64().unwrap()))
        .collect()
}

#[test]
fn tar_listings_match_tar_tv_with_long_names() {
    let (_t, dir) = tmp();
    let long = "d".repeat(60) + "/" + &"n".repeat(120) + ".bin";
    sh(
        &dir,
        &format!(
            "mkdir -p {dirpart}; head -c 3000 /dev/zero > {long}; echo small > s.txt
             tar --format=gnu -cf gnu.tar s.txt {long}
             tar --format=pax -cf pax.tar s.txt {long}
             tar --format=ustar -cf ustar.tar s.txt",
            dirpart = "d".repeat(60),
        ),
    );
    for file in ["gnu.tar", "pax.tar", "ustar.tar"] {
        let v = verdict_of(&dir.join(file));
        assert_eq!(v.format, "tar", "{file}: {v:?}");
        let mut truth = tar_tv(&dir, file);
        // `tar -tv` shows GNU tar's directory entries too; so does our listing.
        truth.sort();
        let mut mine = listing(&v);
        mine.sort();
        assert_eq!(mine, truth, "{file}");
        assert_eq!(d(&v, "end_of_archive"), true);
    }
}

#[test]
fn ova_lists_members_and_survives_a_hole_in_a_member() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "qemu-img create -q -f vmdk -o subformat=streamOptimized disk1.vmdk 1G
         printf '<?xml version=\"1.0\"?><Envelope/>' > vm.ovf
         head -c 100000 /dev/urandom > blob.bin
         printf 'SHA256(vm.ovf)= 00\\n' > vm.mf
         tar --format=ustar -cf vm.ova vm.ovf disk1.vmdk blob.bin vm.mf",
    );
    let v = verdict_of(&dir.join("vm.ova"));
    assert_eq!(v.format, "ova", "{v:?}");
    assert!(v.reason.contains("\"vm.ovf\" is an OVF descriptor"), "{}", v.reason);
    let truth = tar_tv(&dir, "vm.ova");
    assert_eq!(listing(&v), truth);

    // A hole inside blob.bin's data: headers still line up.
    let bytes = std::fs::read(dir.join("vm.ova")).unwrap();
    let blob = d(&v, "entries")[2]["offset"].as_u64().unwrap() as usize;
    let r = feed_with(&bytes, 4, Some((blob + 512 + 1000, 50_000)));
    let hv = r.format.unwrap();
    assert_eq!(listing(&hv), truth);
    assert_eq!(hv.details["end_of_archive"], true);
    // A hole over the last member's header: the walker stops and says where.
    let mf = d(&v, "entries")[3]["offset"].as_u64().unwrap() as usize;
    let r = feed_with(&bytes, 4, Some((mf + 100, 10)));
    let hv = r.format.unwrap();
    assert_eq!(hv.format, "ova");
    assert_eq!(listing(&hv), truth[..3].to_vec());
    assert_eq!(hv.details["stopped"], format!("hole over the header at {mf}"));
}

#[test]
fn unknown_and_empty() {
    let (_t, dir) = tmp();
    sh(&dir, "yes tapir-bytes | head -c 200000 > r.bin; : > e.bin; echo 'just text' > t.txt");
    for f in ["r.bin", "t.txt"] {
        let v = verdict_of(&dir.join(f));
        assert_eq!(v.format, "data", "{f}: {v:?}");
        assert!(v.reason.starts_with("no known signature"));
    }
    assert_eq!(verdict_of(&dir.join("e.bin")).format, "empty");
}

/// A session description as ffmpeg writes one for an audio and a video RTP stream (the file a
/// WHIP client POSTs, or an analyst's `-sdp_file`): named `sdp`, with each `m=` line and its
/// `a=rtpmap` as `grep` reads them from the file. A description cut short or missing its `o=` line
/// is not claimed.
#[test]
fn session_descriptions_match_their_lines() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "ffmpeg -hide_banner -nostdin -loglevel error -f lavfi -i testsrc=size=160x120:rate=10:duration=0.5 \
           -f lavfi -i sine=frequency=440:sample_rate=8000:duration=0.5 \
           -map 0:v -c:v libx264 -f rtp rtp://127.0.0.1:15004 \
           -map 1:a -c:a pcm_mulaw -f rtp rtp://127.0.0.1:15006 -sdp_file s.sdp",
    );
    let v = verdict_of(&dir.join("s.sdp"));
    assert_eq!(v.format, "sdp", "{v:?}");
    // `m=video 15004 RTP/AVP 96`: media, port, proto, formats.
    let m_lines: Vec<Vec<String>> = sh(&dir, "grep '^m=' s.sdp | cut -c3-")
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(m_lines.len(), 2, "{m_lines:?}");
    let media = d(&v, "media").as_array().unwrap();
    assert_eq!(media.len(), m_lines.len());
    for (m, line) in media.iter().zip(&m_lines) {
        assert_eq!(m["media"], line[0]);
        assert_eq!(m["port"].to_string(), line[1]);
        assert_eq!(m["proto"], line[2]);
        assert_eq!(m["formats"], Value::from(line[3..].to_vec()));
    }
    let rtpmaps: Vec<String> = sh(&dir, "grep '^a=rtpmap:' s.sdp | cut -d: -f2").lines().map(str::to_string).collect();
    let ours: Vec<Value> = media.iter().flat_map(|m| m["rtpmap"].as_array().unwrap().clone()).collect();
    assert_eq!(ours, rtpmaps.iter().map(|r| Value::from(r.as_str())).collect::<Vec<_>>());
    let origin = sh(&dir, "grep '^o=' s.sdp | awk '{print $6}'");
    assert_eq!(d(&v, "origin")["address"], origin.trim());

    let bytes = std::fs::read(dir.join("s.sdp")).unwrap();
    // Cut inside its first m= line, with a hole over its start, without its o= line: not claimed.
    let cut = &bytes[..bytes.windows(2).position(|w| w == b"m=").unwrap() + 4];
    assert_ne!(feed_with(cut, 1, None).format.unwrap().format, "sdp");
    assert_ne!(feed_with(&bytes, 1, Some((0, 3))).format.unwrap().format, "sdp");
    let text = String::from_utf8(bytes).unwrap();
    let no_origin: String = text.lines().filter(|l| !l.starts_with("o=")).map(|l| format!("{l}\n")).collect();
    assert_eq!(feed_with(no_origin.as_bytes(), 1, None).format.unwrap().format, "data");
}

// ---------------------------------------------------------------------------------------------
// Digests where they serve

/// `sha256sum`, `md5sum` or `sha512sum` of `file`.
fn sum(dir: &Path, tool: &str, file: &str) -> String {
    run(dir, tool, &[file]).split_whitespace().next().unwrap().to_string()
}

/// Disk images (told by their head, whatever their name) get MD5 and SHA-512 beside SHA-256,
/// as image services record them; anything else gets SHA-256 only, unless its name says image,
/// it is an image-service upload, or its head had a hole. An S3 object keeps its MD5 (its
/// ETag). `every_digest` gives all three to all. Expected digests from coreutils.
#[test]
fn md5_and_sha512_for_disk_images_sha256_for_everything() {
    let (_t, dir) = tmp();
    sh(
        &dir,
        "qemu-img create -q -f qcow2 x.qcow2 64M
         qemu-img create -q -f vmdk x.vmdk 32M
         qemu-img create -q -f vpc x.vhd 16M
         qemu-img create -q -f vdi x.vdi 16M
         truncate -s 8M m.raw; printf 'label: dos\\n2048,,83\\n' | sfdisk -q m.raw
         mkdir src; echo hello > src/a.txt; genisoimage -quiet -o x.iso src
         seq 1 40000 > numbers.txt; gzip -k -9 numbers.txt; tar cf n.tar numbers.txt
         yes tapir-bytes | head -c 200000 > r.bin",
    );
    let check = |file: &str, image: bool, files: FileLayer, meta: &dyn Fn(&mut ObjectMeta), why: &str| {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let r = feed_object(&bytes, 7, None, files, meta);
        assert_eq!(r.sha256, sum(&dir, "sha256sum", file), "{file} ({why})");
        let (md5, sha512) = (sum(&dir, "md5sum", file), sum(&dir, "sha512sum", file));
        if image {
            assert_eq!((r.md5.as_deref(), r.sha512.as_deref()), (Some(&*md5), Some(&*sha512)), "{file} ({why})");
        } else {
            assert_eq!((r.md5.as_deref(), r.sha512.as_deref()), (None, None), "{file} ({why})");
        }
    };
    let plain = |_: &mut ObjectMeta| {};
    for f in ["x.qcow2", "x.vmdk", "x.vhd", "x.vdi", "m.raw", "x.iso"] {
        check(f, true, FileLayer::new(), &plain, "its head says disk image");
    }
    for f in ["numbers.txt", "numbers.txt.gz", "n.tar", "r.bin"] {
        check(f, false, FileLayer::new(), &plain, "not an image");
    }
    // Named as an image (even compressed), or uploaded to an image service: the name or the
    // request says image where the bytes cannot.
    let named = |n: &'static str| move |m: &mut ObjectMeta| m.name = Some(n.into());
    check("numbers.txt.gz", true, FileLayer::new(), &named("/v1/cirros-0.6.img.gz"), "named .img.gz");
    check("r.bin", true, FileLayer::new(), &named("disk.VMDK"), "named .VMDK");
    check("r.bin", false, FileLayer::new(), &named("img"), "a bare name is no extension");
    check("r.bin", false, FileLayer::new(), &named("notes.gz"), "compressed, not an image");
    let glance = |m: &mut ObjectMeta| m.context = serde_json::json!({ "image_id": "6d1e7d8b" });
    check("r.bin", true, FileLayer::new(), &glance, "a Glance upload");
    // The configured choice: all three for every object.
    let every = tapir::content::ContentLimits { every_digest: true, ..Default::default() };
    check("r.bin", true, FileLayer::with_limits(every), &plain, "every_digest");

    // An S3 part keeps its MD5 (its ETag), not its SHA-512.
    let bytes = std::fs::read(dir.join("r.bin")).unwrap();
    let s3 = |m: &mut ObjectMeta| m.context = serde_json::json!({ "s3": { "bucket": "b", "part_number": 2 } });
    let r = feed_object(&bytes, 7, None, FileLayer::new(), s3);
    assert_eq!((r.md5, r.sha512), (Some(sum(&dir, "md5sum", "r.bin")), None));

    // A hole in the head: nothing tells what the object is, so all three stay (over the bytes
    // as stored: the hole as zeros).
    let r = feed_object(&bytes, 7, Some((100, 1000)), FileLayer::new(), plain);
    let mut stored = bytes.clone();
    stored[100..1100].fill(0);
    std::fs::write(dir.join("stored.bin"), &stored).unwrap();
    assert_eq!(r.sha256, sum(&dir, "sha256sum", "stored.bin"));
    assert_eq!(r.md5, Some(sum(&dir, "md5sum", "stored.bin")));
    assert_eq!(r.sha512, Some(sum(&dir, "sha512sum", "stored.bin")));

    // An image whose head ends inside a hole: MD5 and SHA-512 start late and catch up on the
    // head, the hole's zeros past it included, in any chunking.
    let image = std::fs::read(dir.join("m.raw")).unwrap();
    let mut stored = image.clone();
    stored[60_000..70_000].fill(0);
    std::fs::write(dir.join("stored.raw"), &stored).unwrap();
    for seed in [1, 2, 3] {
        let r = feed_object(&image, seed, Some((60_000, 10_000)), FileLayer::new(), plain);
        assert_eq!(r.sha256, sum(&dir, "sha256sum", "stored.raw"), "seed {seed}");
        assert_eq!(r.md5, Some(sum(&dir, "md5sum", "stored.raw")), "seed {seed}");
        assert_eq!(r.sha512, Some(sum(&dir, "sha512sum", "stored.raw")), "seed {seed}");
    }
}

/// Pictures made by FFmpeg (a 320x200 test pattern as PNG, JPEG, GIF and WebP) are named by
/// their format, with the size ffprobe reads from the same file where the header holds it.
#[test]
fn pictures_match_ffprobe() {
    let (_t, dir) = tmp();
    for (file, format) in [("p.png", "png"), ("p.jpg", "jpeg"), ("p.gif", "gif"), ("p.webp", "webp")] {
        run(
            &dir,
            "ffmpeg",
            &["-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x200", "-frames:v", "1", "-y", file],
        );
        let v = verdict_of(&dir.join(file));
        assert_eq!(v.format, format, "{file}: {v:?}");
        let probe =
            run(&dir, "ffprobe", &["-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", file]);
        let (w, h) = probe.trim().split_once(',').unwrap();
        if format != "webp" {
            assert_eq!(
                (d(&v, "width").to_string(), d(&v, "height").to_string()),
                (w.to_string(), h.to_string()),
                "{file}"
            );
        }
    }
    // A PNG's signature alone, cut before its header: still a PNG, its size not guessed.
    std::fs::write(dir.join("cut.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    let v = verdict_of(&dir.join("cut.png"));
    assert_eq!((v.format.as_str(), d(&v, "width")), ("png", &Value::Null));
}
