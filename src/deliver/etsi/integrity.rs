//! TS 102 232-1 clause 7.2 integrity checks: hash PDUs over the PDUs of one stream, and signed
//! PDUs over those hashes.
//!
//! One [`IntegrityState`] per stream, i.e. per (LIID, CIN, IRI|CC) as OpenLI's mediator keys
//! them. It is sans-I/O: the caller feeds every encoded PDU of the stream with its sequence
//! number and `now`, asks what is due, and sends the integrity-check PDUs itself.
//!
//! Readings of the standard made here (written down in docs/handover.md):
//! - hash checkValue = H(PDU_1 || PDU_2 || ...), the full BER encodings of the included PDUs
//!   in the order they were processed (what `includedSequenceNumbers` lists);
//! - integrity-check PDUs carry their own sequence numbers, one counter per state shared by hash
//!   and signature PDUs, so that the data stream's numbers stay gap-free at the LEMF;
//! - a signature PDU lists the sequence numbers of the hash PDUs it covers and signs the
//!   concatenation of their checkValues in that order: Ed25519 (raw 64-byte signature) or
//!   ECDSA P-256 with SHA-256 (DER `ECDSA-Sig-Value`, RFC 3279 2.2.3, as the ASN.1 comment
//!   on checkValue asks).

use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use super::ps_pdu::{CheckType, DataType, HashAlgorithm, IntegrityCheck, SignatureAlgorithm};
use crate::timestamp::Timestamp;

/// When to emit checks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntegrityConfig {
    pub hash_algorithm: HashAlgorithmName,
    /// A hash PDU after this many data PDUs...
    pub hash_every_pdus: u32,
    /// ...or this long after the first PDU not yet hashed.
    pub hash_every_secs: u32,
    /// A signature PDU after this many hash PDUs (0: never sign)...
    pub sign_every_hashes: u32,
    /// ...or this long after the first hash not yet signed.
    pub sign_every_secs: u32,
}

/// The hash algorithms ring provides.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashAlgorithmName {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithmName {
    fn ring(self) -> &'static digest::Algorithm {
        match self {
            HashAlgorithmName::Sha256 => &digest::SHA256,
            HashAlgorithmName::Sha384 => &digest::SHA384,
            HashAlgorithmName::Sha512 => &digest::SHA512,
        }
    }
    fn asn1(self) -> HashAlgorithm {
        match self {
            HashAlgorithmName::Sha256 => HashAlgorithm::Sha256,
            HashAlgorithmName::Sha384 => HashAlgorithm::Sha384,
            HashAlgorithmName::Sha512 => HashAlgorithm::Sha512,
        }
    }
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        IntegrityConfig {
            hash_algorithm: HashAlgorithmName::Sha256,
            hash_every_pdus: 100,
            hash_every_secs: 10,
            sign_every_hashes: 10,
            sign_every_secs: 60,
        }
    }
}

/// What the caller should send now.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Due {
    pub hash: bool,
    pub signature: bool,
}

/// The key integrity signatures are made with.
pub enum Signer {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair, SystemRandom),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Ed25519(_) => f.write_str("Signer::Ed25519"),
            Signer::EcdsaP256(..) => f.write_str("Signer::EcdsaP256"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("{algorithm} key rejected: {reason}")]
    Key { algorithm: &'static str, reason: String },
    #[error("{algorithm} signing failed")]
    Sign { algorithm: &'static str },
}

impl Signer {
    /// From a PKCS#8 v1/v2 Ed25519 key (what `openssl genpkey -algorithm ed25519` writes, as DER).
    pub fn ed25519_pkcs8(der: &[u8]) -> Result<Signer, SignError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(Signer::Ed25519)
            .map_err(|e| SignError::Key { algorithm: "Ed25519", reason: e.to_string() })
    }

    /// From a 32-byte Ed25519 seed.
    pub fn ed25519_seed(seed: &[u8]) -> Result<Signer, SignError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Signer::Ed25519)
            .map_err(|e| SignError::Key { algorithm: "Ed25519", reason: e.to_string() })
    }

    /// From a PKCS#8 P-256 key (`openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256`, DER).
    pub fn ecdsa_p256_pkcs8(der: &[u8]) -> Result<Signer, SignError> {
        let rng = SystemRandom::new();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
            .map(|k| Signer::EcdsaP256(k, rng))
            .map_err(|e| SignError::Key { algorithm: "ECDSA P-256", reason: e.to_string() })
    }

    /// The public key as the LEA needs it: Ed25519 raw 32 bytes, P-256 uncompressed point.
    pub fn public_key(&self) -> &[u8] {
        match self {
            Signer::Ed25519(k) => k.public_key().as_ref(),
            Signer::EcdsaP256(k, _) => k.public_key().as_ref(),
        }
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        match self {
            Signer::Ed25519(_) => SignatureAlgorithm::EdDsa,
            Signer::EcdsaP256(..) => SignatureAlgorithm::Ecdsa,
        }
    }

    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            Signer::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            Signer::EcdsaP256(k, rng) => {
                k.sign(rng, msg).map(|s| s.as_ref().to_vec()).map_err(|_| SignError::Sign { algorithm: "ECDSA P-256" })
            }
        }
    }
}

