//! What a Linux root filesystem says about its VM: OS, hostname, users, keys, scheduled tasks,
//! services, mail waiting to go out, shell histories, media files and what changed last.
//!
//! Works on any [`Tree`] (a read-only filesystem view), so each filesystem reader only has to
//! list directories and read files. Every read is bounded ([`MAX_FILE`], [`MAX_ENTRIES`],
//! [`MAX_DEPTH`]); what a bound cut short is said in `notes`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Bytes of one file read at most (configuration, crontabs, mail).
pub const MAX_FILE: usize = 4 << 20;
/// Bytes hashed at most for a media file or a mail (the size says if it was cut).
pub const MAX_HASHED: u64 = 256 << 20;
/// Directory entries visited at most in one walk of the tree.
pub const MAX_ENTRIES: usize = 200_000;
/// Directory depth walked at most (a directory cycle in a corrupt filesystem ends here).
pub const MAX_DEPTH: usize = 32;
/// Files under the system's trees are looked into for media from this size on.
pub const SYSTEM_MEDIA_MIN: u64 = 256 << 10;
/// Lines kept from the end of each shell history.
const HISTORY_TAIL: usize = 50;
/// Recently changed files listed.
const RECENT: usize = 25;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    /// Seconds since the epoch (`None`: the reader does not know it).
    pub mtime: Option<i64>,
    /// What identifies the file within the filesystem, where the reader tells: its inode or
    /// MFT record number, or (ext4, whose reader gives no numbers) a digest of its metadata to
    /// the nanosecond. Two directories with one id are one: a cycle when below itself.
    pub id: Option<u64>,
}

