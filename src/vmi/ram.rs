//! Saved RAM: the VM state a qcow2 internal snapshot holds (`savevm`), which is QEMU's migration
//! stream, rebuilt into the guest's RAM blocks so that content spanning pages reads in order.
//!
//! The stream (QEMU `migration/savevm.c`, `migration/ram.c`): `QEVM`, version 3, then sections.
//! The RAM section comes first (it is iterable: a START, PARTs, an END, each a run of records
//! closed by an EOS flag and a section footer); device state follows in FULL sections whose
//! layout only the device knows, so reading stops after the RAM END. A record is a big-endian
//! u64: the page's offset in its block with flags in the low bits, the block's name unless
//! CONTINUE is set, then the payload: one fill byte for ZERO, the page's bytes for PAGE.
//! Compressed and XBZRLE pages (never used by `savevm`) end the reading with a note.

use std::collections::BTreeMap;

use super::disk::{check, Disk};

const MAGIC: u32 = 0x5145_564d;
const PAGE: u64 = 4096;
const FLAG_ZERO: u64 = 0x02;
const FLAG_MEM_SIZE: u64 = 0x04;
const FLAG_PAGE: u64 = 0x08;
const FLAG_EOS: u64 = 0x10;
const FLAG_CONTINUE: u64 = 0x20;
const FLAG_MULTIFD_FLUSH: u64 = 0x200;
const SECTION_START: u8 = 0x01;
const SECTION_PART: u8 = 0x02;
const SECTION_END: u8 = 0x03;
const SECTION_FOOTER: u8 = 0x7e;
/// RAM blocks listed at most.
const MAX_BLOCKS: usize = 256;
/// Where the RAM section's START is looked for (the configuration section precedes it).
const START_WINDOW: u64 = 1 << 16;

/// One RAM block of the guest (`pc.ram`, a ROM, video RAM...).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Block {
    pub name: String,
    pub size: u64,
    /// Page index -> offset of the page's bytes in the stream (pages absent are zero).
    #[serde(skip)]
    pages: BTreeMap<u64, u64>,
    /// Pages whose bytes the stream holds.
    pub pages_saved: u64,
}

/// The guest RAM a stream describes.
#[derive(Debug, Default, serde::Serialize)]
pub struct Ram {
    pub blocks: Vec<Block>,
    pub notes: Vec<String>,
}

