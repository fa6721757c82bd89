//! How the kernel shares an interface's frames out between the capture workers' rings.
//!
//! Workers capture one interface by joining one `PACKET_FANOUT` group; the group's mode decides
//! which member's ring each frame goes to. Two modes are offered ([`Fanout`]):
//!
//! - **`FlowHash`** (`PACKET_FANOUT_HASH`): the kernel's symmetric flow hash of the outermost
//!   headers. Both directions of a plain TCP/UDP flow meet, but a VXLAN overlay does not: a VTEP
//!   picks each packet's outer UDP source port from a hash of the frame it carries (RFC 7348
//!   §5), so the two directions of one VM's connection travel under two unrelated outer
//!   5-tuples and land in two rings. Their frames then reach the pipeline through two capture
//!   threads, interleaved in an order the wire never had.
//! - **`InnerPair`** (`PACKET_FANOUT_CBPF`, the default): a classic BPF program ([`program`])
//!   run by the kernel on every frame picks the ring from the innermost IP address pair, taken
//!   in either order, looking through VXLAN (UDP port 4789, over IPv4 or IPv6, carrying IPv4
//!   or IPv6): the same key the pipeline's workers are sharded by (`pipeline::shard`), so both
//!   directions of a VM's connection, and an FTP session's control and data connections, come
//!   through one ring and one capture thread, in wire order.
//!
//! Classic BPF rather than eBPF: it needs no verifier-friendly toolchain, no `bpf()` syscall and
//! no capability beyond the CAP_NET_RAW the rings need, and it is enough for fixed-offset header
//! walks. A frame the program cannot read (not IP, truncated, IPv6 extension headers before
//! the UDP header) goes by the outer pair, or to ring 0 when it has none, as the pipeline's
//! dispatch sends undecodable frames to worker 0; IPv4 fragments are reassembled by the kernel
//! before the program runs (`PACKET_FANOUT_FLAG_DEFRAG`).
//!
//! The program reads the packet relative to its network header (`SKF_NET_OFF`) and the
//! ethertype from the socket buffer (`SKF_AD_PROTOCOL`), so a VLAN tag the NIC or the kernel
//! stripped does not shift it. The kernel takes its result modulo the group's size.

use libc::sock_filter;

/// Which member of a fanout group gets a frame.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Fanout {
    /// The kernel's symmetric flow hash of the outermost headers (`PACKET_FANOUT_HASH`).
    FlowHash,
    /// The innermost IP address pair, through VXLAN ([`program`], `PACKET_FANOUT_CBPF`).
    #[default]
    InnerPair,
}

/// The VXLAN port (IANA; RFC 7348).
const VXLAN_PORT: u32 = 4789;

// Loads relative to the network header, and of the socket buffer's protocol: offsets the kernel
// resolves (they are negative as i32, hence the wrapping casts).
const NET: u32 = libc::SKF_NET_OFF as u32;
const PROTOCOL: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const LD_H_ABS: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_ABS;
const LD_B_ABS: u32 = libc::BPF_LD | libc::BPF_B | libc::BPF_ABS;
const LD_W_IND: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_IND;
const LD_H_IND: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_IND;
const LD_IMM: u32 = libc::BPF_LD | libc::BPF_IMM;
const LD_MEM: u32 = libc::BPF_LD | libc::BPF_MEM;
const LDX_MEM: u32 = libc::BPF_LDX | libc::BPF_MEM;
const ST: u32 = libc::BPF_ST;
const TAX: u32 = libc::BPF_MISC | libc::BPF_TAX;
const AND_K: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;
const LSH_K: u32 = libc::BPF_ALU | libc::BPF_LSH | libc::BPF_K;
const RSH_K: u32 = libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K;
const ADD_X: u32 = libc::BPF_ALU | libc::BPF_ADD | libc::BPF_X;
const MUL_K: u32 = libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K;
const XOR_X: u32 = libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const JA: u32 = libc::BPF_JMP | libc::BPF_JA;
const RET_A: u32 = libc::BPF_RET | libc::BPF_A;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;

/// Scratch words: the running sum, and the outer IPv4 header's length (the base of indirect
/// loads, which the sum would otherwise clobber in X).
const SUM: u32 = 0;
const BASE: u32 = 1;