/// A read-only view of a filesystem, paths absolute with `/`.
pub trait Tree {
    /// Up to `max` bytes of the regular file at `path` (`None`: absent or not a regular file).
    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>>;
    /// The entries of directory `path` (empty if absent), without `.` and `..`.
    fn list(&self, path: &str) -> Vec<Entry>;
    /// Streams the regular file at `path` to `f` in chunks, up to `max` bytes; the bytes read.
    fn stream(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> u64;
    /// Where a symbolic link points.
    fn read_link(&self, path: &str) -> Option<String>;
}

/// Reads a file through `read` (a reader's own `read`, `None` at its end or on an error) in
/// chunks of up to 1 MiB handed to `f`, up to `max` bytes; the bytes read. Every [`Tree`]'s
/// `read` and `stream` go through it.
pub fn pump(max: u64, read: &mut dyn FnMut(&mut [u8]) -> Option<usize>, f: &mut dyn FnMut(&[u8])) -> u64 {
    let mut buf = vec![0u8; (1 << 20).min(max.max(1) as usize)];
    let mut total = 0u64;
    while total < max {
        let want = (max - total).min(buf.len() as u64) as usize;
        match read(buf.get_mut(..want).unwrap_or_default()) {
            None | Some(0) => break,
            Some(n) => {
                f(buf.get(..n).unwrap_or_default());
                total += n as u64;
            }
        }
    }
    total
}

#[derive(Debug, Default, Serialize)]
pub struct Os {
    pub pretty_name: Option<String>,
    pub id: Option<String>,
    pub version_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// `set`, `locked` (`!` or `*`), `empty` (no password needed!) or `unknown` (no shadow entry).
    /// Never the hash.
    pub password: &'static str,
    pub groups: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SshKey {
    pub user: String,
    pub path: String,
    pub key_type: String,
    pub comment: String,
    /// As `ssh-keygen -l` prints it: `SHA256:` and the unpadded base64 of the key blob's digest.
    pub fingerprint: String,
}

#[derive(Debug, Serialize)]
pub struct CronEntry {
    pub path: String,
    pub user: String,
    /// The line as written.
    pub line: String,
    /// `@reboot`, `@daily`... or the five time fields.
    pub schedule: String,
    pub command: String,
    /// For a VM started at a given time ([`plan`]): when this entry runs next, in UTC.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_runs: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Mail {
    pub path: String,
    #[serde(flatten)]
    pub headers: MailHeaders,
    pub size: u64,
    pub sha256: String,
    /// For a message in an MTA's queue: its envelope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueInfo>,
}

/// The envelope of a message waiting in an MTA's queue.
#[derive(Debug, Serialize)]
pub struct QueueInfo {
    /// `postfix` or `exim`.
    pub mta: &'static str,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    /// When it was queued, seconds since the epoch.
    pub arrived: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct History {
    pub user: String,
    pub path: String,
    pub lines: usize,
    pub last: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Media {
    pub path: String,
    pub format: &'static str,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct Changed {
    pub path: String,
    pub mtime: i64,
    pub size: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Findings {
    pub os: Os,
    /// A Windows system volume: the version its SOFTWARE hive records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<super::registry::WindowsVersion>,
    pub hostname: Option<String>,
    /// The zone the VM's clock (and cron) runs in: `/etc/timezone`, or where `/etc/localtime`
    /// points.
    pub timezone: Option<String>,
    pub users: Vec<User>,
    pub sudoers: Vec<String>,
    pub ssh_keys: Vec<SshKey>,
    pub crontabs: Vec<CronEntry>,
    pub enabled_units: Vec<String>,
    /// The enabled systemd timers: cron's successor, what the VM will run and when.
    pub timers: Vec<Timer>,
    pub rc_local: Vec<String>,
    pub mail: Vec<Mail>,
    pub histories: Vec<History>,
    pub media: Vec<Media>,
    /// Files under the system's own trees (`/usr`, `/lib`, `/boot`, `/etc`...) smaller than
    /// [`SYSTEM_MEDIA_MIN`]: packaged icons and documentation, counted, not opened.
    pub system_files_skipped: u64,
    pub recently_changed: Vec<Changed>,
    pub notes: Vec<String>,
}

fn text(t: &dyn Tree, path: &str) -> Option<String> {
    t.read(path, MAX_FILE).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// Whether `t` looks like a Linux root filesystem.
pub fn is_linux_root(t: &dyn Tree) -> bool {
    t.read("/etc/passwd", 1).is_some() || t.read("/etc/os-release", 1).is_some()
}

/// Everything this module looks for.
pub fn inspect(t: &dyn Tree, deadline: std::time::Instant) -> Findings {
    let mut f = Findings { os: os_release(t), ..Findings::default() };
    f.hostname = text(t, "/etc/hostname").map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
    f.timezone = text(t, "/etc/timezone")
        .map(|z| z.trim().to_string())
        .filter(|z| !z.is_empty())
        .or_else(|| t.read_link("/etc/localtime").and_then(|l| l.split("zoneinfo/").nth(1).map(str::to_string)));
    f.users = users(t);
    f.sudoers = sudoers(t);
    f.ssh_keys = ssh_keys(t, &f.users);
    f.crontabs = crontabs(t);
    f.enabled_units = enabled_units(t);
    f.timers = timers(t, &f.enabled_units);
    f.rc_local = text(t, "/etc/rc.local")
        .map(|s| {
            s.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).map(str::to_string).collect()
        })
        .unwrap_or_default();
    f.histories = histories(t, &f.users);
    walk(t, &mut f, deadline);
    f
}

/// What any filesystem that is no Linux root holds: one walk for media, mail and the most
/// recently changed files.
pub fn inspect_data(t: &dyn Tree, deadline: std::time::Instant) -> Findings {
    let mut f = Findings::default();
    windows(t, &mut f);
    walk(t, &mut f, deadline);
    f
}

/// Where a Windows system volume keeps its SOFTWARE hive; hives are tens of MB, read up to
/// this many bytes (what is past it is left unread; the key sits near the start in practice).
const SOFTWARE_HIVE: &str = "/Windows/System32/config/SOFTWARE";
const MAX_HIVE: usize = 256 << 20;

/// A Windows system volume: its version from the SOFTWARE hive, as the OS of the findings.
fn windows(t: &dyn Tree, f: &mut Findings) {
    let Some(hive) = t.read(SOFTWARE_HIVE, MAX_HIVE) else { return };
    let Some(v) = super::registry::windows_version(&hive) else {
        f.notes.push(format!("{SOFTWARE_HIVE}: no Windows version in it"));
        return;
    };
    let mut pretty = v.product_name.clone().unwrap_or_else(|| "Windows".into());
    if let Some(d) = &v.display_version {
        pretty = format!("{pretty} {d}");
    }
    if let Some(b) = &v.current_build {
        pretty = format!("{pretty} (build {b})");
    }
    f.os = Os { pretty_name: Some(pretty), id: Some("windows".into()), version_id: v.current_build.clone() };
    f.windows = Some(v);
}

fn os_release(t: &dyn Tree) -> Os {
    let Some(s) = text(t, "/etc/os-release").or_else(|| text(t, "/usr/lib/os-release")) else { return Os::default() };
    let mut os = Os::default();
    for l in s.lines() {
        let Some((k, v)) = l.split_once('=') else { continue };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        match k.trim() {
            "PRETTY_NAME" => os.pretty_name = Some(v),
            "ID" => os.id = Some(v),
            "VERSION_ID" => os.version_id = Some(v),
            _ => {}
        }
    }
    os
}

fn users(t: &dyn Tree) -> Vec<User> {
    let Some(passwd) = text(t, "/etc/passwd") else { return Vec::new() };
    let shadow: BTreeMap<String, &'static str> = text(t, "/etc/shadow")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split(':');
            let (name, hash) = (it.next()?, it.next()?);
            let state = if hash.is_empty() {
                "empty"
            } else if hash.starts_with('!') || hash.starts_with('*') {
                "locked"
            } else {
                "set"
            };
            Some((name.to_string(), state))
        })
        .collect();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in text(t, "/etc/group").unwrap_or_default().lines() {
        let parts: Vec<&str> = l.split(':').collect();
        if let (Some(g), Some(members)) = (parts.first(), parts.get(3)) {
            for m in members.split(',').filter(|m| !m.is_empty()) {
                groups.entry(m.to_string()).or_default().push(g.to_string());
            }
        }
    }
    passwd
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split(':').collect();
            let name = p.first()?.to_string();
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            Some(User {
                uid: p.get(2)?.parse().ok()?,
                gid: p.get(3)?.parse().ok()?,
                home: p.get(5).unwrap_or(&"").to_string(),
                shell: p.get(6).unwrap_or(&"").to_string(),
                password: shadow.get(&name).copied().unwrap_or("unknown"),
                groups: groups.remove(&name).unwrap_or_default(),
                name,
            })
        })
        .collect()
}

fn sudoers(t: &dyn Tree) -> Vec<String> {
    let mut files = vec!["/etc/sudoers".to_string()];
    files.extend(
        t.list("/etc/sudoers.d")
            .into_iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| format!("/etc/sudoers.d/{}", e.name)),
    );
    let mut out = Vec::new();
    for p in files {
        for l in text(t, &p).unwrap_or_default().lines() {
            let l = l.trim();
            if !l.is_empty() && (!l.starts_with('#') || l.starts_with("#include")) && !l.starts_with("Defaults") {
                out.push(format!("{p}: {l}"));
            }
        }
    }
    out
}