/// Sequential big-endian reads over a [`Disk`].
struct Cursor<'a> {
    d: &'a mut dyn Disk,
    pos: u64,
}

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.d.read_at(self.pos, &mut v).ok()?;
        self.pos += n as u64;
        Some(v)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).and_then(|b| b.first().copied())
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
    }
    fn name(&mut self) -> Option<String> {
        let n = self.u8()?;
        self.bytes(usize::from(n)).map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// Whether `b` starts like a QEMU migration stream.
pub fn is_stream(b: &[u8]) -> bool {
    b.get(..4) == Some(&MAGIC.to_be_bytes()[..])
}

/// Reads the RAM of the migration stream in `d`.
pub fn parse(d: &mut dyn Disk) -> Ram {
    let mut ram = Ram::default();
    let size = d.size();
    let mut c = Cursor { d, pos: 0 };
    if c.u32() != Some(MAGIC) || c.u32() != Some(3) {
        ram.notes.push("not a QEMU migration stream (QEVM version 3)".into());
        return ram;
    }
    // The RAM section's START header: type, section id, "ram", instance, version.
    let window = size.min(START_WINDOW) as usize;
    let Some(head) = c.bytes(window.saturating_sub(8)) else {
        ram.notes.push("stream shorter than its header".into());
        return ram;
    };
    let Some(at) = head.windows(9).position(|w| w.first() == Some(&SECTION_START) && w.get(5..9) == Some(b"\x03ram"))
    else {
        ram.notes.push("no RAM section in the VM state".into());
        return ram;
    };
    let section = head.get(at + 1..at + 5).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
    c.pos = 8 + at as u64 + 9 + 8;
    let mut current: Option<usize> = None;
    loop {
        let Some(h) = c.u64() else {
            ram.notes.push(format!("VM state ends inside the RAM section at byte {}", c.pos));
            break;
        };
        let (addr, flags) = (h & !(PAGE - 1), h & (PAGE - 1));
        if flags & FLAG_MEM_SIZE != 0 {
            let mut listed = 0u64;
            while listed < addr && ram.blocks.len() < MAX_BLOCKS {
                let (Some(name), Some(len)) = (c.name(), c.u64()) else { break };
                listed = listed.saturating_add(len);
                ram.blocks.push(Block { name, size: len, pages: BTreeMap::new(), pages_saved: 0 });
            }
            continue;
        }
        if flags & (FLAG_ZERO | FLAG_PAGE) != 0 && flags & FLAG_CONTINUE == 0 {
            let Some(name) = c.name() else { break };
            current = ram.blocks.iter().position(|b| b.name == name);
            if current.is_none() {
                ram.notes.push(format!("page of unknown RAM block {name:?}: reading stops"));
                break;
            }
        }
        if flags & FLAG_ZERO != 0 {
            if c.u8().is_none() {
                break;
            }
            if let Some(b) = current.and_then(|i| ram.blocks.get_mut(i)) {
                b.pages.remove(&(addr / PAGE));
            }
        } else if flags & FLAG_PAGE != 0 {
            let at = c.pos;
            if check(at, PAGE as usize, size).is_err() {
                ram.notes.push("VM state ends inside a page".into());
                break;
            }
            c.pos += PAGE;
            if let Some(b) = current.and_then(|i| ram.blocks.get_mut(i)) {
                if addr < b.size {
                    b.pages.insert(addr / PAGE, at);
                }
            }
        } else if flags & FLAG_EOS != 0 {
            // The chunk's footer, then the next RAM chunk, or the end of RAM.
            if c.u8() == Some(SECTION_FOOTER) {
                c.pos += 4;
            } else {
                c.pos -= 1;
            }
            match c.u8() {
                Some(t @ (SECTION_PART | SECTION_END)) if c.u32() == Some(section) => {
                    let _ = t;
                }
                _ => break,
            }
        } else if flags & FLAG_MULTIFD_FLUSH != 0 || flags == 0 {
            continue;
        } else {
            ram.notes.push(format!("RAM record with flags {flags:#x} (compressed or XBZRLE): reading stops"));
            break;
        }
    }
    for b in &mut ram.blocks {
        b.pages_saved = b.pages.len() as u64;
    }
    ram
}

/// One RAM block as a [`Disk`]: saved pages read from the stream, the rest zeros.
pub struct BlockDisk<'a> {
    pub stream: &'a mut dyn Disk,
    pub block: &'a Block,
}

impl BlockDisk<'_> {
    /// Runs of consecutive saved pages, as (first byte, length) in the block.
    pub fn runs(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &p in self.block.pages.keys() {
            match out.last_mut() {
                Some((start, len)) if *start + *len == p * PAGE => *len += PAGE,
                _ => out.push((p * PAGE, PAGE)),
            }
        }
        out
    }
}

impl Disk for BlockDisk<'_> {
    fn size(&self) -> u64 {
        self.block.size
    }

    fn read_at(&mut self, mut offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        check(offset, buf.len(), self.block.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let in_page = offset % PAGE;
            let n = ((PAGE - in_page) as usize).min(buf.len() - done);
            let dst = buf.get_mut(done..done + n).unwrap_or_default();
            match self.block.pages.get(&(offset / PAGE)) {
                Some(at) => self.stream.read_at(at + in_page, dst)?,
                None => dst.fill(0),
            }
            done += n;
            offset += n as u64;
        }
        Ok(())
    }
}
