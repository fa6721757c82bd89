//! Virtual machine image inspection: what is inside an image a target uploads.
//!
//! Layers, each reading the one below through [`disk::Disk`] (random access, bounded, checked):
//! the container ([`qcow2`], [`vmdk`] also inside an OVA, [`vhd`] (VHD and VDI), [`vhdx`], or raw
//! bytes; told by content, never by name), the partition table ([`partition`]) and LVM2
//! ([`lvm`]), the filesystem (ext2/3/4 through the `ext4-view` crate, [`xfs`], [`btrfs`], [`fat`],
//! [`ntfs`]; read-only, never mounted), and the findings about a Linux root ([`linux`]: also the
//! MTA queues of [`mailq`] and [`exim`]) or a Windows volume ([`registry`]). Saved RAM (a qcow2 snapshot's VM state, a QEMU migration stream or a
//! raw memory dump) is rebuilt ([`ram`]) and carved ([`carve`]). [`inspect`] runs them all and
//! returns one [`Report`]; nothing is written anywhere.
//!
//! Why `ext4-view`: a maintained, pure-Rust, read-only ext2/3/4 reader that takes any reader
//! (`Ext4Read`), verifies checksums and returns errors, not panics, on corrupt metadata. The
//! container and partition readers are written here (see their modules for why).

pub mod btrfs;
pub mod carve;
pub mod cron;
pub mod disk;
pub mod exim;
pub mod fat;
pub mod intake;
pub mod linux;
pub mod lvm;
pub mod mailq;
pub mod ntfs;
pub mod partition;
pub mod qcow2;
pub mod ram;
pub mod registry;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;
pub mod xfs;

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;

use disk::{Disk, Slice};
use linux::{Entry, Kind, Tree};

/// How the container was read.
#[derive(Debug, Default, Serialize)]
pub struct Container {
    /// `qcow2`, `vmdk`, `vhd`, `vhdx`, `vdi` or `raw`; `ova` when an OVA's disk was read.
    pub format: String,
    pub virtual_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qcow2: Option<qcow2::Header>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmdk: Option<vmdk::Header>,
    /// VHD and VDI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<vhd::Header>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhdx: Option<vhdx::Header>,
    /// The backing images read under this one, nearest first (name as the image gives it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backing_chain: Vec<String>,
    /// For an OVA: the disk's name in the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ova_disk: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<qcow2::Snapshot>,
}

/// One filesystem found, where, and what it says.
#[derive(Debug, Serialize)]
pub struct Filesystem {
    /// Partition number, or 0 for a filesystem on the whole disk.
    pub partition: u32,
    pub offset: u64,
    /// The LVM logical volume (`vg/lv`) it is on, if it is on one (`offset` is then the
    /// physical volume's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// `ext4` (ext2/3/4 alike).
    pub kind: String,
    pub label: String,
    pub uuid: String,
    /// Findings when it is a Linux root filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linux: Option<linux::Findings>,
    /// Findings of any other filesystem (an EFI partition, a data disk): mail, media and the
    /// most recently changed files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<linux::Findings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole inspection of one image.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub container: Container,
    pub partitions: Vec<partition::Partition>,
    pub filesystems: Vec<Filesystem>,
    /// LVM2 volume groups found on physical volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_groups: Vec<lvm::VolumeGroup>,
    /// Saved RAM found: each snapshot's VM state, its RAM blocks and pages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ram: Vec<SavedRam>,
    /// Artifacts carved from saved RAM or from a memory dump, each with its offset.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<carve::Artifact>,
    /// What could not be read, and why (corrupt tables, unsupported features, bounds reached).
    pub notes: Vec<String>,
}

/// The RAM of one snapshot's saved VM state.
#[derive(Debug, Serialize)]
pub struct SavedRam {
    pub snapshot: String,
    pub vm_state_size: u64,
    pub blocks: Vec<ram::Block>,
}