fn ssh_keys(t: &dyn Tree, users: &[User]) -> Vec<SshKey> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut homes: Vec<(String, String)> = users.iter().map(|u| (u.name.clone(), u.home.clone())).collect();
    homes.sort();
    homes.dedup_by(|a, b| a.1 == b.1);
    for (user, home) in homes {
        if home.is_empty() || home == "/" || home.starts_with("/nonexistent") {
            continue;
        }
        for file in ["authorized_keys", "authorized_keys2"] {
            let path = format!("{}/.ssh/{file}", home.trim_end_matches('/'));
            for l in text(t, &path).unwrap_or_default().lines() {
                let l = l.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                // [options] type base64 [comment]: the key type is the first field that names one.
                let fields: Vec<&str> = l.split_whitespace().collect();
                let Some(i) = fields
                    .iter()
                    .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-") || f.starts_with("sk-"))
                else {
                    continue;
                };
                let Some(blob) =
                    fields.get(i + 1).and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                else {
                    continue;
                };
                let digest = ring::digest::digest(&ring::digest::SHA256, &blob);
                out.push(SshKey {
                    user: user.clone(),
                    path: path.clone(),
                    key_type: fields.get(i).unwrap_or(&"").to_string(),
                    comment: fields.get(i + 2..).map(|c| c.join(" ")).unwrap_or_default(),
                    fingerprint: format!(
                        "SHA256:{}",
                        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref())
                    ),
                });
            }
        }
    }
    out
}