/// Integrity state of one (LIID, CIN, IRI|CC) stream.
pub struct IntegrityState {
    cfg: IntegrityConfig,
    data_type: DataType,
    ctx: digest::Context,
    hashed: Vec<u32>,
    first_unhashed: Option<Timestamp>,
    /// (sequence number of the hash PDU, its checkValue), not yet signed.
    unsigned: Vec<(u32, Vec<u8>)>,
    first_unsigned: Option<Timestamp>,
    next_seq: u32,
}

impl std::fmt::Debug for IntegrityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrityState")
            .field("data_type", &self.data_type)
            .field("hashed", &self.hashed.len())
            .field("unsigned", &self.unsigned.len())
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl IntegrityState {
    pub fn new(cfg: IntegrityConfig, data_type: DataType) -> IntegrityState {
        let ctx = digest::Context::new(cfg.hash_algorithm.ring());
        IntegrityState {
            cfg,
            data_type,
            ctx,
            hashed: Vec::new(),
            first_unhashed: None,
            unsigned: Vec::new(),
            first_unsigned: None,
            next_seq: 0,
        }
    }

    /// Continue the integrity PDUs' own numbering after a restart (it would otherwise start at 0).
    pub fn with_next_seq(mut self, seq: u32) -> IntegrityState {
        self.next_seq = seq;
        self
    }

    /// One data PDU of the stream, as sent. Returns what is due now.
    pub fn add_pdu(&mut self, seq: u32, pdu: &[u8], now: Timestamp) -> Due {
        self.ctx.update(pdu);
        self.hashed.push(seq);
        self.first_unhashed.get_or_insert(now);
        self.due(now)
    }

    /// What is due at `now` (call it on a timer, e.g. every second).
    pub fn due(&self, now: Timestamp) -> Due {
        let older =
            |since: Option<Timestamp>, secs: u32| since.is_some_and(|t| secs > 0 && now >= t.add_secs(i64::from(secs)));
        let hash = !self.hashed.is_empty()
            && (self.hashed.len() >= self.cfg.hash_every_pdus.max(1) as usize
                || older(self.first_unhashed, self.cfg.hash_every_secs));
        let signature = self.cfg.sign_every_hashes > 0
            && !self.unsigned.is_empty()
            && (self.unsigned.len() >= self.cfg.sign_every_hashes as usize
                || older(self.first_unsigned, self.cfg.sign_every_secs));
        Due { hash, signature }
    }

    /// The hash check over the PDUs fed since the last one, with the sequence number its PDU
    /// must carry; `None` if nothing was fed. Records it for the next signature.
    pub fn take_hash(&mut self, now: Timestamp) -> Option<(u32, IntegrityCheck)> {
        if self.hashed.is_empty() {
            return None;
        }
        let ctx = std::mem::replace(&mut self.ctx, digest::Context::new(self.cfg.hash_algorithm.ring()));
        let value = ctx.finish().as_ref().to_vec();
        let seq = self.bump();
        let ic = IntegrityCheck {
            included: std::mem::take(&mut self.hashed),
            check_type: CheckType::Hash,
            data_type: self.data_type,
            check_value: value.clone(),
            hash_algorithm: Some(self.cfg.hash_algorithm.asn1()),
            signature_algorithm: None,
        };
        self.first_unhashed = None;
        if self.cfg.sign_every_hashes > 0 {
            self.unsigned.push((seq, value));
            self.first_unsigned.get_or_insert(now);
        }
        Some((seq, ic))
    }

    /// The signature over the hash PDUs not yet signed, with its PDU's sequence number.
    pub fn take_signature(&mut self, signer: &Signer) -> Result<Option<(u32, IntegrityCheck)>, SignError> {
        if self.unsigned.is_empty() {
            return Ok(None);
        }
        let msg: Vec<u8> = self.unsigned.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let sig = signer.sign(&msg)?;
        let included = self.unsigned.iter().map(|(s, _)| *s).collect();
        self.unsigned.clear();
        self.first_unsigned = None;
        let seq = self.bump();
        Ok(Some((
            seq,
            IntegrityCheck {
                included,
                check_type: CheckType::Signature,
                data_type: self.data_type,
                check_value: sig,
                hash_algorithm: None,
                signature_algorithm: Some(signer.algorithm()),
            },
        )))
    }

    fn bump(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_due_by_count_and_by_time() {
        let cfg = IntegrityConfig { hash_every_pdus: 3, hash_every_secs: 5, ..Default::default() };
        let mut st = IntegrityState::new(cfg, DataType::Cc);
        let t0 = Timestamp::from_secs(1000);
        assert!(!st.add_pdu(0, b"a", t0).hash);
        assert!(!st.add_pdu(1, b"b", t0).hash);
        assert!(st.add_pdu(2, b"c", t0).hash);
        let (seq, ic) = st.take_hash(t0).unwrap();
        assert_eq!((seq, ic.included), (0, vec![0, 1, 2]));
        // sha256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(hex::encode(ic.check_value), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        st.add_pdu(3, b"d", t0);
        assert!(!st.due(t0.add_secs(4)).hash);
        assert!(st.due(t0.add_secs(5)).hash);
    }
}
