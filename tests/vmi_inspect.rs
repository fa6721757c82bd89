//! `tapir vmi inspect` on images made by the real tools at test time: a root tree written here,
//! `mkfs.ext4 -d` (populates without mounting) inside a GPT or an MBR extended partition made by
//! `sfdisk`, converted by `qemu-img` (qcow2 v2 and v3, deflate and zstd compressed clusters,
//! an internal snapshot). Expected values come from the files written, `sha256sum`,
//! `ssh-keygen -l`, `sfdisk -J`, `debugfs` and `qemu-img`, never from tapir.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vmi_common::{inspect, run, sh, sha256sum};

use crate::{common, vmi_common};

/// sha256 of the guest's bytes as tapir's container readers give them.
fn guest_sha256(image: &Path) -> String {
    use tapir::vmi::disk::{Disk, FileDisk};
    let mut report = tapir::vmi::Report::default();
    let mut g = tapir::vmi::open_container(Box::new(FileDisk::open(image).unwrap()), &mut report).expect("readable");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < g.size() {
        let n = buf.len().min((g.size() - at) as usize);
        g.read_at(at, &mut buf[..n]).unwrap();
        ctx.update(&buf[..n]);
        at += n as u64;
    }
    hex::encode(ctx.finish())
}

/// The guest's root tree: what the use case hides in a VM.
struct Root {
    dir: PathBuf,
    fingerprint: String,
    mail_sha256: String,
    unsent_sha256: [String; 2],
    clip_sha256: String,
}

fn root_tree(base: &Path) -> Root {
    let dir = base.join("root");
    sh(
        r#"
        mkdir -p root/etc/cron.d root/var/spool/cron/crontabs root/home/joe/.ssh root/home/joe/Mail/outbox \
                 root/home/joe/Videos root/root root/etc/systemd/system/multi-user.target.wants root/etc/sudoers.d
        printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' > root/etc/os-release
        echo joe-vm > root/etc/hostname
        echo Europe/Berlin > root/etc/timezone
        printf 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\njoe:x:1000:1000:Joe,,,:/home/joe:/bin/bash\nguest:x:1001:1001::/home/guest:/bin/sh\n' > root/etc/passwd
        printf 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\njoe:$y$j9T$salt$hashhashhash:19000:0:99999:7:::\nguest::19000:0:99999:7:::\n' > root/etc/shadow
        printf 'root:x:0:\nsudo:x:27:joe\njoe:x:1000:\n' > root/etc/group
        printf 'joe ALL=(ALL) NOPASSWD: ALL\n' > root/etc/sudoers.d/joe
        printf 'SHELL=/bin/sh\n17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n' > root/etc/crontab
        printf 'MAILTO=""\n@reboot sleep 3600 && mailclient --flush-outbox\n*/5 * * * * /home/joe/bin/sync.sh\n' > root/var/spool/cron/crontabs/joe
        ssh-keygen -q -t ed25519 -N "" -C "joe@laptop" -f key
        cp key.pub root/home/joe/.ssh/authorized_keys
        printf 'From: joe@example.net\r\nTo: partner@example.org\r\nSubject: the plan\r\nMessage-ID: <1@joe-vm>\r\nDate: Sun, 22 Nov 2026 09:05:00 +0000\r\n\r\nmeet at noon\r\n' > root/home/joe/Mail/outbox/1.eml
        { printf '\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2'; head -c 300000 /dev/urandom; } > root/home/joe/Videos/clip.mp4
        printf 'ls\ncat /etc/passwd\nscp vm.qcow2 upload:\n' > root/home/joe/.bash_history
        # A mail client's outbox: an mbox of two messages.
        tb="root/home/joe/.thunderbird/k3x9.default-esr/Mail/Local Folders"
        mkdir -p "$tb"
        printf 'From: joe@example.net\nTo: a@example.org\nSubject: first\nMessage-ID: <u1@joe-vm>\n\nhello\n' > unsent1.eml
        printf 'From: joe@example.net\nTo: b@example.org\nSubject: second\nMessage-ID: <u2@joe-vm>\n\n>From the start\n' > unsent2.eml
        { printf 'From - Sun Nov 22 09:00:00 2026\n'; cat unsent1.eml; printf '\n'; printf 'From - Sun Nov 22 09:01:00 2026\n'; cat unsent2.eml; printf '\n'; } > "$tb/Unsent Messages"
        ln -s /lib/systemd/system/ssh.service root/etc/systemd/system/multi-user.target.wants/ssh.service
        "#,
        base,
    );
    let fp = run(Command::new("ssh-keygen").arg("-lf").arg(base.join("key.pub")));
    Root {
        fingerprint: fp.split_whitespace().nth(1).unwrap().to_string(),
        mail_sha256: sha256sum(&dir.join("home/joe/Mail/outbox/1.eml")),
        unsent_sha256: [sha256sum(&base.join("unsent1.eml")), sha256sum(&base.join("unsent2.eml"))],
        clip_sha256: sha256sum(&dir.join("home/joe/Videos/clip.mp4")),
        dir,
    }
}