fn crontabs(t: &dyn Tree) -> Vec<CronEntry> {
    // (path, per-user crontab of whom; None: a system crontab with a user field)
    let mut files: Vec<(String, Option<String>)> = vec![("/etc/crontab".into(), None)];
    for e in t.list("/etc/cron.d") {
        if e.kind == Kind::File {
            files.push((format!("/etc/cron.d/{}", e.name), None));
        }
    }
    // Debian keeps per-user crontabs in crontabs/, the RHEL family directly in cron/.
    for dir in ["/var/spool/cron/crontabs", "/var/spool/cron"] {
        for e in t.list(dir) {
            if e.kind == Kind::File {
                files.push((format!("{dir}/{}", e.name), Some(e.name.clone())));
            }
        }
    }
    let mut out = Vec::new();
    for (path, owner) in files {
        for l in text(t, &path).unwrap_or_default().lines() {
            let line = l.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            // An environment assignment (SHELL=/bin/sh, MAILTO="").
            if !first.starts_with('@') && first.contains('=') {
                continue;
            }
            let (schedule, rest) = if first.starts_with('@') {
                (first.to_string(), line.get(first.len()..).unwrap_or("").trim_start())
            } else {
                let f: Vec<&str> = line.splitn(6, char::is_whitespace).filter(|s| !s.is_empty()).collect();
                if f.len() < 6 {
                    continue;
                }
                (f.get(..5).unwrap_or_default().join(" "), *f.get(5).unwrap_or(&""))
            };
            let (user, command) = match &owner {
                Some(u) => (u.clone(), rest.to_string()),
                None => {
                    let (u, c) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    (u.to_string(), c.trim_start().to_string())
                }
            };
            out.push(CronEntry {
                path: path.clone(),
                user,
                line: line.to_string(),
                schedule,
                command,
                next_runs: Vec::new(),
            });
        }
    }
    out
}

fn enabled_units(t: &dyn Tree) -> Vec<String> {
    let mut out = Vec::new();
    for e in t.list("/etc/systemd/system") {
        if e.kind == Kind::Dir && (e.name.ends_with(".wants") || e.name.ends_with(".requires")) {
            for u in t.list(&format!("/etc/systemd/system/{}", e.name)) {
                out.push(format!("{} ({})", u.name, e.name));
            }
        }
    }
    out.sort();
    out
}

/// An enabled systemd timer and what it starts.
#[derive(Debug, Serialize)]
pub struct Timer {
    pub name: String,
    /// Where its unit file was read.
    pub path: String,
    /// Its `OnCalendar=`, `OnBootSec=`, `OnStartupSec=`, `OnActiveSec=`, `OnUnitActiveSec=`
    /// and `OnUnitInactiveSec=` settings, as written.
    pub schedule: Vec<String>,
    /// The unit it starts (`Unit=`, else the timer's own name as a service).
    pub unit: String,
    /// That service's `ExecStart=` lines, if its unit file is in the image.
    pub exec_start: Vec<String>,
}

/// Where systemd looks for unit files, the administrator's first.
const UNIT_DIRS: [&str; 3] = ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// The `Key=value` settings of `section` in the unit file `name`, and where it was read.
fn unit_settings(t: &dyn Tree, name: &str, section: &str) -> Option<(String, Vec<(String, String)>)> {
    let (path, text) = UNIT_DIRS.iter().find_map(|d| {
        let p = format!("{d}/{name}");
        text(t, &p).map(|s| (p, s))
    })?;
    let mut current = String::new();
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        if l.starts_with('[') {
            current = l.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if current == section && !l.starts_with('#') && !l.starts_with(';') {
            if let Some((k, v)) = l.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    Some((path, out))
}

/// The timers among the enabled units (`NAME.timer (timers.target.wants)`), read from their
/// unit files.
fn timers(t: &dyn Tree, enabled: &[String]) -> Vec<Timer> {
    const WHEN: [&str; 6] =
        ["OnCalendar", "OnBootSec", "OnStartupSec", "OnActiveSec", "OnUnitActiveSec", "OnUnitInactiveSec"];
    let mut names: Vec<&str> =
        enabled.iter().filter_map(|u| u.split(' ').next()).filter(|n| n.ends_with(".timer")).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let Some((path, settings)) = unit_settings(t, name, "Timer") else { continue };
        let schedule =
            settings.iter().filter(|(k, _)| WHEN.contains(&k.as_str())).map(|(k, v)| format!("{k}={v}")).collect();
        let unit = settings
            .iter()
            .find(|(k, _)| k == "Unit")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| name.trim_end_matches(".timer").to_string() + ".service");
        let exec_start = unit_settings(t, &unit, "Service")
            .map(|(_, s)| s.into_iter().filter(|(k, _)| k == "ExecStart").map(|(_, v)| v).collect())
            .unwrap_or_default();
        out.push(Timer { name: name.to_string(), path, schedule, unit, exec_start });
    }
    out
}

