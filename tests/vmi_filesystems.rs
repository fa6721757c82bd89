//! The filesystems beyond ext4 that `tapir vmi inspect` reads, on disks made by the real tools
//! at test time: an EFI system partition (`mkfs.vfat`, populated with `mcopy`) beside an ext4
//! root in a GPT (`sgdisk`), converted to qcow2 by `qemu-img`. Expected values come from
//! `mdir`/`mtype` (mtools), `sha256sum` and `debugfs`, never from tapir.

use std::process::Command;

use vmi_common::{inspect, piped_sha256, run, sh};

mod vmi_common;

#[test]
fn an_efi_partition_beside_the_root_is_read_like_mtools_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    // GPT: 1 = EFI system (FAT32, 40 MiB), 2 = Linux root (ext4).
    sh(
        r#"
        truncate -s 96M disk.raw
        sgdisk -o -n 1:2048:+40M -t 1:ef00 -c 1:EFI -n 2:0:0 -t 2:8300 -c 2:root disk.raw >/dev/null
        mkdir -p efi/EFI/debian efi/EFI/BOOT efi/photos efi/Mail/outbox root/etc
        head -c 70000 /dev/urandom > efi/EFI/debian/grubx64.efi
        cp efi/EFI/debian/grubx64.efi efi/EFI/BOOT/BOOTX64.EFI
        { printf '\x89PNG\r\n\x1a\n'; head -c 5000 /dev/urandom; } > "efi/photos/Holiday picture.png"
        printf 'From: joe@example.net\r\nTo: partner@example.org\r\nSubject: on the EFI partition\r\nMessage-ID: <2@joe-vm>\r\n\r\nhidden\r\n' > efi/Mail/outbox/2.eml
        printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n' > root/etc/os-release
        echo joe-vm > root/etc/hostname
        printf 'root:x:0:0:root:/root:/bin/bash\n' > root/etc/passwd
        "#,
        base,
    );
    let sg = run(Command::new("sgdisk").arg("-i").arg("1").arg(base.join("disk.raw")));
    let first = |s: &str, key: &str| -> u64 {
        s.lines().find(|l| l.starts_with(key)).unwrap().split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let (efi_start, efi_end) = (first(&sg, "First sector:"), first(&sg, "Last sector:"));
    let sg2 = run(Command::new("sgdisk").arg("-i").arg("2").arg(base.join("disk.raw")));
    let (root_start, root_end) = (first(&sg2, "First sector:"), first(&sg2, "Last sector:"));
    let off = efi_start * 512;
    sh(
        &format!(
            r#"
            mkfs.vfat -F 32 -n JOEEFI --offset {efi_start} disk.raw $(( ({efi_end} - {efi_start} + 1) / 2 )) >/dev/null
            export MTOOLS_SKIP_CHECK=1
            mcopy -s -i disk.raw@@{off} efi/EFI efi/photos efi/Mail ::/
            mkfs.ext4 -q -F -L joeroot -E offset={root_off} -d root disk.raw $(( ({root_end} - {root_start} + 1) / 2 ))k
            qemu-img convert -f raw -O qcow2 -c disk.raw disk.qcow2
            "#,
            root_off = root_start * 512
        ),
        base,
    );
    // What mtools reads back from the FAT: the listing and each file's bytes.
    let mt =
        |args: &[&str]| run(Command::new(args[0]).args(&args[1..]).env("MTOOLS_SKIP_CHECK", "1").current_dir(base));
    let img = format!("disk.raw@@{off}");
    let listing = mt(&["mdir", "-i", &img, "-/", "-b", "::/"]);
    assert!(listing.contains("::/photos/Holiday picture.png"), "{listing}");
    let sha_of = |path: &str| piped_sha256(&format!("MTOOLS_SKIP_CHECK=1 mtype -i '{img}' '{path}'"), base);
    let png_sha = sha_of("::/photos/Holiday picture.png");
    let mail_sha = sha_of("::/Mail/outbox/2.eml");
    assert_eq!(
        mail_sha,
        run(Command::new("sha256sum").arg(base.join("efi/Mail/outbox/2.eml"))).split_whitespace().next().unwrap()
    );

    let r = inspect(&base.join("disk.qcow2"));
    let fss = r["filesystems"].as_array().unwrap();
    let fat = fss.iter().find(|f| f["kind"] == "fat32").unwrap_or_else(|| panic!("no FAT32: {r:#}"));
    assert_eq!((fat["partition"].as_u64(), fat["offset"].as_u64()), (Some(1), Some(off)));
    assert_eq!(fat["label"], "JOEEFI");
    let data = &fat["data"];
    let media = data["media"].as_array().unwrap();
    assert_eq!(media.len(), 1, "{data:#}");
    assert_eq!(
        (media[0]["path"].as_str(), media[0]["sha256"].as_str()),
        (Some("/photos/Holiday picture.png"), Some(png_sha.as_str()))
    );
    let mail = data["mail"].as_array().unwrap();
    assert_eq!(
        (mail[0]["path"].as_str(), mail[0]["sha256"].as_str()),
        (Some("/Mail/outbox/2.eml"), Some(mail_sha.as_str()))
    );
    assert_eq!(mail[0]["subject"], "on the EFI partition");
    let recent: Vec<&str> =
        data["recently_changed"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    for p in ["/EFI/debian/grubx64.efi", "/EFI/BOOT/BOOTX64.EFI"] {
        assert!(recent.contains(&p), "{p} not in {recent:?}");
    }
    // The root beside it is read as before.
    let root = fss.iter().find(|f| f["kind"] == "ext4").unwrap();
    assert_eq!((root["partition"].as_u64(), root["linux"]["hostname"].as_str()), (Some(2), Some("joe-vm")));
}

#[test]
fn an_ntfs_disk_is_read_like_ntfs_3g_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    // A whole-disk NTFS volume (a Windows data disk), files put in with ntfscp (no mount).
    sh(
        r#"
        truncate -s 32M ntfs.raw
        mkntfs -q -F -f -L WINDATA ntfs.raw
        { printf '\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2'; head -c 200000 /dev/urandom; } > clip.mp4
        printf 'From: joe@example.net\r\nTo: partner@example.org\r\nSubject: from the Windows disk\r\nMessage-ID: <3@joe-win>\r\n\r\nhidden\r\n' > outbox-3.eml
        head -c 3000 /dev/urandom > notes.bin
        ntfscp -q ntfs.raw clip.mp4 "Holiday clip.mp4"
        ntfscp -q ntfs.raw outbox-3.eml outbox-3.eml
        ntfscp -q ntfs.raw notes.bin notes.bin
        qemu-img convert -f raw -O vhdx ntfs.raw ntfs.vhdx
        "#,
        base,
    );
    let listing = run(Command::new("ntfsls").arg(base.join("ntfs.raw")));
    assert!(listing.lines().any(|l| l == "Holiday clip.mp4"), "{listing}");
    let cat_sha = |name: &str| piped_sha256(&format!("ntfscat ntfs.raw '{name}'"), base);
    let r = inspect(&base.join("ntfs.vhdx"));
    assert_eq!(r["container"]["format"], "vhdx");
    let fs =
        r["filesystems"].as_array().unwrap().iter().find(|f| f["kind"] == "ntfs").unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!((fs["partition"].as_u64(), fs["label"].as_str()), (Some(0), Some("WINDATA")));
    let data = &fs["data"];
    let media = data["media"].as_array().unwrap();
    assert_eq!(media.len(), 1, "{data:#}");
    assert_eq!(media[0]["path"], "/Holiday clip.mp4");
    assert_eq!(media[0]["sha256"].as_str().unwrap(), cat_sha("Holiday clip.mp4"));
    let mail = data["mail"].as_array().unwrap();
    assert_eq!(mail[0]["sha256"].as_str().unwrap(), cat_sha("outbox-3.eml"));
    assert_eq!(mail[0]["subject"], "from the Windows disk");
    let recent: Vec<&str> =
        data["recently_changed"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    for p in ["/notes.bin", "/outbox-3.eml", "/Holiday clip.mp4"] {
        assert!(recent.contains(&p), "{p} not in {recent:?}");
    }
    assert!(recent.iter().all(|p| !p.starts_with("/$")), "metafiles are not listed: {recent:?}");
}

#[test]
fn an_lvm_logical_volume_in_two_segments_is_read_like_lvm_maps_it() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    // A GPT whose partition 1 is an LVM2 PV (made on a loop device over that partition's
    // bytes; activation off: no device-mapper needed). root gets two segments with `other`
    // between them; the ext4 made by mkfs.ext4 -d is written into root's extents where `lvs`
    // says they are.
    let cfg = "global { activation = 0 }";
    let out = sh(
        &format!(
            r#"
            export LVM_SUPPRESS_FD_WARNINGS=1
            truncate -s 80M disk.raw
            sgdisk -o -n 1:2048:0 -t 1:8e00 disk.raw >/dev/null
            start=$(sgdisk -i 1 disk.raw | awk '/First sector/ {{print $3}}')
            last=$(sgdisk -i 1 disk.raw | awk '/Last sector/ {{print $3}}')
            L=$(losetup -f --show -o $((start * 512)) --sizelimit $(( (last - start + 1) * 512 )) disk.raw)
            trap 'vgremove --config "{cfg}" -f -q vgj >/dev/null 2>&1 || true; losetup -d $L' EXIT
            vgname=vgj
            pvcreate -q -f $L >/dev/null
            vgcreate --config "{cfg}" -q -s 1M vgj $L >/dev/null
            lvcreate --config "{cfg}" -q -an -Zn -L 8M -n root vgj >/dev/null 2>&1
            lvcreate --config "{cfg}" -q -an -Zn -L 4M -n other vgj >/dev/null 2>&1
            lvextend --config "{cfg}" -q -L +8M vgj/root >/dev/null 2>&1
            pe_start=$(pvs --config "{cfg}" --noheadings --units b --nosuffix -o pe_start $L | tr -d ' ')
            mkdir -p root/etc
            echo lvm-vm > root/etc/hostname
            printf 'root:x:0:0:root:/root:/bin/bash\n' > root/etc/passwd
            mkfs.ext4 -q -F -L lvroot -d root fs.img 16M
            # each segment of root: LV extent start, count, PV extent start (1 MiB extents)
            lvs --config "{cfg}" --noheadings --segments -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges vgj 2>/dev/null |
            while read -r lv seg_start seg_size range; do
                [ "$lv" = root ] || continue
                pe=${{range#*:}}; pe=${{pe%-*}}
                dd if=fs.img of=disk.raw bs=1M skip=$seg_start count=$seg_size conv=notrunc status=none \
                   oflag=seek_bytes seek=$(( start * 512 + pe_start + pe * 1048576 ))
                echo "segment $seg_start $seg_size $pe"
            done
            qemu-img convert -f raw -O qcow2 disk.raw disk.qcow2
            debugfs -R 'cat /etc/hostname' fs.img 2>/dev/null
            "#
        ),
        base,
    );
    let segs: Vec<&str> = out.lines().filter(|l| l.starts_with("segment")).collect();
    assert_eq!(segs, ["segment 0 8 0", "segment 8 8 12"], "{out}");
    assert!(out.contains("lvm-vm"), "{out}");
    let r = inspect(&base.join("disk.qcow2"));
    let vg = &r["volume_groups"][0];
    assert_eq!(vg["name"], "vgj", "{r:#}");
    let names: Vec<&str> =
        vg["logical_volumes"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["vgj/root", "vgj/other"]);
    let fs = r["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["volume"] == "vgj/root")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!((fs["kind"].as_str(), fs["label"].as_str()), (Some("ext4"), Some("lvroot")));
    assert_eq!(fs["linux"]["hostname"], "lvm-vm");
}

#[test]
fn mail_waiting_in_a_postfix_queue_is_read_like_postcat_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    // Postfix's own sendmail/postdrop queue the message (no master runs: it stays in
    // maildrop, as in a VM shut down before pickup); the queue is copied into the root tree.
    let out = sh(
        r#"
        mkdir -p pf/conf pf/queue pf/data root/etc root/var/spool
        chmod 755 . pf
        {
            echo "compatibility_level = 3.6"
            echo "queue_directory = $PWD/pf/queue"
            echo "data_directory = $PWD/pf/data"
            echo "mail_owner = postfix"
            echo "setgid_group = postdrop"
            echo "myhostname = joe-vm.example.org"
            echo "inet_interfaces = loopback-only"
            echo "alias_maps ="
            echo "alias_database ="
            echo "maillog_file = $PWD/pf/maillog"
            echo "maillog_file_prefixes = $PWD/pf"
        } > pf/conf/main.cf
        cp /etc/postfix/master.cf pf/conf/
        postfix -c "$PWD/pf/conf" check >/dev/null 2>&1
        printf 'From: joe@example.org\nTo: partner@example.net\nSubject: queued while offline\nMessage-ID: <q1@joe-vm>\n\nthe plan\n.a dot line\n' > msg.txt
        sendmail -C "$PWD/pf/conf" -f joe@example.org partner@example.net other@example.net < msg.txt 2>/dev/null
        q=$(find pf/queue/maildrop -type f)
        id=$(basename "$q")
        echo "id $id"
        echo "sha $(postcat -c "$PWD/pf/conf" -bh "$q" 2>/dev/null | sha256sum | cut -d' ' -f1)"
        postcat -c "$PWD/pf/conf" -e "$q" 2>/dev/null | grep -E '^(sender|recipient):'
        cp -a pf/queue root/var/spool/postfix
        printf 'root:x:0:0:root:/root:/bin/bash\n' > root/etc/passwd
        echo joe-vm > root/etc/hostname
        mkfs.ext4 -q -F -d root disk.raw 16M
        "#,
        base,
    );
    let field = |k: &str| {
        out.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("{k}: {out}")).trim().to_string()
    };
    let (id, sha) = (field("id "), field("sha "));
    let recipients: Vec<String> =
        out.lines().filter_map(|l| l.strip_prefix("recipient: ")).map(str::to_string).collect();
    assert_eq!(recipients.len(), 2, "{out}");
    let r = inspect(&base.join("disk.raw"));
    let l = &r["filesystems"][0]["linux"];
    let m = l["mail"].as_array().unwrap().iter().find(|m| m["queue"].is_object()).unwrap_or_else(|| panic!("{l:#}"));
    assert_eq!(m["path"].as_str().unwrap(), format!("/var/spool/postfix/maildrop/{id}"));
    assert_eq!(m["sha256"].as_str().unwrap(), sha, "the message as postcat -bh prints it");
    assert_eq!(m["subject"], "queued while offline");
    assert_eq!(m["queue"]["mta"], "postfix");
    assert_eq!(m["queue"]["sender"].as_str().unwrap(), field("sender: "));
    let got: Vec<String> =
        m["queue"]["recipients"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    assert_eq!(got, recipients);
}

#[test]
fn ntfs_volumes_the_fuzzer_broke_the_reader_with_are_reported_not_fatal() {
    // Found by fuzz/fuzz_targets/vmi_ntfs.rs: a volume shorter than its boot sector (the crate
    // turned the short read into a panic) and a corrupt index entry (the crate slices out of
    // range). Each is a filesystem reported unreadable, and the inspection goes on.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (file, why) in [("vmi-ntfs-short-volume.bin", "signature"), ("vmi-ntfs-bad-index.bin", "")] {
        let r = inspect(&dir.join(file));
        let fs = &r["filesystems"][0];
        assert_eq!(fs["partition"], 0, "{file}: {r:#}");
        assert_eq!(fs["kind"], "ntfs", "{file}: {fs:#}");
        let err = fs["error"].as_str().unwrap_or("");
        assert!(!err.is_empty() && err.contains(why), "{file}: {fs:#}");
    }
    // A directory index whose subnodes point back up: the crate walks it without end, holding
    // an index record a step (23 GB in a minute, before the listing was bounded by steps). It
    // must finish inside 1 GB of address space.
    let loop_file = dir.join("vmi-ntfs-index-loop.bin");
    let out = run(Command::new("bash").arg("-c").arg(format!(
        "ulimit -v 1000000 && exec {} vmi inspect --json {}",
        env!("CARGO_BIN_EXE_tapir"),
        loop_file.display()
    )));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["filesystems"][0]["kind"], "ntfs");
}
