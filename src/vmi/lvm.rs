//! LVM2 physical volumes: their volume group's metadata, and each logical volume as a
//! [`Disk`] of its own (linear and single-stripe segments: what installers make).
//!
//! Written here: no maintained Rust crate reads LVM2 metadata from a byte view (the crates there
//! are drive the `lvm` tools or device-mapper). The on-disk format is small: a label
//! (`LABELONE`) in one of the first four sectors, a PV header naming the metadata area, a
//! metadata area header whose first location points at the current metadata text, and that
//! text, a configuration tree (`vg { logical_volumes { lv { segment1 { ... } } } }`). Every
//! size and offset is checked against the device; the text is read at most [`MAX_TEXT`] bytes.

use serde::Serialize;

use super::disk::{field, read_vec, Disk};

/// Metadata text read at most.
pub const MAX_TEXT: u64 = 1 << 20;
/// Logical volumes and segments kept at most.
const MAX_LVS: usize = 256;
const MAX_SEGMENTS: usize = 1024;
/// Nesting of the metadata's configuration tree at most.
const MAX_DEPTH: usize = 16;

/// One logical volume: where its extents are on this physical volume.
#[derive(Clone, Debug, Serialize)]
pub struct LogicalVolume {
    /// `vg/lv`.
    pub name: String,
    pub size: u64,
    /// (offset in the LV, offset on the PV, length), in bytes, in LV order.
    pub segments: Vec<(u64, u64, u64)>,
}

/// What a physical volume says.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VolumeGroup {
    pub name: String,
    pub extent_size: u64,
    /// Physical volumes the group spans (by their name in the metadata).
    pub physical_volumes: Vec<String>,
    pub logical_volumes: Vec<LogicalVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Whether `d` carries an LVM2 label; its sector.
pub fn label_sector(d: &mut dyn Disk) -> Option<u64> {
    (0..4u64).find(|s| {
        let mut b = [0u8; 32];
        d.read_at(s * 512, &mut b).is_ok() && b[..8] == *b"LABELONE" && b[24..32] == *b"LVM2 001"
    })
}

/// Reads the volume group a physical volume (the whole of `d`) belongs to.
pub fn read(d: &mut dyn Disk) -> Result<VolumeGroup, String> {
    let sector = label_sector(d).ok_or("no LVM2 label")?;
    let label = read_vec(d, sector * 512, 512).map_err(|e| e.to_string())?;
    let pvh_at = sector * 512 + u64::from(field::le32(&label, 20));
    // PV header: uuid[32], device size, then data areas and metadata areas, each a list of
    // (offset, size) ended by a zero entry.
    let pvh = read_vec(d, pvh_at, 512).map_err(|e| e.to_string())?;
    let mut at = 40usize;
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for list in &mut lists {
        loop {
            let (off, size) = (field::le64(&pvh, at), field::le64(&pvh, at + 8));
            at += 16;
            if off == 0 && size == 0 {
                break;
            }
            if at + 16 > pvh.len() {
                return Err("PV header: area lists run past its sector".into());
            }
            list.push((off, size));
        }
    }
    let (mda_off, mda_size) = *lists[1].first().ok_or("PV header: no metadata area")?;
    if mda_off.checked_add(mda_size).is_none_or(|e| e > d.size()) || mda_size < 1024 {
        return Err(format!("metadata area {mda_off}+{mda_size} outside the device"));
    }
    let mdah = read_vec(d, mda_off, 512).map_err(|e| e.to_string())?;
    if mdah.get(4..20) != Some(b" LVM2 x[5A%r0N*>") {
        return Err("metadata area header: bad magic".into());
    }
    // raw_locn[0]: the current metadata, at an offset in the area; it wraps after the end
    // of the area to just past the header.
    let (text_off, text_size) = (field::le64(&mdah, 40), field::le64(&mdah, 48));
    if text_size == 0 || text_off >= mda_size || text_off < 512 {
        return Err("metadata area: no current metadata".into());
    }
    let size = text_size.min(MAX_TEXT);
    let first = size.min(mda_size - text_off);
    let mut text = read_vec(d, mda_off + text_off, first as usize).map_err(|e| e.to_string())?;
    if first < size {
        let rest = (size - first).min(mda_size - 512);
        text.extend(read_vec(d, mda_off + 512, rest as usize).map_err(|e| e.to_string())?);
    }
    let text = String::from_utf8_lossy(text.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    let tree = parse(&text)?;
    volume_group(&tree, d.size())
}

/// A value of the metadata's configuration tree.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Int(i64),
    Str(String),
    List(Vec<Value>),
    Section(Vec<(String, Value)>),
}