fn histories(t: &dyn Tree, users: &[User]) -> Vec<History> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for u in users {
        if u.home.is_empty() || u.home == "/" || seen.contains(&u.home) {
            continue;
        }
        seen.push(u.home.clone());
        for file in
            [".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".python_history", ".mysql_history"]
        {
            let path = format!("{}/{file}", u.home.trim_end_matches('/'));
            let Some(s) = text(t, &path) else { continue };
            let lines: Vec<&str> = s.lines().collect();
            let last = lines.iter().skip(lines.len().saturating_sub(HISTORY_TAIL)).map(|l| l.to_string()).collect();
            out.push(History { user: u.name.clone(), path, lines: lines.len(), last });
        }
    }
    out
}

/// What a file's first bytes say it is, for the media formats the use case moves around.
/// (The memory carver passes over bytes no signature here begins with: a new signature's first
/// byte goes into `carve::BEGINS` too.)
pub fn media_format(b: &[u8]) -> Option<&'static str> {
    let at = |o: usize, m: &[u8]| b.get(o..o + m.len()) == Some(m);
    Some(if at(4, b"ftyp") {
        if at(8, b"qt  ") {
            "mov"
        } else {
            "mp4"
        }
    } else if at(0, b"FLV\x01") {
        "flv"
    } else if at(0, &[0x1a, 0x45, 0xdf, 0xa3]) {
        "matroska"
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        "png"
    } else if at(0, &[0xff, 0xd8, 0xff]) {
        "jpeg"
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        "gif"
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        "wav"
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        "avi"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "webp"
    } else if at(0, b"OggS") {
        "ogg"
    } else if at(0, b"ID3") {
        "mp3"
    } else if at(0, &[0x47]) && at(188, &[0x47]) && at(376, &[0x47]) {
        "mpeg-ts"
    } else {
        return None;
    })
}

/// An RFC 5322 message's headers, unfolded; `None` unless it has at least From and one of To or
/// Subject in a header block (mail in an outbox, not any text file).
pub fn mail_headers(b: &[u8]) -> Option<BTreeMap<String, String>> {
    let head_end = b.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| b.windows(2).position(|w| w == b"\n\n"))?;
    let head = String::from_utf8_lossy(b.get(..head_end)?);
    let mut h: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for l in head.lines() {
        if l.starts_with(' ') || l.starts_with('\t') {
            if let Some(v) = last.as_ref().and_then(|k| h.get_mut(k)) {
                v.push(' ');
                v.push_str(l.trim());
            }
            continue;
        }
        // An mbox "From " separator line is not a header.
        if l.starts_with("From ") {
            continue;
        }
        let (k, v) = l.split_once(':')?;
        if k.is_empty() || k.contains(' ') {
            return None;
        }
        let k = k.to_ascii_lowercase();
        h.entry(k.clone()).or_insert_with(|| v.trim().to_string());
        last = Some(k);
    }
    (h.contains_key("from") && (h.contains_key("to") || h.contains_key("subject"))).then_some(h)
}

/// What an analyst reads of a message first: From, To, Subject, Message-ID and Date as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct MailHeaders {
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub date: Option<String>,
}

impl MailHeaders {
    /// The headers of `message`, if it is one ([`mail_headers`]).
    pub fn of(message: &[u8]) -> Option<MailHeaders> {
        let h = mail_headers(message)?;
        let get = |k: &str| h.get(k).cloned();
        Some(MailHeaders {
            from: get("from"),
            to: get("to"),
            subject: get("subject"),
            message_id: get("message-id"),
            date: get("date"),
        })
    }
}

/// A message waiting in an MTA's queue at `path`, as the MTA would deliver it: a Postfix queue
/// file, or an Exim `-H` file with its `-D` beside it. `None` for any other path.
pub fn queued_message(t: &dyn Tree, path: &str) -> Option<(&'static str, super::mailq::Queued)> {
    if super::mailq::is_postfix_queue(path) {
        let q = super::mailq::postfix(&t.read(path, MAX_FILE)?, MAX_FILE)?;
        return Some(("postfix", q));
    }
    if super::exim::is_exim_header_file(path) {
        let header = t.read(path, MAX_FILE)?;
        let data = t.read(&super::exim::data_file_path(path), MAX_FILE);
        return Some(("exim", super::exim::exim(&header, data.as_deref(), MAX_FILE)?));
    }
    None
}