/// A 64 MiB disk with `table` (sfdisk script) and the root tree as ext4 in partition `index`
/// (0-based in `sfdisk -J`'s list); returns the partition's number and byte offset.
fn disk(base: &Path, name: &str, table: &str, index: usize, root: &Root) -> (PathBuf, u64, u64) {
    let raw = base.join(name);
    sh(&format!("truncate -s 64M {name} && printf '{table}' | sfdisk -q {name}"), base);
    let j: Value = serde_json::from_str(&run(Command::new("sfdisk").arg("-J").arg(&raw))).unwrap();
    let p = &j["partitiontable"]["partitions"][index];
    let (start, size) = (p["start"].as_u64().unwrap(), p["size"].as_u64().unwrap());
    let number: u64 = p["node"].as_str().unwrap().trim_start_matches(raw.to_str().unwrap()).parse().unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "joeroot", "-E"])
        .arg(format!("offset={}", start * 512))
        .arg("-d")
        .arg(&root.dir)
        .arg(&raw)
        .arg(format!("{}k", size / 2)));
    // The fixture is what we meant: debugfs reads the outbox back.
    let ls = run(Command::new("debugfs").arg("-R").arg("ls /home/joe/Mail/outbox").arg(format!(
        "{}?offset={}",
        raw.display(),
        start * 512
    )));
    assert!(ls.contains("1.eml"), "{ls}");
    (raw, number, start * 512)
}