impl Value {
    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Section(v) => v.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }
    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn sections(&self) -> impl Iterator<Item = (&String, &Value)> {
        let v: &[(String, Value)] = match self {
            Value::Section(v) => v,
            _ => &[],
        };
        v.iter().filter(|(_, v)| matches!(v, Value::Section(_))).map(|(k, v)| (k, v))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Int(i64),
    Sym(char),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut it = text.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if c == '#' {
            while it.next().is_some_and(|c| c != '\n') {}
        } else if c == '"' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    Some('"') => break,
                    Some('\\') => s.extend(it.next()),
                    Some(c) => s.push(c),
                    None => return Err("metadata: unterminated string".into()),
                }
            }
            out.push(Token::Str(s));
        } else if "{}[]=,".contains(c) {
            out.push(Token::Sym(c));
            it.next();
        } else {
            let mut w = String::new();
            while let Some(&c) = it.peek() {
                if c.is_whitespace() || "{}[]=,#\"".contains(c) {
                    break;
                }
                w.push(c);
                it.next();
            }
            out.push(match w.parse::<i64>() {
                Ok(n) => Token::Int(n),
                Err(_) => Token::Word(w),
            });
        }
    }
    Ok(out)
}

/// The metadata text as a tree: `key = value` and `name { ... }` at the top level.
fn parse(text: &str) -> Result<Value, String> {
    let toks = tokens(text)?;
    let mut at = 0usize;
    let v = section(&toks, &mut at, 0)?;
    Ok(v)
}

fn section(t: &[Token], at: &mut usize, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("metadata: nested too deep".into());
    }
    let mut out = Vec::new();
    while let Some(tok) = t.get(*at) {
        match tok {
            Token::Sym('}') => {
                *at += 1;
                return Ok(Value::Section(out));
            }
            Token::Word(k) => {
                *at += 1;
                match t.get(*at) {
                    Some(Token::Sym('{')) => {
                        *at += 1;
                        out.push((k.clone(), section(t, at, depth + 1)?));
                    }
                    Some(Token::Sym('=')) => {
                        *at += 1;
                        out.push((k.clone(), value(t, at)?));
                    }
                    _ => return Err(format!("metadata: `{k}` is neither a section nor a setting")),
                }
            }
            other => return Err(format!("metadata: unexpected {other:?}")),
        }
    }
    Ok(Value::Section(out))
}

fn value(t: &[Token], at: &mut usize) -> Result<Value, String> {
    let tok = t.get(*at).ok_or("metadata: a setting without a value")?;
    *at += 1;
    Ok(match tok {
        Token::Int(n) => Value::Int(*n),
        Token::Str(s) | Token::Word(s) => Value::Str(s.clone()),
        Token::Sym('[') => {
            let mut items = Vec::new();
            loop {
                match t.get(*at) {
                    Some(Token::Sym(']')) => {
                        *at += 1;
                        break;
                    }
                    Some(Token::Sym(',')) => *at += 1,
                    Some(_) => items.push(value(t, at)?),
                    None => return Err("metadata: unterminated list".into()),
                }
            }
            Value::List(items)
        }
        other => return Err(format!("metadata: unexpected {other:?} as a value")),
    })
}