/// Whether `path` is where an MTA queues mail ([`queued_message`] reads it).
pub fn is_queue_file(path: &str) -> bool {
    super::mailq::is_postfix_queue(path) || super::exim::is_exim_header_file(path)
}

/// One walk of the whole tree: media files, mail in users' mail directories and in spools, and
/// the most recently changed files.
/// A directory being walked, for the ones below it: what identifies it, what it lists (a
/// digest, once listed) and where it is.
struct Ancestor {
    id: Option<u64>,
    listing: std::cell::Cell<u64>,
    path: String,
    parent: Option<std::rc::Rc<Ancestor>>,
}

/// A digest of a directory's entries (names, kinds, sizes, times).
fn listing_digest(entries: &[Entry]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for e in entries {
        (&e.name, e.kind as u8, e.size, e.mtime, e.id).hash(&mut h);
    }
    h.finish()
}

fn walk(t: &dyn Tree, f: &mut Findings, deadline: std::time::Instant) {
    let root = std::rc::Rc::new(Ancestor { id: None, listing: Default::default(), path: "/".into(), parent: None });
    let mut stack: Vec<std::rc::Rc<Ancestor>> = vec![root];
    let mut visited = 0usize;
    let mut recent: Vec<Changed> = Vec::new();
    while let Some(here) = stack.pop() {
        let dir = here.path.as_str();
        let depth = std::iter::successors(here.parent.as_deref(), |a| a.parent.as_deref()).count();
        // Pseudo and volatile trees say nothing about the image's owner.
        if ["/proc", "/sys", "/dev", "/run"].contains(&dir) {
            continue;
        }
        let entries = t.list(dir);
        // A directory linked below itself (a hard link to a directory: no kernel makes one, a
        // hostile image can) is walked once: it is an ancestor again, the same inode listing
        // the same entries. (ext4's ids are metadata digests, which two directories made in
        // one second on a small volume can share: both must match.)
        let listing = listing_digest(&entries);
        here.listing.set(listing);
        let mut up = here.parent.as_deref();
        while let Some(a) = up.filter(|a| here.id.is_none() || a.id != here.id || a.listing.get() != listing) {
            up = a.parent.as_deref();
        }
        if let Some(a) = up {
            f.notes.push(format!("{dir}: the directory {} again (a directory cycle): not walked", a.path));
            continue;
        }
        for e in entries {
            visited += 1;
            if visited > MAX_ENTRIES {
                f.notes.push(format!("walk stopped after {MAX_ENTRIES} entries"));
                stack.clear();
                break;
            }
            // The clock is read every 256 entries: cheap, and a hostile tree cannot hold the
            // inspection past its time.
            if (visited == 1 || visited % 256 == 0) && std::time::Instant::now() >= deadline {
                f.notes.push(format!("time limit reached after {visited} entries: the walk stopped (media, mail and recent files are partial)"));
                stack.clear();
                break;
            }
            let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
            match e.kind {
                Kind::Dir => {
                    if depth + 1 >= MAX_DEPTH {
                        f.notes.push(format!("{path}: deeper than {MAX_DEPTH} levels, not walked"));
                    } else {
                        let listing = Default::default();
                        stack.push(std::rc::Rc::new(Ancestor { id: e.id, listing, path, parent: Some(here.clone()) }));
                    }
                }
                Kind::File => {
                    if let Some(mtime) = e.mtime {
                        recent.push(Changed { path: path.clone(), mtime, size: e.size });
                    }
                    if recent.len() > 4 * RECENT {
                        recent.sort_by(|a, b| b.mtime.cmp(&a.mtime).then_with(|| a.path.cmp(&b.path)));
                        recent.truncate(RECENT);
                    }
                    file(t, &path, &e, f);
                }
                Kind::Symlink | Kind::Other => {}
            }
        }
    }
    recent.sort_by(|a, b| b.mtime.cmp(&a.mtime).then_with(|| a.path.cmp(&b.path)));
    recent.truncate(RECENT);
    f.recently_changed = recent;
    f.media.sort_by(|a, b| a.path.cmp(&b.path));
    f.mail.sort_by(|a, b| a.path.cmp(&b.path));
}