/// A snapshot's VM state as a [`Disk`].
struct VmState<'a, D: Disk> {
    q: &'a mut qcow2::Qcow2<D>,
    snapshot: usize,
    size: u64,
}

impl<D: Disk> Disk for VmState<'_, D> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.q
            .read_vm_state(self.snapshot, offset, buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }
}

/// Rebuilds the RAM of every snapshot holding VM state and carves it.
fn snapshot_memory<D: Disk>(q: &mut qcow2::Qcow2<D>, report: &mut Report) {
    for (i, s) in q.snapshots.clone().iter().enumerate() {
        if s.vm_state_size == 0 {
            continue;
        }
        let label = format!("snapshot {} {:?}", s.id, s.name);
        saved_ram(&mut VmState { q, snapshot: i, size: s.vm_state_size }, label, report);
    }
}

/// Rebuilds the guest RAM a migration stream holds (a snapshot's VM state, or a stream uploaded
/// as such), carves each of its blocks, and records it all under `label`.
fn saved_ram(stream: &mut dyn Disk, label: String, report: &mut Report) {
    let saved = ram::parse(stream);
    report.notes.extend(saved.notes.iter().map(|n| format!("{label}: {n}")));
    for b in &saved.blocks {
        let mut bd = ram::BlockDisk { stream: &mut *stream, block: b };
        let runs = bd.runs();
        carve::carve(&mut bd, &runs, &format!("{label} RAM block {}", b.name), &mut report.memory);
    }
    report.ram.push(SavedRam { snapshot: label, vm_state_size: stream.size(), blocks: saved.blocks });
}

/// A disk shared by the filesystem reader (which wants to own a `'static` reader) and the rest.
#[derive(Clone)]
struct Shared(Rc<RefCell<Box<dyn Disk>>>);

impl Disk for Shared {
    fn size(&self) -> u64 {
        self.0.borrow().size()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0.borrow_mut().read_at(offset, buf)
    }
}

struct Ext4Disk<D>(D);

impl<D: Disk> ext4_view::Ext4Read for Ext4Disk<D> {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.0.read_at(start_byte, dst).map_err(|e| e.into())
    }
}

/// An ext4 filesystem as a [`Tree`].
struct Ext4Tree(ext4_view::Ext4);

impl Tree for Ext4Tree {
    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let mut f = self.0.open(path).ok()?;
        let mut out = Vec::new();
        linux::pump(max as u64, &mut |b| f.read_bytes(b).ok(), &mut |b| out.extend_from_slice(b));
        Some(out)
    }

    fn list(&self, path: &str) -> Vec<Entry> {
        let Ok(rd) = self.0.read_dir(path) else { return Vec::new() };
        rd.filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().as_str().ok()?.to_string();
                if name == "." || name == ".." {
                    return None;
                }
                let m = e.metadata().ok();
                let kind = match e.file_type() {
                    Ok(t) if t.is_regular_file() => Kind::File,
                    Ok(t) if t.is_dir() => Kind::Dir,
                    Ok(t) if t.is_symlink() => Kind::Symlink,
                    _ => Kind::Other,
                };
                Some(Entry {
                    name,
                    kind,
                    size: m.as_ref().map_or(0, |m| m.len()),
                    mtime: m.as_ref().map(|m| m.modified().seconds()),
                    id: m.as_ref().map(inode_digest),
                })
            })
            .collect()
    }

    fn stream(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> u64 {
        let Ok(mut file) = self.0.open(path) else { return 0 };
        linux::pump(max, &mut |b| file.read_bytes(b).ok(), f)
    }

    fn read_link(&self, path: &str) -> Option<String> {
        self.0.read_link(path).ok().and_then(|p| p.to_str().ok().map(str::to_string))
    }
}