fn check_linux(r: &Value, root: &Root, partition: u64, offset: u64, label: &str) {
    let fs: Vec<&Value> = r["filesystems"].as_array().unwrap().iter().filter(|f| f["linux"].is_object()).collect();
    assert_eq!(fs.len(), 1, "{label}: {r:#}");
    let fs = fs[0];
    assert_eq!(fs["partition"], partition, "{label}");
    assert_eq!(fs["offset"], offset, "{label}");
    assert_eq!(fs["label"], "joeroot", "{label}");
    let l = &fs["linux"];
    assert_eq!(l["os"]["pretty_name"], "Debian GNU/Linux 12 (bookworm)", "{label}");
    assert_eq!(l["os"]["id"], "debian");
    assert_eq!(l["hostname"], "joe-vm");
    assert_eq!(l["timezone"], "Europe/Berlin");
    let user = |n: &str| l["users"].as_array().unwrap().iter().find(|u| u["name"] == n).cloned().unwrap();
    assert_eq!(user("joe")["password"], "set");
    assert_eq!(user("joe")["groups"], serde_json::json!(["sudo"]));
    assert_eq!(user("guest")["password"], "empty");
    assert_eq!(user("root")["password"], "locked");
    // Never the hash itself, anywhere in the report.
    assert!(!r.to_string().contains("hashhashhash"), "{label}: the password hash leaked");
    assert_eq!(l["sudoers"], serde_json::json!(["/etc/sudoers.d/joe: joe ALL=(ALL) NOPASSWD: ALL"]));
    let keys = l["ssh_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["fingerprint"], root.fingerprint.as_str(), "{label}: ssh-keygen -l's fingerprint");
    assert_eq!(keys[0]["comment"], "joe@laptop");
    assert_eq!(keys[0]["user"], "joe");
    let cron: Vec<(String, String, String)> = l["crontabs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap().into(),
                c["schedule"].as_str().unwrap().into(),
                c["command"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        cron,
        vec![
            ("root".into(), "17 * * * *".into(), "cd / && run-parts --report /etc/cron.hourly".into()),
            ("joe".into(), "@reboot".into(), "sleep 3600 && mailclient --flush-outbox".into()),
            ("joe".into(), "*/5 * * * *".into(), "/home/joe/bin/sync.sh".into()),
        ],
        "{label}"
    );
    assert_eq!(l["enabled_units"], serde_json::json!(["ssh.service (multi-user.target.wants)"]));
    let mail = l["mail"].as_array().unwrap();
    assert_eq!(mail.len(), 3, "{label}: {mail:?}");
    let unsent = "/home/joe/.thunderbird/k3x9.default-esr/Mail/Local Folders/Unsent Messages";
    assert_eq!(mail[0]["path"], format!("{unsent}#1"));
    assert_eq!(mail[0]["subject"], "first");
    assert_eq!(mail[0]["sha256"], root.unsent_sha256[0].as_str());
    assert_eq!(mail[1]["path"], format!("{unsent}#2"));
    assert_eq!(mail[1]["to"], "b@example.org");
    assert_eq!(mail[1]["sha256"], root.unsent_sha256[1].as_str());
    assert_eq!(mail[2]["path"], "/home/joe/Mail/outbox/1.eml");
    assert_eq!(mail[2]["sha256"], root.mail_sha256.as_str());
    assert_eq!(mail[2]["subject"], "the plan");
    assert_eq!(mail[2]["to"], "partner@example.org");
    assert_eq!(mail[2]["message_id"], "<1@joe-vm>");
    let media = l["media"].as_array().unwrap();
    assert_eq!(media.len(), 1);
    assert_eq!(media[0]["path"], "/home/joe/Videos/clip.mp4");
    assert_eq!(media[0]["format"], "mp4");
    assert_eq!(media[0]["sha256"], root.clip_sha256.as_str());
    let hist = &l["histories"][0];
    assert_eq!(hist["path"], "/home/joe/.bash_history");
    assert_eq!(hist["lines"], 3);
    assert_eq!(hist["last"][2], "scp vm.qcow2 upload:");
}

#[test]
fn images_made_by_qemu_img_and_mkfs_are_read_like_debugfs_reads_them() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let root = root_tree(base);

    // GPT: an EFI partition, then the root filesystem.
    let (raw, number, offset) = disk(base, "gpt.raw", "label: gpt\\n,8M,U\\n,,L\\n", 1, &root);
    let r = inspect(&raw);
    assert_eq!(r["container"]["format"], "raw");
    let parts = r["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["kind"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "sfdisk's U type");
    assert_eq!(parts[1]["kind"], "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "sfdisk's L type");
    check_linux(&r, &root, number, offset, "raw gpt");

    // A VM started from it at 08:05:30: the @reboot line's sleep 3600 puts its mail at 09:05:30,
    // */5 fires at 08:10, 08:15, 08:20, and 17 past the hour at 08:17, 09:17, 10:17.
    let out = run(Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["vmi", "inspect", "--json", "--started-at", "2026-11-22T08:05:30Z"])
        .arg(&raw));
    let r: Value = serde_json::from_str(&out).unwrap();
    let cron = &r["filesystems"][0]["linux"]["crontabs"];
    assert_eq!(
        cron[0]["next_runs"],
        serde_json::json!(["2026-11-22T08:17:00Z", "2026-11-22T09:17:00Z", "2026-11-22T10:17:00Z"])
    );
    assert_eq!(cron[1]["next_runs"], serde_json::json!(["2026-11-22T09:05:30Z"]));
    assert_eq!(
        cron[2]["next_runs"],
        serde_json::json!(["2026-11-22T08:10:00Z", "2026-11-22T08:15:00Z", "2026-11-22T08:20:00Z"])
    );

    // Every container qemu-img writes: the guest's bytes through tapir's reader are those of
    // qemu-img's own conversion back to raw, and the findings are the same.
    for (name, fmt, opts) in [
        ("deflate.qcow2", "qcow2", vec!["-c"]),
        ("zstd.qcow2", "qcow2", vec!["-c", "-o", "compression_type=zstd"]),
        ("v2.qcow2", "qcow2", vec!["-o", "compat=0.10"]),
        ("sparse.vmdk", "vmdk", vec![]),
        ("stream.vmdk", "vmdk", vec!["-o", "subformat=streamOptimized"]),
        ("dynamic.vhd", "vpc", vec![]),
        ("fixed.vhd", "vpc", vec!["-o", "subformat=fixed"]),
        ("dynamic.vhdx", "vhdx", vec![]),
        ("small-blocks.vhdx", "vhdx", vec!["-o", "block_size=1M"]),
        ("dynamic.vdi", "vdi", vec![]),
        ("static.vdi", "vdi", vec!["-o", "static=on"]),
    ] {
        let img = base.join(name);
        run(Command::new("qemu-img").args(["convert", "-O", fmt]).args(&opts).arg(&raw).arg(&img));
        let info: Value =
            serde_json::from_str(&run(Command::new("qemu-img").args(["info", "--output=json"]).arg(&img))).unwrap();
        let r = inspect(&img);
        let expect_format = match fmt {
            "vpc" => "vhd",
            f => f,
        };
        assert_eq!(r["container"]["format"], expect_format, "{name}");
        // A fixed VHD is its data then a 512-byte footer whose current size the spec says is the
        // disk's; qemu counts the footer in too (and reads it as the last sector).
        let size = if name == "fixed.vhd" {
            std::fs::metadata(&img).unwrap().len() - 512
        } else {
            info["virtual-size"].as_u64().unwrap()
        };
        assert_eq!(r["container"]["virtual_size"], size, "{name}");
        if fmt == "qcow2" {
            let compat = info["format-specific"]["data"]["compat"].as_str().unwrap();
            assert_eq!(r["container"]["qcow2"]["version"], if compat == "0.10" { 2 } else { 3 }, "{name}");
        }
        if name == "zstd.qcow2" {
            assert_eq!(r["container"]["qcow2"]["compression"], "zstd");
        }
        check_linux(&r, &root, number, offset, name);
        let back = base.join(format!("{name}.raw"));
        run(Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(&img).arg(&back));
        run(Command::new("truncate").arg("-s").arg(size.to_string()).arg(&back));
        assert_eq!(guest_sha256(&img), sha256sum(&back), "{name}: guest view = qemu-img's");
        std::fs::remove_file(&back).unwrap();
    }

    // An OVA: a tar of the descriptor and a streamOptimized disk.
    std::fs::write(base.join("appliance.ovf"), "<Envelope/>").unwrap();
    std::fs::copy(base.join("stream.vmdk"), base.join("joe-disk1.vmdk")).unwrap();
    sh("tar --format=ustar -cf joe.ova appliance.ovf joe-disk1.vmdk", base);
    let r = inspect(&base.join("joe.ova"));
    assert_eq!(r["container"]["format"], "ova");
    assert_eq!(r["container"]["ova_disk"], "joe-disk1.vmdk");
    check_linux(&r, &root, number, offset, "ova");

    // An internal snapshot, as `qemu-img snapshot -l` lists it.
    let img = base.join("deflate.qcow2");
    run(Command::new("qemu-img").args(["snapshot", "-c", "before-upload"]).arg(&img));
    let r = inspect(&img);
    let snaps = r["container"]["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["name"], "before-upload");
    assert_eq!(snaps[0]["id"], "1");
    assert_eq!(snaps[0]["vm_state_size"], 0);
    check_linux(&r, &root, number, offset, "with a snapshot");

    // MBR, the root filesystem in a logical partition of an extended one.
    let (raw, number, offset) = disk(base, "mbr.raw", "label: dos\\n,8M,c\\n,,E\\n,,L\\n", 2, &root);
    assert_eq!(number, 5);
    let r = inspect(&raw);
    check_linux(&r, &root, number, offset, "mbr logical");
}

#[test]
fn hostile_images_get_a_clear_note_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    sh("qemu-img create -q -f qcow2 small.qcow2 16M", base);
    let good = std::fs::read(base.join("small.qcow2")).unwrap();
    let write = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        let p = base.join(name);
        std::fs::write(&p, v).unwrap();
        p
    };
    // A qcow2 claiming 1 EiB.
    let eib = write("eib.qcow2", &|v| v[24..32].copy_from_slice(&(1u64 << 60).to_be_bytes()));
    let r = inspect(&eib);
    assert!(r["notes"][0].as_str().unwrap().contains("above the"), "{r}");
    // An L1 table past the end of the file.
    let l1 = write("l1.qcow2", &|v| v[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes()));
    let r = inspect(&l1);
    assert!(r["notes"][0].as_str().unwrap().contains("L1 table"), "{r}");
    // An L1 entry pointing at the header as its L2 table, and the file cut short.
    let self_ref = write("self.qcow2", &|v| {
        let l1 = u64::from_be_bytes(v[40..48].try_into().unwrap()) as usize;
        v[l1..l1 + 8].copy_from_slice(&0u64.to_be_bytes());
        v[l1..l1 + 8].copy_from_slice(&(0x8000_0000_0000_0000u64 | 0x10000).to_be_bytes());
    });
    let r = inspect(&self_ref);
    assert_eq!(r["filesystems"], serde_json::json!([]));
    let cut = write("cut.qcow2", &|v| v.truncate(1000));
    let r = inspect(&cut);
    assert!(!r["notes"].as_array().unwrap().is_empty(), "{r}");
    // Found by fuzz/fuzz_targets/vmi_vmdk.rs: a VMDK whose grain of 2^62 sectors wrapped to 0
    // bytes and divided by zero on the first read.
    let r =
        inspect(&std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vmi-vmdk-grain-wrap.bin")));
    assert_eq!(r["notes"][0], "vmdk: grain of 4611686018427387904 sectors", "{r}");
    // Not an image at all.
    std::fs::write(base.join("text"), b"hello").unwrap();
    let r = inspect(&base.join("text"));
    assert_eq!(r["container"]["format"], "raw");
    assert!(r["notes"][0].as_str().unwrap().contains("no filesystem"), "{r}");
}

/// The use case's RAM disk: a message, a crontab line, a PNG and an MP4 put in guest RAM by
/// QEMU's loader device at 2 MiB, then `savevm` writes the VM state into the qcow2. Carving
/// finds each at its guest address with `sha256sum`'s digest of the part written.
#[test]
fn saved_ram_of_a_snapshot_is_rebuilt_and_carved() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    run(Command::new("python3").arg("-c").arg(
        r#"
import struct, zlib, os
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
raw = b''.join(b'\x00' + bytes((x * 7 + y * 3) & 255 for x in range(32)) * 3 for y in range(32))
png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 32, 32, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
mail = b'From: joe@example.net\r\nTo: partner@example.org\r\nSubject: from the ram disk\r\nMessage-ID: <ram-1@joe-vm>\r\n\r\nthe video is attached\r\n'
cron = b'@reboot sleep 3600 && mailclient --flush-outbox'
mp4 = struct.pack('>I', 24) + b'ftypisom' + struct.pack('>I', 0x200) + b'isomiso2' + struct.pack('>I', 8 + 3000) + b'mdat' + os.urandom(3000)
blob = b''
for name, p in [('mail', mail), ('cron', cron), ('png', png), ('mp4', mp4)]:
    open(name + '.part', 'wb').write(p)
    blob += p + b'\0' * (4096 - len(p) % 4096)
open('ram.bin', 'wb').write(blob)
"#,
    ).current_dir(base));
    sh("qemu-img create -q -f qcow2 vm.qcow2 16M", base);
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-M", "pc", "-nodefaults", "-m", "32M", "-S", "-display", "none", "-monitor", "stdio"])
        .args(["-device", "loader,file=ram.bin,addr=0x200000,force-raw=on"])
        .args(["-drive", "file=vm.qcow2,if=none,id=d0,format=qcow2"])
        .current_dir(base)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = qemu.spawn().expect("qemu-system-x86_64");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"savevm ramsnap\nquit\n").unwrap();
    assert!(child.wait().unwrap().success());
    let listed = run(Command::new("qemu-img").args(["snapshot", "-l"]).arg(base.join("vm.qcow2")));
    assert!(listed.contains("ramsnap"), "{listed}");

    let r = inspect(&base.join("vm.qcow2"));
    let snap = &r["container"]["snapshots"][0];
    assert_eq!(snap["name"], "ramsnap");
    assert!(snap["vm_state_size"].as_u64().unwrap() > 0);
    let pc_ram = r["ram"][0]["blocks"].as_array().unwrap().iter().find(|b| b["name"] == "pc.ram").cloned().unwrap();
    assert_eq!(pc_ram["size"], 32 << 20, "-m 32M");
    let carved: Vec<&Value> =
        r["memory"].as_array().unwrap().iter().filter(|a| a["source"].as_str().unwrap().ends_with("pc.ram")).collect();
    let find = |kind: &str, offset: u64| {
        carved
            .iter()
            .find(|a| a["kind"] == kind && a["offset"] == offset)
            .unwrap_or_else(|| panic!("no {kind} at {offset:#x}: {carved:#?}"))
    };
    let mail = find("mail", 0x200000);
    assert_eq!(mail["detail"]["subject"], "from the ram disk");
    assert_eq!(mail["sha256"].as_str().unwrap(), sha256sum(&base.join("mail.part")));
    let cron = find("crontab", 0x201000);
    assert_eq!(cron["detail"]["line"], "@reboot sleep 3600 && mailclient --flush-outbox");
    assert_eq!(cron["sha256"].as_str().unwrap(), sha256sum(&base.join("cron.part")));
    let png = find("media", 0x202000);
    assert_eq!(png["format"], "png");
    assert_eq!(png["sha256"].as_str().unwrap(), sha256sum(&base.join("png.part")));
    let mp4 = find("media", 0x203000);
    assert_eq!(mp4["format"], "mp4");
    assert_eq!(mp4["sha256"].as_str().unwrap(), sha256sum(&base.join("mp4.part")));

    // The same bytes uploaded as a raw memory dump are carved at their file offsets.
    let r = inspect(&base.join("ram.bin"));
    let offsets: Vec<(String, u64)> = r["memory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap().to_string(), a["offset"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        offsets,
        vec![("mail".into(), 0), ("crontab".into(), 0x1000), ("media".into(), 0x2000), ("media".into(), 0x3000)]
    );
}