/// Where mail waiting to go out (or kept) lives: users' mail directories and the MTA spools.
fn mail_place(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.contains("/mail/")
        || p.contains("/maildir/")
        || p.contains("/.mail/")
        || p.contains("/outbox")
        || p.starts_with("/var/spool/")
        || p.ends_with(".eml")
        || p.ends_with(".mbox")
}

fn file(t: &dyn Tree, path: &str, e: &Entry, f: &mut Findings) {
    if e.size == 0 {
        return;
    }
    // The system's own trees hold tens of thousands of packaged files (icons, documentation):
    // only those large enough to be a video or a photo worth hiding there are opened.
    const SYSTEM: [&str; 9] =
        ["/usr/", "/lib/", "/lib64/", "/lib32/", "/boot/", "/etc/", "/bin/", "/sbin/", "/var/lib/"];
    let system = SYSTEM.iter().any(|s| path.starts_with(s));
    if system && e.size < SYSTEM_MEDIA_MIN {
        f.system_files_skipped += 1;
        return;
    }
    let Some(head) = t.read(path, 4096) else { return };
    if let Some(format) = media_format(&head) {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let n = t.stream(path, MAX_HASHED, &mut |b| ctx.update(b));
        if n < e.size {
            f.notes.push(format!("{path}: {} bytes, hashed the first {n}", e.size));
        }
        f.media.push(Media { path: path.to_string(), format, size: e.size, sha256: hex::encode(ctx.finish()) });
        return;
    }
    if is_queue_file(path) && e.size <= MAX_FILE as u64 {
        let Some((mta, q)) = queued_message(t, path) else { return };
        let Some(headers) = MailHeaders::of(&q.message) else { return };
        f.mail.push(Mail {
            path: path.to_string(),
            headers,
            size: q.message.len() as u64,
            sha256: sha256_hex(&q.message),
            queue: Some(QueueInfo { mta, sender: q.sender, recipients: q.recipients, arrived: q.arrived }),
        });
        return;
    }
    if mail_place(path) && e.size <= MAX_FILE as u64 {
        let Some(body) = t.read(path, MAX_FILE) else { return };
        let messages = if body.starts_with(b"From ") { mbox_messages(&body) } else { vec![body.as_slice()] };
        let several = messages.len() > 1;
        for (i, m) in messages.into_iter().enumerate() {
            let Some(headers) = MailHeaders::of(m) else { continue };
            f.mail.push(Mail {
                // A message of an mbox (a client's "Unsent Messages") is named by its place.
                path: if several { format!("{path}#{}", i + 1) } else { path.to_string() },
                headers,
                size: m.len() as u64,
                sha256: sha256_hex(m),
                queue: None,
            });
        }
    }
}

/// The messages of an mbox: what lies between its `From ` separator lines, less the blank line
/// that ends each message.
pub fn mbox_messages(b: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut at = 0usize;
    while at < b.len() {
        let line_end = b.get(at..).and_then(|r| r.iter().position(|c| *c == b'\n')).map_or(b.len(), |p| at + p + 1);
        if b.get(at..).is_some_and(|r| r.starts_with(b"From ")) && (at == 0 || b.get(at - 1) == Some(&b'\n')) {
            starts.push((at, line_end));
        }
        at = line_end;
    }
    let mut out = Vec::new();
    for (i, &(_, body)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(b.len(), |(s, _)| *s);
        let mut m = b.get(body..end).unwrap_or_default();
        if starts.get(i + 1).is_some() || m.ends_with(b"\n\n") {
            m = m.strip_suffix(b"\n").unwrap_or(m);
        }
        out.push(m);
    }
    out
}

/// Fills in when each crontab entry runs for a VM started at `started` (three runs each; one
/// for `@reboot`, delayed by a leading `sleep`). Times are UTC: cron uses the VM's zone
/// ([`Findings::timezone`]), the same as UTC only when that zone is.
pub fn plan(f: &mut Findings, started: chrono::DateTime<chrono::Utc>) {
    for c in &mut f.crontabs {
        if let Some(s) = super::cron::parse(&c.schedule, &c.command) {
            c.next_runs = super::cron::next_runs(&s, started, 3)
                .iter()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .collect();
        }
    }
}
