//! Hand-built headers (RFC layouts written out byte by byte) for the decode tests.

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const MAC_C: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
pub const MAC_D: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0d];

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Ethernet II: dst, src, ethertype.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    cat(&[&dst, &src, &ethertype.to_be_bytes(), payload])
}

/// An 802.1Q/802.1ad tag: TCI (PCP 0, DEI 0, VID) then the next ethertype.
pub fn vlan(vid: u16, next: u16) -> Vec<u8> {
    cat(&[&vid.to_be_bytes(), &next.to_be_bytes()])
}

/// IPv4 header (RFC 791) with `options` (a multiple of 4 bytes), TTL 64, given id/flags/offset.
#[allow(clippy::too_many_arguments)] // every header field a test varies
pub fn ipv4_full(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    mf: bool,
    off8: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let flags_off = (if mf { 0x2000 } else { 0 }) | off8;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend(total.to_be_bytes());
    h.extend(id.to_be_bytes());
    h.extend(flags_off.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src);
    h.extend(dst);
    h.extend(options);
    h.extend(payload);
    h
}

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(src, dst, proto, 1, false, 0, &[], payload)
}

/// IPv6 fixed header (RFC 8200), hop limit 64.
pub fn ipv6(src: [u16; 8], dst: [u16; 8], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, 64]);
    for w in src.iter().chain(dst.iter()) {
        h.extend(w.to_be_bytes());
    }
    h.extend(payload);
    h
}

/// UDP header with a correct length (checksum 0: not verified by the decoder).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    cat(&[&sport.to_be_bytes(), &dport.to_be_bytes(), &len.to_be_bytes(), &[0, 0], payload])
}

/// TCP header without options: data offset 5.
pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, window: u16, payload: &[u8]) -> Vec<u8> {
    cat(&[
        &sport.to_be_bytes(),
        &dport.to_be_bytes(),
        &seq.to_be_bytes(),
        &ack.to_be_bytes(),
        &[0x50, flags],
        &window.to_be_bytes(),
        &[0, 0, 0, 0],
        payload,
    ])
}

/// VXLAN header (RFC 7348): flags I, VNI.
pub fn vxlan(vni: u32) -> Vec<u8> {
    let v = (vni << 8).to_be_bytes();
    vec![0x08, 0, 0, 0, v[0], v[1], v[2], 0]
}

/// GENEVE header (RFC 8926) with `opts` (a multiple of 4 bytes).
pub fn geneve(vni: u32, proto: u16, opts: &[u8]) -> Vec<u8> {
    let v = (vni << 8).to_be_bytes();
    let mut h = vec![(opts.len() / 4) as u8, 0];
    h.extend(proto.to_be_bytes());
    h.extend([v[0], v[1], v[2], 0]);
    h.extend(opts);
    h
}