fn volume_group(tree: &Value, device: u64) -> Result<VolumeGroup, String> {
    let (name, vg) = tree.sections().next().ok_or("metadata: no volume group")?;
    let sector = 512u64;
    let extent = vg.int("extent_size").filter(|n| *n > 0).ok_or("metadata: no extent_size")? as u64 * sector;
    let mut g = VolumeGroup { name: name.clone(), extent_size: extent, ..VolumeGroup::default() };
    let mut pe_start = std::collections::BTreeMap::new();
    if let Some(pvs) = vg.get("physical_volumes") {
        for (pv, v) in pvs.sections() {
            g.physical_volumes.push(pv.clone());
            pe_start.insert(pv.clone(), v.int("pe_start").unwrap_or(0).max(0) as u64 * sector);
        }
    }
    if g.physical_volumes.len() > 1 {
        g.notes.push(format!(
            "the group spans {} physical volumes: only extents on this one are read",
            g.physical_volumes.len()
        ));
    }
    // This device is the group's only PV, or (several) the first listed: the label does not
    // say which by name, so a multi-PV group's volumes are read only where they lie on pv0.
    let this = g.physical_volumes.first().cloned().unwrap_or_default();
    let Some(lvs) = vg.get("logical_volumes") else { return Ok(g) };
    for (lv_name, lv) in lvs.sections().take(MAX_LVS) {
        let mut lvol = LogicalVolume { name: format!("{name}/{lv_name}"), size: 0, segments: Vec::new() };
        let mut whole = true;
        for (_, seg) in lv.sections().take(MAX_SEGMENTS) {
            let (Some(start), Some(count)) = (seg.int("start_extent"), seg.int("extent_count")) else { continue };
            let kind = seg.str("type").unwrap_or("");
            let stripes = match seg.get("stripes") {
                Some(Value::List(s)) => s.clone(),
                _ => Vec::new(),
            };
            if kind != "striped" || stripes.len() != 2 {
                g.notes.push(format!(
                    "{}: a {kind:?} segment with {} stripes is not read",
                    lvol.name,
                    stripes.len() / 2
                ));
                whole = false;
                continue;
            }
            let (Value::Str(pv), Value::Int(pe)) = (&stripes[0], &stripes[1]) else { continue };
            if *pv != this {
                whole = false;
                continue;
            }
            let (start, count, pe) = (start.max(0) as u64, count.max(0) as u64, (*pe).max(0) as u64);
            let base = pe_start.get(pv).copied().unwrap_or(0);
            let (Some(lv_off), Some(pv_off), Some(len)) = (
                start.checked_mul(extent),
                pe.checked_mul(extent).and_then(|o| o.checked_add(base)),
                count.checked_mul(extent),
            ) else {
                continue;
            };
            if pv_off.checked_add(len).is_none_or(|e| e > device) {
                g.notes.push(format!("{}: a segment lies past the end of the device", lvol.name));
                whole = false;
                continue;
            }
            lvol.segments.push((lv_off, pv_off, len));
            lvol.size = lvol.size.max(lv_off + len);
        }
        lvol.segments.sort();
        if !whole {
            g.notes.push(format!("{}: not every segment is on this volume; the rest reads as zeros", lvol.name));
        }
        g.logical_volumes.push(lvol);
    }
    Ok(g)
}

/// A logical volume as a [`Disk`]: its segments, over the physical volume.
pub struct Volume<D: Disk> {
    pub pv: D,
    pub lv: LogicalVolume,
}

impl<D: Disk> Disk for Volume<D> {
    fn size(&self) -> u64 {
        self.lv.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|e| *e <= self.lv.size);
        if end.is_none() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the logical volume"));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let seg = self.lv.segments.iter().find(|(l, _, n)| at >= *l && at < l + n).copied();
            let out = buf.get_mut(done..).unwrap_or_default();
            match seg {
                Some((l, p, n)) => {
                    let k = ((l + n - at) as usize).min(out.len());
                    self.pv.read_at(p + (at - l), out.get_mut(..k).unwrap_or_default())?;
                    done += k;
                }
                None => {
                    // A hole (a segment elsewhere): zeros up to the next segment.
                    let next = self.lv.segments.iter().map(|(l, _, _)| *l).filter(|l| *l > at).min();
                    let k = next.map_or(out.len(), |n| ((n - at) as usize).min(out.len()));
                    out.get_mut(..k).unwrap_or_default().fill(0);
                    done += k;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_text_parses_into_segments() {
        let text = r#"vgj {
id = "abc"
seqno = 4
extent_size = 2048 # 1 MiB
physical_volumes {
pv0 {
id = "x"
device = "/dev/loop0"
pe_start = 2048
pe_count = 62
}
}
logical_volumes {
root {
segment_count = 2
segment1 {
start_extent = 0
extent_count = 8
type = "striped"
stripe_count = 1
stripes = [
"pv0", 0
]
}
segment2 {
start_extent = 8
extent_count = 8
type = "striped"
stripe_count = 1
stripes = [
"pv0", 12
]
}
}
}
}
"#;
        let g = volume_group(&parse(text).unwrap(), 64 << 20).unwrap();
        assert_eq!(g.name, "vgj");
        let lv = &g.logical_volumes[0];
        assert_eq!(lv.name, "vgj/root");
        let mb = 1u64 << 20;
        assert_eq!(lv.segments, vec![(0, mb, 8 * mb), (8 * mb, mb + 12 * mb, 8 * mb)]);
        // Hostile: unterminated, too deep, a segment past the device.
        assert!(parse("vg { a = \"x").is_err());
        assert!(parse(&"a {".repeat(100)).is_err());
        let g = volume_group(&parse(text).unwrap(), 4 << 20).unwrap();
        assert!(g.logical_volumes[0].segments.is_empty() && !g.notes.is_empty());
    }
}