/// An ext4 inode's identity as far as its metadata tells (the crate gives no inode numbers):
/// two distinct directories share mode, owner, size and three times to the nanosecond only by
/// being one.
fn inode_digest(m: &ext4_view::Metadata) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let t = |t: ext4_view::Timestamp| (t.seconds(), t.nanoseconds());
    (m.mode(), m.uid(), m.gid(), m.len(), t(m.accessed()), t(m.modified()), m.created().map(t)).hash(&mut h);
    h.finish()
}

/// Whether `d` holds an ext2/3/4 superblock at `offset`.
fn is_ext(d: &mut dyn Disk, offset: u64) -> bool {
    let mut magic = [0u8; 2];
    d.read_at(offset + 1024 + 56, &mut magic).is_ok() && magic == [0x53, 0xef]
}

/// The first `.vmdk` of a tar archive (an OVA): its name, offset and length.
fn ova_disk(d: &mut dyn Disk) -> Option<(String, u64, u64)> {
    let mut at = 0u64;
    for _ in 0..1024 {
        let h = disk::read_vec(d, at, 512).ok()?;
        if h.get(257..262) != Some(b"ustar") {
            return None;
        }
        let name = String::from_utf8_lossy(h.get(..100)?).trim_end_matches('\0').to_string();
        let size_field = std::str::from_utf8(h.get(124..136)?).ok()?.trim_matches(|c: char| c == '\0' || c == ' ');
        let size = u64::from_str_radix(size_field, 8).ok()?;
        if name.to_ascii_lowercase().ends_with(".vmdk") {
            return Some((name, at + 512, size));
        }
        at = at.checked_add(512)?.checked_add(size.div_ceil(512) * 512)?;
    }
    None
}

/// Finds a backing image by the name an image gives: its identity (to tell loops) and bytes.
pub type BackingResolver<'a> = &'a dyn Fn(&str) -> Option<(String, Box<dyn Disk>)>;

/// Backing images followed at most under one image.
pub const MAX_BACKING_DEPTH: usize = 16;

/// No backing image is ever found.
pub fn no_backing(_: &str) -> Option<(String, Box<dyn Disk>)> {
    None
}

/// The guest's view of the image in `file`: the container told by content, never by name.
/// `None` when the container cannot be read (the reason is in the notes).
pub fn open_container(file: Box<dyn Disk>, report: &mut Report) -> Option<Box<dyn Disk>> {
    open_chain(file, report, &no_backing, &mut Vec::new())
}

/// Follows the backing chain of a qcow2 image through `resolve`, refusing loops and chains
/// deeper than [`MAX_BACKING_DEPTH`].
fn attach_backing<D: Disk>(
    q: &mut qcow2::Qcow2<D>,
    report: &mut Report,
    resolve: BackingResolver<'_>,
    seen: &mut Vec<String>,
) {
    let Some(name) = q.header.backing_file.clone() else { return };
    if seen.len() > MAX_BACKING_DEPTH {
        report.notes.push(format!("backing chain deeper than {MAX_BACKING_DEPTH} images at {name:?}: not followed"));
        return;
    }
    let Some((id, disk)) = resolve(&name) else {
        report.notes.push(format!("backing file {name:?} not found: clusters this image does not hold read as zeros"));
        return;
    };
    if seen.contains(&id) {
        report.notes.push(format!("backing chain loops back to {name:?}: not followed"));
        return;
    }
    seen.push(id);
    let mut sub = Report::default();
    if let Some(g) = open_chain(disk, &mut sub, resolve, seen) {
        report.container.backing_chain.push(name);
        report.container.backing_chain.extend(sub.container.backing_chain);
        q.set_backing(g);
    }
    report.notes.extend(sub.notes);
}