mod mutated {
    use proptest::prelude::*;

    /// A 64 KiB qcow2 with 512-byte clusters from `qemu-img create` (1.5 kB), every byte fair game.
    const SMALL: &[u8] = include_bytes!("data/vmi-small.qcow2");

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn mutated_images_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16), cut in any::<usize>()) {
            let mut v = SMALL.to_vec();
            for (at, b) in edits {
                let i = at % v.len();
                v[i] = b;
            }
            v.truncate(cut % (v.len() + 1) + 64);
            tapir::fuzzing::vmi(&v);
        }
    }
}

/// A qcow2 overlay reads through its backing image, found by name next to it; one alone says
/// so; a chain that loops is cut with a note.
#[test]
fn backing_images_are_followed_and_loops_refused() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let root = root_tree(base);
    let (raw, number, offset) = disk(base, "gpt.raw", "label: gpt\\n,8M,U\\n,,L\\n", 1, &root);
    run(Command::new("qemu-img").args(["convert", "-O", "qcow2"]).arg(&raw).arg(base.join("base.qcow2")));
    sh("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 && qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2", base);
    let r = inspect(&base.join("top.qcow2"));
    assert_eq!(r["container"]["backing_chain"], serde_json::json!(["mid.qcow2", "base.qcow2"]));
    check_linux(&r, &root, number, offset, "overlay");

    std::fs::create_dir(base.join("alone")).unwrap();
    std::fs::copy(base.join("top.qcow2"), base.join("alone/top.qcow2")).unwrap();
    let r = inspect(&base.join("alone/top.qcow2"));
    assert!(r["notes"][0].as_str().unwrap().contains("\"mid.qcow2\" not found"), "{r}");
    assert_eq!(r["filesystems"], serde_json::json!([]));

    sh("qemu-img create -q -f qcow2 a.qcow2 16M && qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2 && qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2", base);
    let r = inspect(&base.join("a.qcow2"));
    let notes = r["notes"].to_string();
    assert!(notes.contains("loops back to \\\"a.qcow2\\\""), "{notes}");
}

