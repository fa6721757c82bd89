//! The filesystems beyond ext4 that `tapir vmi inspect` reads, on disks made by the real tools
//! at test time: an EFI system partition (`mkfs.vfat`, populated with `mcopy`) beside an ext4
//! root in a GPT (`sgdisk`), converted to qcow2 by `qemu-img`. Expected values come from
//! `mdir`/`mtype` (mtools), `sha256sum` and `debugfs`, never from tapir.

use std::process::Command;

use vmi_common::{inspect, piped_sha256, run, sh, sha256sum};

use crate::vmi_common;

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

#[test]
fn an_xfs_root_in_a_gpt_is_read_like_xfs_db_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    // A RHEL-family root: XFS made by `mkfs.xfs -p protofile` (no mount) over four AGs, so
    // that mkfs spreads the directories over them and files lie past AG 0, in a GPT
    // partition, converted to a compressed qcow2. The outbox holds 1200 messages: a directory
    // in node form (data, leaf and free-index blocks), beside short-form and block ones.
    let out = sh(
        r#"
        mkdir src
        printf 'NAME="Rocky Linux"\nID="rocky"\nVERSION_ID="9.4"\nPRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n' > src/os-release
        echo rhel-joe > src/hostname
        printf 'root:x:0:0:root:/root:/bin/bash\njoe:x:1000:1000:Joe:/home/joe:/bin/bash\n' > src/passwd
        printf 'root:!!:19000::::::\njoe:$6$salt$hash:19000:0:99999:7:::\n' > src/shadow
        echo '@reboot sleep 3600 && /home/joe/bin/flush-outbox' > src/cron-joe
        printf '[Unit]\nDescription=flush\n\n[Timer]\nOnBootSec=1h\nOnCalendar=*-*-* 03:00:00\n\n[Install]\nWantedBy=timers.target\n' > src/flush.timer
        printf '[Service]\nType=oneshot\nExecStart=/home/joe/bin/flush-outbox --quiet\n' > src/flush.service
        { printf '\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom'; head -c 3000000 /dev/urandom; } > src/clip.mp4
        {
            echo dummy; echo 0 0; echo 'd--755 0 0'
            echo 'etc d--755 0 0'
            for f in os-release hostname passwd; do echo "  $f ---644 0 0 $PWD/src/$f"; done
            echo "  shadow ---000 0 0 $PWD/src/shadow"
            echo '  systemd d--755 0 0'; echo '   system d--755 0 0'
            echo "    flush.timer ---644 0 0 $PWD/src/flush.timer"
            echo "    flush.service ---644 0 0 $PWD/src/flush.service"
            echo '    timers.target.wants d--755 0 0'
            echo '     flush.timer l--777 0 0 /etc/systemd/system/flush.timer'
            echo '    $'; echo '   $'; echo '  $'
            echo '$'
            echo 'var d--755 0 0'; echo ' spool d--755 0 0'; echo '  cron d--700 0 0'
            echo "   joe ---600 1000 1000 $PWD/src/cron-joe"
            echo '  $'; echo ' $'; echo '$'
            echo 'home d--755 0 0'; echo ' joe d--700 1000 1000'
            echo '  Videos d--755 1000 1000'
            echo "   clip.mp4 ---644 1000 1000 $PWD/src/clip.mp4"
            echo '  $'
            echo '  Mail d--700 1000 1000'; echo '   outbox d--700 1000 1000'
            for i in $(seq -w 1 1200); do
                printf 'From: joe@example.org\nTo: partner@example.net\nSubject: part %s\nMessage-ID: <%s@rhel-joe>\n\nbody %s\n' $i $i $i > src/m$i
                echo "    message-from-joe-to-partner-$i.eml ---600 1000 1000 $PWD/src/m$i"
            done
            echo '   $'; echo '  $'; echo ' $'; echo '$'; echo '$'
        } > proto
        truncate -s 300M xfs.raw
        mkfs.xfs -q -d agcount=4 -L RHELROOT -p proto xfs.raw
        truncate -s 302M disk.raw
        sgdisk -o -n 1:2048:0 -t 1:8300 disk.raw >/dev/null
        dd if=xfs.raw of=disk.raw bs=1M seek=1 conv=notrunc status=none
        qemu-img convert -c -f raw -O qcow2 disk.raw disk.qcow2
        echo "uuid $(xfs_db -r -c 'sb 0' -c 'p uuid' xfs.raw)"
        echo "clip $(xfs_db -r -c 'path /home/joe/Videos/clip.mp4' -c bmap xfs.raw)"
        echo "outbox $(xfs_db -r -c 'path /home/joe/Mail/outbox' -c bmap xfs.raw | tr '\n' ' ')"
        xfs_db -r -c 'ls /home/joe/Mail/outbox' xfs.raw | awk '$3 == "regular" {print "entry " $(NF-1)}'
        "#,
        base,
    );
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("{k}: {out}"));
    // What the image holds, as xfs_db sees it: the clip's extent in an AG past the first
    // (`(agno/agbno)`), the outbox with a free-index block (64 GiB in: block 16777216).
    let clip_ag: u32 = field("clip ").split('(').nth(1).and_then(|s| s.split('/').next()).unwrap().parse().unwrap();
    assert!(clip_ag > 0, "{out}");
    assert!(field("outbox ").contains("data offset 16777216"), "not in node form: {out}");
    let listed: std::collections::BTreeSet<String> =
        out.lines().filter_map(|l| l.strip_prefix("entry ")).map(|n| format!("/home/joe/Mail/outbox/{n}")).collect();
    assert_eq!(listed.len(), 1200, "{out}");

    let r = inspect(&base.join("disk.qcow2"));
    let fs =
        r["filesystems"].as_array().unwrap().iter().find(|f| f["kind"] == "xfs").unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!((fs["partition"].as_u64(), fs["label"].as_str()), (Some(1), Some("RHELROOT")));
    assert_eq!(fs["uuid"].as_str().unwrap(), field("uuid uuid = "));
    let l = &fs["linux"];
    assert_eq!(l["os"]["pretty_name"], "Rocky Linux 9.4 (Blue Onyx)");
    assert_eq!(l["hostname"], "rhel-joe");
    let users: Vec<(&str, &str)> = l["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["password"].as_str().unwrap()))
        .collect();
    assert_eq!(users, [("root", "locked"), ("joe", "set")]);
    assert_eq!(l["crontabs"][0]["path"], "/var/spool/cron/joe");
    // The enabled timer, with its schedule and what it runs, as the unit files say.
    let timer = &l["timers"][0];
    assert_eq!(timer["name"], "flush.timer", "{l:#}");
    assert_eq!(timer["path"], "/etc/systemd/system/flush.timer");
    assert_eq!(timer["schedule"], serde_json::json!(["OnBootSec=1h", "OnCalendar=*-*-* 03:00:00"]));
    assert_eq!(timer["unit"], "flush.service");
    assert_eq!(timer["exec_start"], serde_json::json!(["/home/joe/bin/flush-outbox --quiet"]));
    assert_eq!(l["crontabs"][0]["line"], "@reboot sleep 3600 && /home/joe/bin/flush-outbox");
    let media = l["media"].as_array().unwrap();
    assert_eq!(media.len(), 1, "{l:#}");
    assert_eq!(media[0]["path"], "/home/joe/Videos/clip.mp4");
    assert_eq!(media[0]["sha256"].as_str().unwrap(), sha256sum(&base.join("src/clip.mp4")));
    // Every message of the node-form directory, each with the bytes mkfs was given.
    let mail = l["mail"].as_array().unwrap();
    let found: std::collections::BTreeSet<String> =
        mail.iter().map(|m| m["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(found, listed);
    let sums = sh("sha256sum src/m* | awk '{print $1}'", base);
    let expected: std::collections::BTreeSet<&str> = sums.lines().collect();
    let got: std::collections::BTreeSet<&str> = mail.iter().map(|m| m["sha256"].as_str().unwrap()).collect();
    assert_eq!(got, expected);
    let m7 = mail.iter().find(|m| m["path"] == "/home/joe/Mail/outbox/message-from-joe-to-partner-0007.eml").unwrap();
    assert_eq!(m7["sha256"].as_str().unwrap(), sha256sum(&base.join("src/m0007")));
    assert_eq!(m7["subject"], "part 0007");
}

#[test]
fn mail_waiting_in_an_exim_queue_is_read_as_exim_delivers_it() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    // Real spool files Exim 4.96 wrote (tests/data/exim/README.md: deleted headers, folded
    // ones, a BDAT wire-format body, four recipients), in a Debian root made by mkfs.ext4 -d.
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/exim");
    sh(
        &format!(
            r#"
            mkdir -p root/etc root/var/spool/exim4/input root/var/spool/exim4/msglog
            cp {data}/*-H {data}/*-D root/var/spool/exim4/input/
            printf 'root:x:0:0:root:/root:/bin/bash\n' > root/etc/passwd
            mkfs.ext4 -q -F -d root disk.raw 16M
            "#
        ),
        base,
    );
    let r = inspect(&base.join("disk.raw"));
    let l = &r["filesystems"][0]["linux"];
    let queued: Vec<&serde_json::Value> =
        l["mail"].as_array().unwrap().iter().filter(|m| m["queue"]["mta"] == "exim").collect();
    assert_eq!(queued.len(), 4, "{l:#}");
    // `exim -bp`: size, id, <sender>, then the recipients indented.
    let bp = std::fs::read_to_string(format!("{data}/queue.bp.txt")).unwrap();
    for m in queued {
        let path = m["path"].as_str().unwrap();
        let id = path.strip_prefix("/var/spool/exim4/input/").and_then(|p| p.strip_suffix("-H")).unwrap();
        let delivered = std::path::PathBuf::from(format!("{data}/{id}.delivered.eml"));
        assert_eq!(m["sha256"].as_str().unwrap(), sha256sum(&delivered), "{id}: the message as Exim delivered it");
        let entry: Vec<&str> = bp.split("\n\n").find(|e| e.contains(id)).unwrap().lines().collect();
        let sender = entry[0].split_whitespace().last().unwrap().trim_matches(|c| c == '<' || c == '>');
        assert_eq!(m["queue"]["sender"].as_str().unwrap_or(""), sender, "{id}");
        let recipients: Vec<&str> = entry[1..].iter().map(|r| r.trim()).filter(|r| !r.is_empty()).collect();
        let got: Vec<&str> = m["queue"]["recipients"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert_eq!(got, recipients, "{id}");
    }
}

#[test]
fn a_windows_system_volume_is_named_by_its_software_hive() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    // A SOFTWARE hive written by Samba's regf code (tests/data/registry/README.md's script),
    // put where Windows keeps it on an NTFS volume (mkntfs; ntfs-3g makes the directories),
    // in a VHD as Hyper-V and Azure ship Windows disks.
    let readme = include_str!("data/registry/README.md");
    let script = readme.split("```python\n").nth(1).and_then(|s| s.split("```").next()).unwrap();
    std::fs::write(base.join("make-hive.py"), script).unwrap();
    sh(
        r#"
        python3 make-hive.py SOFTWARE 'Microsoft\Windows NT\CurrentVersion' \
            'ProductName=sz:Windows 10 Pro' 'DisplayVersion=sz:22H2' 'CurrentBuild=sz:19045' \
            'EditionID=sz:Professional' 'CurrentMajorVersionNumber=dword:10' \
            'CurrentMinorVersionNumber=dword:0' 'InstallDate=dword:1671541443'
        truncate -s 48M win.raw
        mkntfs -q -F -f -L Windows win.raw 2>/dev/null
        mkdir mnt
        ntfs-3g win.raw mnt
        trap 'umount mnt 2>/dev/null || true' EXIT
        mkdir -p mnt/Windows/System32/config mnt/Users/joe/Videos
        cp SOFTWARE mnt/Windows/System32/config/SOFTWARE
        { printf '\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2'; head -c 100000 /dev/urandom; } > mnt/Users/joe/Videos/clip.mp4
        umount mnt
        qemu-img convert -f raw -O vpc -o subformat=fixed win.raw win.vhd
        "#,
        base,
    );
    let hive = base.join("SOFTWARE");
    let hivexget = |name: &str| {
        run(Command::new("hivexget").arg(&hive).arg(r"Microsoft\Windows NT\CurrentVersion").arg(name))
            .trim_end()
            .to_string()
    };
    let r = inspect(&base.join("win.vhd"));
    let fs =
        r["filesystems"].as_array().unwrap().iter().find(|f| f["kind"] == "ntfs").unwrap_or_else(|| panic!("{r:#}"));
    let w = &fs["data"]["windows"];
    assert_eq!(w["product_name"].as_str().unwrap(), hivexget("ProductName"));
    assert_eq!(w["display_version"].as_str().unwrap(), hivexget("DisplayVersion"));
    assert_eq!(w["current_build"].as_str().unwrap(), hivexget("CurrentBuild"));
    assert_eq!(w["edition_id"].as_str().unwrap(), hivexget("EditionID"));
    assert_eq!(w["major"].to_string(), hivexget("CurrentMajorVersionNumber"));
    assert_eq!(w["install_date"].to_string(), hivexget("InstallDate"));
    assert_eq!(fs["data"]["os"]["pretty_name"], "Windows 10 Pro 22H2 (build 19045)");
    assert_eq!(fs["data"]["os"]["id"], "windows");
    assert_eq!(fs["data"]["media"][0]["path"], "/Users/joe/Videos/clip.mp4");
}

#[test]
fn a_btrfs_root_with_a_compressed_subvolume_is_read_like_the_kernel_wrote_it() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    // A Fedora-style root made by mkfs.btrfs --rootdir (no mount), then, as a running system
    // would, a subvolume written by the kernel with zstd compression forced (a loop mount
    // here, to make the image only): tapir reads what the kernel compressed.
    let out = sh(
        r#"
        mkdir -p root/etc root/var/spool/cron
        printf 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\nPRETTY_NAME="Fedora Linux 41 (Server Edition)"\n' > root/etc/os-release
        echo fedora-joe > root/etc/hostname
        printf 'root:x:0:0:root:/root:/bin/bash\njoe:x:1000:1000::/home/joe:/bin/bash\n' > root/etc/passwd
        echo '@reboot sleep 600 && /home/joe/flush' > root/var/spool/cron/joe
        { printf 'From: joe@example.org\nTo: x@example.net\nSubject: long and compressible\nMessage-ID: <z@fedora-joe>\n\n'; yes 'the same line again and again, as zstd likes it' | head -n 20000; } > big.eml
        { printf '\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom'; head -c 1500000 /dev/urandom; } > clip.mp4
        truncate -s 200M bt.raw
        mkfs.btrfs -q -L FEDROOT -r root bt.raw
        mkdir mnt
        mount -o loop,compress-force=zstd bt.raw mnt
        trap 'umount mnt 2>/dev/null || true' EXIT
        btrfs -q subvolume create mnt/home
        mkdir -p mnt/home/joe/Mail/outbox mnt/home/joe/Videos
        cp big.eml mnt/home/joe/Mail/outbox/big.eml
        cp clip.mp4 mnt/home/joe/Videos/clip.mp4
        umount mnt
        echo "zstd extents: $(btrfs inspect-internal dump-tree -t 256 bt.raw | grep -c 'compression 3 (zstd)')"
        echo "uuid $(btrfs inspect-internal dump-super bt.raw | awk '$1 == "fsid" {print $2}')"
        "#,
        base,
    );
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("{k}: {out}"));
    assert!(field("zstd extents: ").parse::<u32>().unwrap() > 0, "the kernel compressed nothing: {out}");
    let r = inspect(&base.join("bt.raw"));
    let fs = &r["filesystems"][0];
    assert_eq!((fs["kind"].as_str(), fs["label"].as_str()), (Some("btrfs"), Some("FEDROOT")), "{r:#}");
    assert_eq!(fs["uuid"].as_str().unwrap(), field("uuid "));
    let l = &fs["linux"];
    assert_eq!(l["os"]["pretty_name"], "Fedora Linux 41 (Server Edition)");
    assert_eq!(l["hostname"], "fedora-joe");
    assert_eq!(l["crontabs"][0]["line"], "@reboot sleep 600 && /home/joe/flush");
    let mail = &l["mail"][0];
    assert_eq!(mail["path"], "/home/joe/Mail/outbox/big.eml", "{l:#}");
    assert_eq!(mail["sha256"].as_str().unwrap(), sha256sum(&base.join("big.eml")));
    assert_eq!(mail["size"].as_u64().unwrap(), std::fs::metadata(base.join("big.eml")).unwrap().len());
    let media = &l["media"][0];
    assert_eq!(media["path"], "/home/joe/Videos/clip.mp4");
    assert_eq!(media["sha256"].as_str().unwrap(), sha256sum(&base.join("clip.mp4")));
}