fn open_chain(
    mut file: Box<dyn Disk>,
    report: &mut Report,
    resolve: BackingResolver<'_>,
    seen: &mut Vec<String>,
) -> Option<Box<dyn Disk>> {
    let size = file.size();
    let mut head = vec![0u8; 512.min(size as usize)];
    let _ = file.read_at(0, &mut head);
    let mut tail = vec![0u8; 512.min(size as usize)];
    let _ = file.read_at(size - tail.len() as u64, &mut tail);
    let fail = |report: &mut Report, format: &str, e: String| {
        report.container.format = format.into();
        report.notes.push(format!("{format}: {e}"));
        None
    };
    if qcow2::is_qcow2(&head) {
        return match qcow2::Qcow2::open(file) {
            Ok(mut q) => {
                report.container = Container {
                    format: "qcow2".into(),
                    virtual_size: q.header.virtual_size,
                    qcow2: Some(q.header.clone()),
                    snapshots: q.snapshots.clone(),
                    ..Container::default()
                };
                snapshot_memory(&mut q, report);
                attach_backing(&mut q, report, resolve, seen);
                Some(Box::new(q))
            }
            Err(e) => fail(report, "qcow2", e.to_string()),
        };
    }
    let ova = if head.get(257..262) == Some(b"ustar") { ova_disk(&mut file) } else { None };
    if let Some((name, start, len)) = ova {
        let slice: Box<dyn Disk> = Box::new(Slice { inner: file, start, len });
        return match vmdk::Vmdk::open(slice) {
            Ok(v) => {
                report.container = Container {
                    format: "ova".into(),
                    virtual_size: v.size(),
                    vmdk: Some(v.header.clone()),
                    ova_disk: Some(name),
                    ..Container::default()
                };
                Some(Box::new(v))
            }
            Err(e) => fail(report, "ova", format!("{name}: {e}")),
        };
    }
    if vmdk::is_vmdk(&head) {
        return match vmdk::Vmdk::open(file) {
            Ok(v) => {
                report.container = Container {
                    format: "vmdk".into(),
                    virtual_size: v.size(),
                    vmdk: Some(v.header.clone()),
                    ..Container::default()
                };
                Some(Box::new(v))
            }
            Err(e) => fail(report, "vmdk", e.to_string()),
        };
    }
    if vhdx::is_vhdx(&head) {
        return match vhdx::Vhdx::open(file) {
            Ok(v) => {
                if v.header.log_pending {
                    report
                        .notes
                        .push("vhdx: the log holds writes not applied (not closed cleanly): they are not read".into());
                }
                report.container = Container {
                    format: "vhdx".into(),
                    virtual_size: v.size(),
                    vhdx: Some(v.header.clone()),
                    ..Container::default()
                };
                Some(Box::new(v))
            }
            Err(e) => fail(report, "vhdx", e.to_string()),
        };
    }
    let vdi = vhd::is_vdi(&head);
    if vdi || vhd::is_vhd_footer(&tail) || vhd::is_vhd_footer(&head) {
        let format = if vdi { "vdi" } else { "vhd" };
        let opened = if vdi { vhd::Blocked::open_vdi(file) } else { vhd::Blocked::open_vhd(file) };
        return match opened {
            Ok(b) => {
                report.container = Container {
                    format: format.into(),
                    virtual_size: b.size(),
                    blocks: Some(b.header.clone()),
                    ..Container::default()
                };
                Some(Box::new(b))
            }
            Err(e) => fail(report, format, e.to_string()),
        };
    }
    report.container = Container { format: "raw".into(), virtual_size: size, ..Container::default() };
    Some(file)
}

/// Inspects the image in `file` (any container this module reads).
pub fn inspect(file: Box<dyn Disk>) -> Report {
    inspect_with(file, "", &no_backing, DEFAULT_TIME_LIMIT)
}

/// Bytes of the guest disk cached for the filesystem readers.
pub const GUEST_CACHE: usize = 32 << 20;

/// How long one inspection may walk filesystems, by default.
pub const DEFAULT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Where an extracted artifact was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "found", rename_all = "kebab-case")]
pub enum Place {
    /// A file of the filesystem on partition `partition` (0: the whole disk); one message of an
    /// mbox is `path#n`.
    Filesystem { partition: u32, path: String },
    /// Saved RAM or a memory dump: which, and the offset there.
    Memory { source: String, offset: u64 },
}