/// A zstd bomb in a compressed cluster (256 MiB of zeros in a few kB) inflates to one cluster
/// and no more; a time limit of 0 stops the walk at once, with a note.
#[test]
fn a_zstd_bomb_cluster_and_the_time_limit_are_bounded() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    sh(
        r#"
        yes 'hello from the guest' | head -c 1M > text.raw
        qemu-img convert -q -c -O qcow2 -o compression_type=zstd text.raw bomb.qcow2
        head -c 256M /dev/zero | zstd -q -3 -c > bomb.zst
        python3 - <<'PY'
import struct
f = open('bomb.qcow2', 'r+b'); img = bytearray(f.read())
bits = struct.unpack('>I', img[20:24])[0]
l1 = struct.unpack('>Q', img[40:48])[0]
l2 = struct.unpack('>Q', img[l1:l1 + 8])[0] & 0x00fffffffffffe00
e = struct.unpack('>Q', img[l2:l2 + 8])[0]
assert e & (1 << 62), 'cluster 0 is compressed'
bomb = open('bomb.zst', 'rb').read()
host = (len(img) + 511) // 512 * 512
img += b'\0' * (host - len(img)) + bomb
x = 62 - (bits - 8)
sectors = (len(bomb) + 511) // 512 - 1
img[l2:l2 + 8] = struct.pack('>Q', (1 << 62) | (sectors << x) | host)
f.seek(0); f.write(img); f.close()
PY
        "#,
        base,
    );
    // `inspect`, with the peak RSS of that one `tapir vmi inspect`.
    let (out, rss_kib) = common::output_and_peak_rss_kib(
        Command::new(env!("CARGO_BIN_EXE_tapir")).args(["vmi", "inspect", "--json"]).arg(base.join("bomb.qcow2")),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["container"]["format"], "qcow2", "{r}");
    assert_eq!(r["container"]["qcow2"]["compression"], "zstd");
    let rss = rss_kib / 1024;
    assert!(rss < 200, "peak RSS {rss} MiB");

    let root = root_tree(base);
    let (raw, _, _) = disk(base, "gpt.raw", "label: gpt\\n,8M,U\\n,,L\\n", 1, &root);
    let out = run(Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["vmi", "inspect", "--json", "--time-limit", "0"])
        .arg(&raw));
    let r: Value = serde_json::from_str(&out).unwrap();
    let l = &r["filesystems"][0]["linux"];
    assert_eq!(l["hostname"], "joe-vm", "what is read before the walk is whole");
    assert!(l["notes"][0].as_str().unwrap().starts_with("time limit reached"), "{l}");
}