/// A small assembler: instructions with symbolic jump targets, resolved by [`Asm::finish`].
#[derive(Default)]
struct Asm {
    insns: Vec<(u32, u32, &'static str, &'static str)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    fn op(&mut self, code: u32, k: u32) {
        self.insns.push((code, k, "", ""));
    }
    /// A conditional jump; `""` is the next instruction.
    fn jump(&mut self, code: u32, k: u32, on_true: &'static str, on_false: &'static str) {
        self.insns.push((code, k, on_true, on_false));
    }
    /// An unconditional jump (its offset is in `k`).
    fn goto(&mut self, label: &'static str) {
        self.insns.push((JA, 0, label, ""));
    }
    fn label(&mut self, name: &'static str) {
        self.labels.push((name, self.insns.len()));
    }
    /// A += the word at `k` (indirect from the IPv4 base when `indirect`), kept in M[SUM].
    fn add_word(&mut self, k: u32, indirect: bool) {
        if indirect {
            self.op(LDX_MEM, BASE);
            self.op(LD_W_IND, k);
        } else {
            self.op(LD_W_ABS, k);
        }
        self.op(LDX_MEM, SUM);
        self.op(ADD_X, 0);
        self.op(ST, SUM);
    }
    /// M[SUM] = the sum of `words` 32-bit words from `k` on; then to the mix.
    fn sum_words(&mut self, k: u32, words: u32, indirect: bool) {
        self.op(LD_IMM, 0);
        self.op(ST, SUM);
        for i in 0..words {
            self.add_word(k.wrapping_add(4 * i), indirect);
        }
        self.goto("mix");
    }

    fn finish(self) -> Vec<sock_filter> {
        let at = |name: &str, from: usize| -> u32 {
            if name.is_empty() {
                return 0;
            }
            let to = self.labels.iter().find(|(l, _)| *l == name).map(|(_, i)| *i);
            let to = to.unwrap_or_else(|| unreachable!("fanout program: no label {name}"));
            // Jumps are forward, relative to the next instruction.
            u32::try_from(to - from - 1).unwrap_or_else(|_| unreachable!("fanout program: jump too far"))
        };
        self.insns
            .iter()
            .enumerate()
            .map(|(i, &(code, k, t, f))| {
                if code == JA {
                    return sock_filter { code: code as u16, jt: 0, jf: 0, k: at(t, i) };
                }
                let (jt, jf) = (at(t, i), at(f, i));
                let byte = |v: u32| u8::try_from(v).unwrap_or_else(|_| unreachable!("fanout program: jump over 255"));
                sock_filter { code: code as u16, jt: byte(jt), jf: byte(jf), k }
            })
            .collect()
    }
}