impl Place {
    /// How an analyst reads it: the path, or `source @ offset`.
    pub fn describe(&self) -> String {
        match self {
            Place::Filesystem { partition: 0, path } => path.clone(),
            Place::Filesystem { partition, path } => format!("{path} (partition {partition})"),
            Place::Memory { source, offset } => format!("{source} @ {offset:#x}"),
        }
    }
}

/// Hands its argument an artifact's bytes in order, in chunks; returns how many.
pub type ArtifactBytes<'a> = &'a mut dyn FnMut(&mut dyn FnMut(&[u8])) -> u64;

/// Receives the bytes of what an inspection finds (messages, crontabs, key files, media), so
/// that each can become an object of its own.
pub trait Extract {
    /// An artifact of `kind` (`mail`, `crontab`, `ssh-keys`, `media`) found at `place`. `bytes`
    /// hands its argument the artifact's bytes in order, in chunks, and returns how many.
    fn artifact(&mut self, kind: &'static str, place: Place, bytes: ArtifactBytes<'_>);
}

/// The filesystem on `view` (partition `number` at `offset`), if this module reads its kind. A
/// reader that panics (on a structure its authors did not expect) costs this filesystem only:
/// it is reported unreadable, and the rest of the image is read.
fn filesystem_on<D: Disk + 'static>(
    view: D,
    number: u32,
    offset: u64,
    deadline: std::time::Instant,
    ex: Option<&mut (dyn Extract + '_)>,
) -> Option<Filesystem> {
    let read =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_filesystem(view, number, offset, deadline, ex)));
    read.unwrap_or_else(|_| {
        Some(Filesystem {
            partition: number,
            offset,
            volume: None,
            kind: "unknown".into(),
            label: String::new(),
            uuid: String::new(),
            linux: None,
            data: None,
            error: Some("the reader failed on a corrupt structure of this filesystem".into()),
        })
    })
}

fn read_filesystem<D: Disk + 'static>(
    mut view: D,
    number: u32,
    offset: u64,
    deadline: std::time::Instant,
    ex: Option<&mut (dyn Extract + '_)>,
) -> Option<Filesystem> {
    let mut fs = Filesystem {
        partition: number,
        offset,
        volume: None,
        kind: String::new(),
        label: String::new(),
        uuid: String::new(),
        linux: None,
        data: None,
        error: None,
    };
    if is_ext(&mut view, 0) {
        fs.kind = "ext4".into();
        let opened = ext4_view::Ext4::load(Box::new(Ext4Disk(view))).map(Ext4Tree);
        let names = |t: &Ext4Tree| (t.0.label().to_str().unwrap_or_default().to_string(), t.0.uuid().to_string());
        examine_opened(opened, names, &mut fs, deadline, ex);
    } else if fat::is_fat(&mut view) {
        fs.kind = "fat".into();
        match fat::FatTree::open(view) {
            Ok(t) => {
                fs.kind = t.kind().into();
                fs.label = t.label();
                fs.uuid = format!("{:08X}", t.0.volume_id());
                examine(&t, &mut fs, deadline, ex);
            }
            Err(e) => fs.error = Some(e.to_string()),
        }
    } else if ntfs::is_ntfs(&mut view) {
        fs.kind = "ntfs".into();
        examine_opened(ntfs::NtfsTree::open(view), |t| (t.label(), t.serial()), &mut fs, deadline, ex);
    } else if btrfs::is_btrfs(&mut view) {
        fs.kind = "btrfs".into();
        examine_opened(btrfs::BtrfsTree::open(view), |t| (t.label(), t.uuid()), &mut fs, deadline, ex);
    } else if xfs::is_xfs(&mut view) {
        fs.kind = "xfs".into();
        examine_opened(xfs::XfsTree::open(view), |t| (t.label(), t.uuid()), &mut fs, deadline, ex);
    } else {
        return None;
    }
    Some(fs)
}