/// An ext4 whose directories are hard-linked below themselves (debugfs `link`, which no kernel
/// allows): the walk reads each once, says where the cycle is, and finds the message once.
#[test]
fn an_ext4_directory_cycle_is_walked_once_and_named() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let out = sh(
        r#"
        mkdir -p root/etc root/home/joe/Mail/outbox
        printf 'root:x:0:0:root:/root:/bin/bash\n' > root/etc/passwd
        printf 'From: joe@example.org\nTo: p@example.net\nSubject: once\n\nx\n' > root/home/joe/Mail/outbox/1.eml
        mkfs.ext4 -q -F -d root d.raw 16M >/dev/null
        debugfs -w -R 'link /home/joe /home/joe/again' d.raw 2>/dev/null
        debugfs -w -R 'link /home /home/joe/up' d.raw 2>/dev/null
        debugfs -R 'ls -l /home/joe' d.raw 2>/dev/null | awk '{print "entry " $NF " " $1}'
        "#,
        base,
    );
    // debugfs: `again` is /home/joe's own inode (the `.` entry), `up` is /home's (`..`).
    let inode = |name: &str| out.lines().find_map(|l| l.strip_prefix(&format!("entry {name} "))).unwrap().to_string();
    assert_eq!(inode("again"), inode("."), "{out}");
    assert_eq!(inode("up"), inode(".."), "{out}");
    let started = std::time::Instant::now();
    let r = inspect(&base.join("d.raw"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let l = &r["filesystems"][0]["linux"];
    assert_eq!(l["mail"].as_array().unwrap().len(), 1, "{l:#}");
    let notes = l["notes"].to_string();
    assert!(notes.contains("/home/joe/again: the directory /home/joe again (a directory cycle)"), "{notes}");
    assert!(notes.contains("/home/joe/up: the directory /home again (a directory cycle)"), "{notes}");
}