/// The classic BPF program of [`Fanout::InnerPair`]: returns a hash of the sum of the innermost
/// source and destination addresses (a sum, so the same in either direction).
///
/// The layouts it reads: outer IPv4 (any header length) or IPv6 (UDP as the first next
/// header); UDP to port 4789; the 8-byte VXLAN header; an untagged inner Ethernet header; an
/// inner IPv4 or IPv6 header.
pub fn program() -> Vec<sock_filter> {
    let mut a = Asm::default();
    a.op(LD_H_ABS, PROTOCOL);
    a.jump(JEQ_K, 0x0800, "v4", "");
    a.jump(JEQ_K, 0x86dd, "v6", "none");

    // Outer IPv4: VXLAN only in an unfragmented UDP datagram to 4789.
    a.label("v4");
    a.op(LD_B_ABS, NET + 9);
    a.jump(JEQ_K, 17, "", "v4pair");
    a.op(LD_H_ABS, NET + 6);
    a.jump(JSET_K, 0x1fff, "v4pair", "");
    a.op(LD_B_ABS, NET);
    a.op(AND_K, 0x0f);
    a.op(LSH_K, 2);
    a.op(ST, BASE);
    a.op(TAX, 0);
    // X = the IPv4 header's length: UDP at NET + X, VXLAN at + 8, inner Ethernet at + 16.
    a.op(LD_H_IND, NET + 2);
    a.jump(JEQ_K, VXLAN_PORT, "", "v4pair");
    a.op(LD_H_IND, NET + 16 + 12);
    a.jump(JEQ_K, 0x0800, "v4in4", "");
    a.jump(JEQ_K, 0x86dd, "v4in6", "v4pair");
    a.label("v4in4");
    a.sum_words(NET + 16 + 14 + 12, 2, true);
    a.label("v4in6");
    a.sum_words(NET + 16 + 14 + 8, 8, true);
    a.label("v4pair");
    a.sum_words(NET + 12, 2, false);

    // Outer IPv6: UDP straight after the fixed header.
    a.label("v6");
    a.op(LD_B_ABS, NET + 6);
    a.jump(JEQ_K, 17, "", "v6pair");
    a.op(LD_H_ABS, NET + 40 + 2);
    a.jump(JEQ_K, VXLAN_PORT, "", "v6pair");
    a.op(LD_H_ABS, NET + 40 + 16 + 12);
    a.jump(JEQ_K, 0x0800, "v6in4", "");
    a.jump(JEQ_K, 0x86dd, "v6in6", "v6pair");
    a.label("v6in4");
    a.sum_words(NET + 40 + 16 + 14 + 12, 2, false);
    a.label("v6in6");
    a.sum_words(NET + 40 + 16 + 14 + 8, 8, false);
    a.label("v6pair");
    a.sum_words(NET + 8, 8, false);

    // The kernel keeps the remainder by the group's size, the lowest bits: a sum's lowest bits
    // follow the addresses' lowest bits alone (and pairs of one pattern, such as a.b.c.n with
    // a.b.d.m+5n, would all land in one ring). Fold the high half in, multiply by an odd
    // constant (2^32 / phi: Knuth's multiplicative hash) and keep the product's high half,
    // which every bit of the sum moves.
    a.label("mix");
    a.op(LD_MEM, SUM);
    a.op(TAX, 0);
    a.op(RSH_K, 16);
    a.op(XOR_X, 0);
    a.op(MUL_K, 0x9e37_79b1);
    a.op(RSH_K, 16);
    a.op(RET_A, 0);
    a.label("none");
    a.op(RET_K, 0);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instructions the program uses, run as the kernel runs them over a frame whose
    /// network header starts at `net` (a test of the offsets, not of the kernel: the capture
    /// tests run the program in the kernel).
    fn run(prog: &[sock_filter], frame: &[u8], net: usize, ethertype: u16) -> Option<u32> {
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let load = |off: u32, size: usize| -> Option<u32> {
            let off = if off >= NET { net + off.wrapping_sub(NET) as usize } else { off as usize };
            let b = frame.get(off..off + size)?;
            Some(b.iter().fold(0u32, |v, &c| (v << 8) | u32::from(c)))
        };
        let mut pc = 0;
        loop {
            let i = prog.get(pc)?;
            pc += 1;
            let code = u32::from(i.code);
            match code {
                LD_H_ABS if i.k == PROTOCOL => a = u32::from(ethertype),
                LD_W_ABS => a = load(i.k, 4)?,
                LD_H_ABS => a = load(i.k, 2)?,
                LD_B_ABS => a = load(i.k, 1)?,
                LD_W_IND => a = load(i.k.wrapping_add(x), 4)?,
                LD_H_IND => a = load(i.k.wrapping_add(x), 2)?,
                LD_IMM => a = i.k,
                LD_MEM => a = mem[i.k as usize],
                LDX_MEM => x = mem[i.k as usize],
                ST => mem[i.k as usize] = a,
                TAX => x = a,
                AND_K => a &= i.k,
                LSH_K => a <<= i.k,
                RSH_K => a >>= i.k,
                ADD_X => a = a.wrapping_add(x),
                MUL_K => a = a.wrapping_mul(i.k),
                XOR_X => a ^= x,
                JA => pc += i.k as usize,
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JSET_K => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                RET_A => return Some(a),
                RET_K => return Some(i.k),
                other => panic!("instruction {other:#x} not interpreted"),
            }
        }
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ihl_words: u8, payload: &[u8]) -> Vec<u8> {
        let hl = usize::from(ihl_words) * 4;
        let mut h = vec![0u8; hl];
        h[0] = 0x40 | ihl_words;
        h[9] = proto;
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        h.extend_from_slice(payload);
        h
    }

    fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[6] = next;
        h[8..24].copy_from_slice(&src);
        h[24..40].copy_from_slice(&dst);
        h.extend_from_slice(payload);
        h
    }

    fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&0xc000u16.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(payload);
        u
    }

    fn vxlan(inner_type: u16, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![0x08, 0, 0, 0, 0, 0x13, 0x89, 0];
        v.extend_from_slice(&[0u8; 12]);
        v.extend_from_slice(&inner_type.to_be_bytes());
        v.extend_from_slice(inner);
        v
    }

    fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 12];
        e.extend_from_slice(&ethertype.to_be_bytes());
        e.extend_from_slice(payload);
        e
    }

    fn pick(frame: &[u8]) -> u32 {
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        run(&program(), frame, 14, ethertype).expect("the program returns")
    }

    #[test]
    fn both_directions_meet_through_vxlan_and_the_key_is_the_inner_pair() {
        let (vm, peer) = ([10, 0, 0, 5], [10, 0, 1, 9]);
        let tcp = [0u8; 20];
        let inner = |s, d| ipv4(s, d, 6, 5, &tcp);
        // Outer source ports differ by direction, as a VTEP picks them.
        let over4 = |s, d, ihl| {
            ether(0x0800, &ipv4([192, 0, 2, 1], [192, 0, 2, 2], 17, ihl, &udp(4789, &vxlan(0x0800, &inner(s, d)))))
        };
        let there = pick(&over4(vm, peer, 5));
        assert_eq!(pick(&over4(peer, vm, 5)), there);
        // The key is the inner pair: the same pair sent plain, or over IPv4 with options, or
        // over an IPv6 underlay, picks the same; another inner pair another value.
        assert_eq!(pick(&ether(0x0800, &inner(vm, peer))), there);
        assert_eq!(pick(&over4(peer, vm, 7)), there);
        let v6u = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let v6v = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let over6 = ether(0x86dd, &ipv6(v6u, v6v, 17, &udp(4789, &vxlan(0x0800, &inner(peer, vm)))));
        assert_eq!(pick(&over6), there);
        assert_ne!(pick(&over4([10, 0, 0, 6], peer, 5)), there);
    }

    #[test]
    fn ipv6_inside_and_plain_pairs_and_what_cannot_be_read() {
        let a = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let b = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
        let inner = |s, d| ipv6(s, d, 6, &[0u8; 20]);
        let over4 = |s, d| {
            ether(0x0800, &ipv4([192, 0, 2, 1], [192, 0, 2, 2], 17, 5, &udp(4789, &vxlan(0x86dd, &inner(s, d)))))
        };
        assert_eq!(pick(&over4(a, b)), pick(&over4(b, a)));
        assert_eq!(pick(&over4(a, b)), pick(&ether(0x86dd, &inner(b, a))));
        // Plain UDP (not VXLAN) goes by its own pair, symmetric too.
        let plain = |s, d| ether(0x0800, &ipv4(s, d, 17, 5, &udp(53, &[0u8; 8])));
        assert_eq!(pick(&plain([192, 0, 2, 7], [8, 8, 8, 8])), pick(&plain([8, 8, 8, 8], [192, 0, 2, 7])));
        // Not IP: ring 0. A VXLAN frame cut short: the kernel ends the program (ring 0); here the
        // interpreter says it could not read.
        assert_eq!(pick(&ether(0x0806, &[0u8; 28])), 0);
        let cut = over4(a, b);
        assert_eq!(run(&program(), &cut[..60], 14, 0x0800), None);
    }

    #[test]
    fn patterned_pairs_spread_over_two_and_four_rings() {
        // VMs 10.0.0.10.. talking to peers 10.0.1.100 + 5 * (n % 10): pairs whose plain sums
        // all have the same lowest bit.
        let picks: Vec<u32> = (0..40u8)
            .map(|p| {
                let inner = ipv4([10, 0, 0, 10 + p], [10, 0, 1, 100 + (p % 10) * 5], 6, 5, &[0u8; 20]);
                pick(&ether(0x0800, &inner))
            })
            .collect();
        for rings in [2, 4] {
            let mut per = vec![0; rings as usize];
            for v in &picks {
                per[(v % rings) as usize] += 1;
            }
            assert!(per.iter().all(|&n| n >= 40 / rings as usize / 3), "{rings} rings: {per:?}");
        }
    }

    #[test]
    fn the_program_fits_the_kernels_limits() {
        let p = program();
        assert!(p.len() < libc::BPF_MAXINSNS as usize, "{} instructions", p.len());
        assert_eq!(u32::from(p.last().unwrap().code), RET_K);
    }
}