/// Examines a filesystem its reader opened, named by `names` (label, id), or records why the
/// reader could not open it.
fn examine_opened<T: Tree, E: std::fmt::Display>(
    opened: Result<T, E>,
    names: impl Fn(&T) -> (String, String),
    fs: &mut Filesystem,
    deadline: std::time::Instant,
    ex: Option<&mut (dyn Extract + '_)>,
) {
    match opened {
        Ok(t) => {
            (fs.label, fs.uuid) = names(&t);
            examine(&t, fs, deadline, ex);
        }
        Err(e) => fs.error = Some(e.to_string()),
    }
}

/// The filesystem on a whole volume (no container, no partition table), with its findings and
/// every artifact read: what the fuzz targets of the filesystem readers drive.
pub fn inspect_volume(volume: Box<dyn Disk>, time_limit: std::time::Duration) -> Option<Filesystem> {
    struct Drain;
    impl Extract for Drain {
        fn artifact(&mut self, _: &'static str, _: Place, bytes: ArtifactBytes<'_>) {
            bytes(&mut |_| {});
        }
    }
    filesystem_on(volume, 0, 0, std::time::Instant::now() + time_limit, Some(&mut Drain))
}

/// What a filesystem holds: everything for a Linux root, mail, media and recent files for any
/// other; its artifacts handed to `ex`.
fn examine(t: &dyn Tree, fs: &mut Filesystem, deadline: std::time::Instant, ex: Option<&mut (dyn Extract + '_)>) {
    // A reader that panics on a structure it did not expect costs this filesystem, not the
    // image: the others are still read.
    let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let root = linux::is_linux_root(t);
        (root, if root { linux::inspect(t, deadline) } else { linux::inspect_data(t, deadline) })
    }));
    let Ok((root, found)) = walked else {
        fs.error = Some("the reader failed on a corrupt structure of this filesystem".into());
        return;
    };
    if let Some(ex) = ex {
        let partition = fs.partition;
        let extracted =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| extract_files(t, partition, &found, ex)));
        if extracted.is_err() {
            fs.error = Some("the reader failed on a corrupt structure while extracting artifacts".into());
        }
    }
    if root {
        fs.linux = Some(found);
    } else {
        fs.data = Some(found);
    }
}

