//! JA4 (ClientHello) and JA4S (ServerHello) fingerprints, after FoxIO's specification
//! (`technical_details/JA4.md`; JA4S from its image and reference code): TCP only, so the first
//! character is always `t`.

use ring::digest::{digest, SHA256};

use super::wire::{is_grease, ClientHello, ServerHello, EXT_ALPN, EXT_SERVER_NAME};

/// Two characters for a version (JA4 "TLS and DTLS Version"); unknown = `00`.
fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First and last characters of the first ALPN value; hex nibbles when either end is not
/// alphanumeric; `00` when absent or empty.
fn alpn_code(alpn: Option<&[u8]>) -> String {
    let Some(a) = alpn else { return "00".into() };
    let (Some(&first), Some(&last)) = (a.first(), a.last()) else { return "00".into() };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        return [char::from(first), char::from(last)].iter().collect();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [char::from(HEX[usize::from(first >> 4)]), char::from(HEX[usize::from(last & 0x0f)])].iter().collect()
}

/// The first 12 hex characters of SHA-256 of `s`.
pub fn hash12(s: &str) -> String {
    let d = digest(&SHA256, s.as_bytes());
    hex::encode(&d.as_ref()[..6])
}

fn hex_list(v: &[u16]) -> String {
    let mut s = String::with_capacity(v.len() * 5);
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{x:04x}"));
    }
    s
}

fn count2(n: usize) -> String {
    format!("{:02}", n.min(99))
}

/// JA4 and its raw (sorted, unhashed) form `JA4_r`.
pub fn ja4(ch: &ClientHello) -> (String, String) {
    let version = ch.supported_versions.iter().copied().filter(|v| !is_grease(*v)).max().unwrap_or(ch.legacy_version);
    let sni = if ch.extensions.contains(&EXT_SERVER_NAME) { 'd' } else { 'i' };
    let mut ciphers: Vec<u16> = ch.ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
    let exts: Vec<u16> = ch.extensions.iter().copied().filter(|e| !is_grease(*e)).collect();
    let a = format!(
        "t{}{}{}{}{}",
        version_code(version),
        sni,
        count2(ciphers.len()),
        count2(exts.len()),
        alpn_code(ch.alpn.first().map(Vec::as_slice))
    );
    ciphers.sort_unstable();
    let mut sorted_exts: Vec<u16> = exts.into_iter().filter(|e| *e != EXT_SERVER_NAME && *e != EXT_ALPN).collect();
    sorted_exts.sort_unstable();
    let sigs: Vec<u16> = ch.signature_algorithms.iter().copied().filter(|s| !is_grease(*s)).collect();
    let b_raw = hex_list(&ciphers);
    let mut c_raw = hex_list(&sorted_exts);
    if !sigs.is_empty() {
        c_raw.push('_');
        c_raw.push_str(&hex_list(&sigs));
    }
    let b = if ciphers.is_empty() { "000000000000".to_string() } else { hash12(&b_raw) };
    let c = if sorted_exts.is_empty() { "000000000000".to_string() } else { hash12(&c_raw) };
    (format!("{a}_{b}_{c}"), format!("{a}_{b_raw}_{c_raw}"))
}

/// JA4S: version, extension count and chosen ALPN, the chosen cipher, and a hash of the
/// extensions in the order sent.
pub fn ja4s(sh: &ServerHello) -> String {
    let a = format!("t{}{}{}", version_code(sh.version()), count2(sh.extensions.len()), alpn_code(sh.alpn.as_deref()));
    let c = if sh.extensions.is_empty() { "000000000000".to_string() } else { hash12(&hex_list(&sh.extensions)) };
    format!("{a}_{:04x}_{c}", sh.cipher)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of JA4.md: each list string and its published 12-character hash.
    #[test]
    fn spec_example_hashes() {
        assert_eq!(
            hash12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"),
            "8daaf6152771"
        );
        assert_eq!(
            hash12("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"),
            "e5627efa2ab1"
        );
        assert_eq!(hash12("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"), "6d807ffa2a79");
    }

    /// The spec's example hello (cipher and extension lists in wire order, JA4_ro) rebuilt and
    /// fingerprinted: JA4.md gives `t13d1516h2_8daaf6152771_e5627efa2ab1` and the JA4_r string.
    #[test]
    fn spec_example_fingerprint_with_grease() {
        let ciphers = [
            0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
            0x009d, 0x002f, 0x0035,
        ];
        let exts = [
            0x2a2a, 0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b,
            0xff01, 0x000b, 0x000a, 0x0015, 0x3a3a,
        ];
        let ch = ClientHello {
            legacy_version: 0x0303,
            ciphers: ciphers.to_vec(),
            extensions: exts.to_vec(),
            sni: Some("example.com".into()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            signature_algorithms: vec![0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
            supported_versions: vec![0x5a5a, 0x0304, 0x0303],
        };
        let (fp, raw) = ja4(&ch);
        assert_eq!(fp, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(
            raw,
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        );
    }

    /// JA4.md's ALPN examples: 0xAB -> "ab", 0xAB 0xCD -> "ad", 0x30 0xAB -> "3b",
    /// 0x30 0x31 0xAB 0xCD -> "3d", 0x30 0xAB 0xCD 0x31 -> "01"; one character is both ends.
    #[test]
    fn spec_alpn_examples() {
        assert_eq!(alpn_code(Some(&[0xab])), "ab");
        assert_eq!(alpn_code(Some(&[0xab, 0xcd])), "ad");
        assert_eq!(alpn_code(Some(&[0x30, 0xab])), "3b");
        assert_eq!(alpn_code(Some(&[0x30, 0x31, 0xab, 0xcd])), "3d");
        assert_eq!(alpn_code(Some(&[0x30, 0xab, 0xcd, 0x31])), "01");
        assert_eq!(alpn_code(Some(b"q")), "qq");
        assert_eq!(alpn_code(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_code(Some(b"")), "00");
        assert_eq!(alpn_code(None), "00");
    }

    /// A published Chrome fingerprint (browserleaks output quoted in the JA4 search results):
    /// JA4_r `..._0005,...,ff01_0403,...` hashes to `d8a2da3f94cd`.
    #[test]
    fn published_chrome_extension_hash() {
        assert_eq!(
            hash12("0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601"),
            "d8a2da3f94cd"
        );
    }

    /// JA4S image example `t120400_c030_4e8089b08790` has four extensions; the empty case is
    /// zeros, and the cipher is four hex digits.
    #[test]
    fn ja4s_shape() {
        let sh = ServerHello { legacy_version: 0x0303, cipher: 0xc030, ..ServerHello::default() };
        assert_eq!(ja4s(&sh), "t120000_c030_000000000000");
        let sh = ServerHello {
            legacy_version: 0x0303,
            cipher: 0x1301,
            extensions: vec![0x0033, 0x002b],
            selected_version: Some(0x0304),
            alpn: Some(b"h2".to_vec()),
            retry: false,
        };
        assert_eq!(ja4s(&sh), format!("t1302h2_1301_{}", hash12("0033,002b")));
    }
}