/// The files behind a filesystem's findings, each handed to `ex` once.
fn extract_files(t: &dyn Tree, partition: u32, f: &linux::Findings, ex: &mut dyn Extract) {
    let place = |path: &str| Place::Filesystem { partition, path: path.to_string() };
    for m in &f.mail {
        // `path#n`: the n-th message of the mbox at `path`.
        let (path, nth) = match m.path.rsplit_once('#').map(|(p, n)| (p, n.parse::<usize>())) {
            Some((p, Ok(n))) => (p, Some(n)),
            _ => (m.path.as_str(), None),
        };
        // A queue file: the message it holds, as the MTA would deliver it.
        let body = if linux::is_queue_file(path) {
            linux::queued_message(t, path).map(|(_, q)| q.message)
        } else {
            t.read(path, linux::MAX_FILE)
        };
        let Some(body) = body else { continue };
        let msg = match nth {
            Some(n) => linux::mbox_messages(&body).get(n.wrapping_sub(1)).copied(),
            None => Some(body.as_slice()),
        };
        if let Some(msg) = msg {
            ex.artifact("mail", place(&m.path), &mut |out| {
                out(msg);
                msg.len() as u64
            });
        }
    }
    let mut files: Vec<(&'static str, &str)> = f.crontabs.iter().map(|c| ("crontab", c.path.as_str())).collect();
    files.extend(f.ssh_keys.iter().map(|k| ("ssh-keys", k.path.as_str())));
    files.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for (kind, path) in files {
        if !seen.insert(path) {
            continue;
        }
        if let Some(b) = t.read(path, linux::MAX_FILE) {
            ex.artifact(kind, place(path), &mut |out| {
                out(&b);
                b.len() as u64
            });
        }
    }
    for m in &f.media {
        ex.artifact("media", place(&m.path), &mut |out| t.stream(&m.path, linux::MAX_HASHED, out));
    }
}

/// [`inspect`], with backing images found through `resolve`; `identity` is the image's own, in
/// the resolver's terms, so that a chain looping back to it is told. Filesystem walks stop at
/// `time_limit` (with a note): an image too large or too hostile costs that much at most.
pub fn inspect_with(
    file: Box<dyn Disk>,
    identity: &str,
    resolve: BackingResolver<'_>,
    time_limit: std::time::Duration,
) -> Report {
    inspect_extracting(file, identity, resolve, time_limit, None)
}

/// [`inspect_with`], handing every artifact found to `extract` as well.
pub fn inspect_extracting(
    file: Box<dyn Disk>,
    identity: &str,
    resolve: BackingResolver<'_>,
    time_limit: std::time::Duration,
    mut extract: Option<&mut dyn Extract>,
) -> Report {
    let deadline = std::time::Instant::now() + time_limit;
    let mut report = Report::default();
    let Some(guest) = open_chain(file, &mut report, resolve, &mut vec![identity.to_string()]) else { return report };
    // Bytes read by the partition and filesystem readers go through one cache (bounded).
    let guest: Box<dyn Disk> = Box::new(disk::Cached::new(guest, GUEST_CACHE));
    let shared = Shared(Rc::new(RefCell::new(guest)));
    let (parts, notes) = partition::partitions(&mut shared.clone());
    report.notes.extend(notes);
    let mut candidates: Vec<(u32, u64, u64)> = parts.iter().map(|p| (p.number, p.start, p.size)).collect();
    if candidates.is_empty() {
        candidates.push((0, 0, shared.size()));
    }
    report.partitions = parts;
    for (number, start, len) in candidates {
        let mut view = Slice { inner: shared.clone(), start, len };
        if lvm::label_sector(&mut view).is_some() {
            // An LVM2 physical volume: each logical volume is looked into like a partition.
            match lvm::read(&mut view) {
                Ok(vg) => {
                    report.notes.extend(vg.notes.iter().map(|n| format!("LVM {}: {n}", vg.name)));
                    for lv in vg.logical_volumes.iter().filter(|lv| !lv.segments.is_empty()) {
                        let pv = Slice { inner: shared.clone(), start, len };
                        let vol = lvm::Volume { pv, lv: lv.clone() };
                        if let Some(mut fs) = filesystem_on(vol, number, start, deadline, extract.as_deref_mut()) {
                            fs.volume = Some(lv.name.clone());
                            report.filesystems.push(fs);
                        }
                    }
                    report.volume_groups.push(vg);
                }
                Err(e) => report.notes.push(format!("partition {number}: LVM2 label, unreadable metadata: {e}")),
            }
            continue;
        }
        if let Some(fs) = filesystem_on(view, number, start, deadline, extract.as_deref_mut()) {
            report.filesystems.push(fs);
        }
    }
    if report.filesystems.is_empty() && report.partitions.is_empty() {
        // Not a disk: a memory dump (or a QEMU migration stream) is carved whole.
        let mut d = shared.clone();
        let size = d.size();
        let mut head = [0u8; 8];
        let _ = d.read_at(0, &mut head);
        if ram::is_stream(&head) {
            saved_ram(&mut d, "migration stream".into(), &mut report);
        } else {
            carve::carve(&mut d, &[(0, size)], "memory dump", &mut report.memory);
        }
    }
    if report.filesystems.is_empty() {
        report.notes.push("no filesystem this version reads (ext2/3/4, XFS, btrfs, FAT, NTFS) was found".into());
    }
    if let Some(ex) = extract {
        for a in &report.memory {
            let place = Place::Memory { source: a.source.clone(), offset: a.offset };
            ex.artifact(a.kind, place, &mut |out| {
                out(&a.bytes);
                a.bytes.len() as u64
            });
        }
    }
    report
}
