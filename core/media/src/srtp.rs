//! SRTP keyed by SDES (RFC 4568 `a=crypto`) for SIP: the two AES-CM/HMAC-SHA1 suites of
//! RFC 3711 §8.2 / RFC 4568 §6.2, on top of rtc-srtp's contexts.
//!
//! Replay protection is switched on explicitly for the inbound contexts (RFC 3711 §3.3.2,
//! a 128-packet window for SRTP and SRTCP); rtc-srtp's constructor would otherwise
//! default to none.

use bytes::Bytes;
use rand_core::RngCore;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use thiserror::Error;

/// Replay window (packets) for inbound SRTP and SRTCP (RFC 3711 §3.3.2 minimum is 64).
pub const REPLAY_WINDOW: usize = 128;

/// An SRTP failure, classified by fault.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SrtpError {
    /// The packet's authentication tag did not verify (remote fault or attack: drop it).
    #[error("SRTP authentication failed")]
    AuthenticationFailed,
    /// The packet was already received or is older than the replay window (drop it).
    #[error("SRTP replayed packet (ssrc {ssrc:#x}, seq {seq})")]
    Replayed {
        /// Source of the replayed packet.
        ssrc: u32,
        /// Its sequence number or SRTCP index.
        seq: u64,
    },
    /// The packet is too short or not RTP/RTCP at all (remote fault: drop it).
    #[error("malformed SRTP packet: {0}")]
    Malformed(String),
    /// Bad key material or suite handed to us (local fault).
    #[error("bad SRTP key: {0}")]
    BadKey(String),
    /// An `a=crypto` line we cannot parse or do not support (remote fault: ignore the line).
    #[error("unusable a=crypto attribute: {0}")]
    BadCryptoAttribute(String),
}

/// The SDES crypto suites we offer and accept (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: AES-128 counter mode, 80-bit HMAC-SHA1 tag.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: as above with a 32-bit tag (RTCP still uses 80, RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// Both suites, strongest first (our offer order).
    pub const ALL: [SrtpSuite; 2] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// The suite's name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Parses a suite name (case-sensitive per RFC 4568 §9.1, but we accept any case).
    pub fn from_name(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Bytes of authentication tag added to each SRTP packet.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 10,
            SrtpSuite::AesCm128HmacSha1_32 => 4,
        }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// A 128-bit master key and 112-bit master salt (RFC 3711 §8.2), as carried base64-encoded
/// in `inline:` (RFC 4568 §6.1). Debug output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpMasterKey {
    /// Master key.
    pub key: [u8; 16],
    /// Master salt.
    pub salt: [u8; 14],
}

impl std::fmt::Debug for SrtpMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpMasterKey(..)")
    }
}

impl SrtpMasterKey {
    /// A fresh key from the injected cryptographically secure RNG.
    pub fn generate(rng: &mut dyn RngCore) -> Self {
        let mut k = SrtpMasterKey {
            key: [0; 16],
            salt: [0; 14],
        };
        rng.fill_bytes(&mut k.key);
        rng.fill_bytes(&mut k.salt);
        k
    }

    /// The `inline:` key-salt, base64 of key ‖ salt (RFC 4568 §6.1).
    pub fn to_inline(&self) -> String {
        let mut raw = [0u8; 30];
        raw[..16].copy_from_slice(&self.key);
        raw[16..].copy_from_slice(&self.salt);
        base64_encode(&raw)
    }

    /// Parses an `inline:` key-salt (30 bytes after base64 decoding).
    pub fn from_inline(text: &str) -> Result<Self, SrtpError> {
        let raw = base64_decode(text)
            .ok_or_else(|| SrtpError::BadCryptoAttribute("key is not base64".into()))?;
        if raw.len() != 30 {
            return Err(SrtpError::BadCryptoAttribute(format!(
                "key-salt is {} bytes, want 30",
                raw.len()
            )));
        }
        let mut k = SrtpMasterKey {
            key: [0; 16],
            salt: [0; 14],
        };
        k.key.copy_from_slice(&raw[..16]);
        k.salt.copy_from_slice(&raw[16..]);
        Ok(k)
    }
}

/// One `a=crypto` attribute (RFC 4568 §9.1): `tag suite inline:key[|lifetime][|MKI:len]`.
///
/// We support one key without MKI; lines with an MKI, several keys or session parameters
/// (e.g. `UNENCRYPTED_SRTP`) are rejected so the negotiator skips them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag the answer must echo (RFC 4568 §5.1).
    pub tag: u32,
    /// The crypto suite.
    pub suite: SrtpSuite,
    /// The sender's master key and salt.
    pub key: SrtpMasterKey,
}

impl CryptoAttribute {
    /// Parses the value of an `a=crypto:` attribute.
    pub fn parse(value: &str) -> Result<Self, SrtpError> {
        let bad = |m: &str| SrtpError::BadCryptoAttribute(m.to_string());
        let mut parts = value.split_ascii_whitespace();
        let tag = parts
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|t| *t < 1_000_000_000)
            .ok_or_else(|| bad("bad tag"))?;
        let suite_name = parts.next().ok_or_else(|| bad("no suite"))?;
        let suite = SrtpSuite::from_name(suite_name).ok_or_else(|| {
            SrtpError::BadCryptoAttribute(format!("unsupported suite {suite_name}"))
        })?;
        let key_params = parts.next().ok_or_else(|| bad("no key"))?;
        if parts.next().is_some() {
            return Err(bad("session parameters not supported"));
        }
        if key_params.contains(';') {
            return Err(bad("several keys not supported"));
        }
        let inline = key_params
            .strip_prefix("inline:")
            .ok_or_else(|| bad("key method is not inline"))?;
        let mut fields = inline.split('|');
        let key = SrtpMasterKey::from_inline(fields.next().unwrap_or(""))?;
        for f in fields {
            if f.contains(':') {
                return Err(bad("MKI not supported"));
            }
            // A lifetime (`2^31` or decimal) is accepted; we rekey by re-offer long before.
        }
        Ok(CryptoAttribute { tag, suite, key })
    }

    /// Prints the attribute value (without `a=crypto:`).
    pub fn to_value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            self.key.to_inline()
        )
    }
}

fn srtp_error(e: rtc_shared::error::Error) -> SrtpError {
    use rtc_shared::error::Error as E;
    match e {
        E::SrtpSsrcDuplicated(ssrc, seq) => SrtpError::Replayed {
            ssrc,
            seq: seq as u64,
        },
        E::SrtcpSsrcDuplicated(ssrc, idx) => SrtpError::Replayed {
            ssrc,
            seq: idx as u64,
        },
        E::RtpFailedToVerifyAuthTag
        | E::RtcpFailedToVerifyAuthTag
        | E::ErrFailedToVerifyAuthTag => SrtpError::AuthenticationFailed,
        other => SrtpError::Malformed(other.to_string()),
    }
}

/// The SRTP state of one call leg: an outbound context keyed by our `a=crypto` key and an
/// inbound context keyed by the peer's (RFC 4568 §6.1: each side sends with its own key).
pub struct SrtpSession {
    suite: SrtpSuite,
    tx: Context,
    rx: Context,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("suite", &self.suite)
            .finish()
    }
}

impl SrtpSession {
    /// Builds both contexts. Inbound replay protection is on (window [`REPLAY_WINDOW`]).
    pub fn new(
        suite: SrtpSuite,
        local: &SrtpMasterKey,
        remote: &SrtpMasterKey,
    ) -> Result<Self, SrtpError> {
        let provider =
            rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::BadKey(e.to_string()))?;
        let crypto = provider.crypto();
        let tx = Context::new(&local.key, &local.salt, suite.profile(), None, None, crypto)
            .map_err(|e| SrtpError::BadKey(e.to_string()))?;
        let rx = Context::new(
            &remote.key,
            &remote.salt,
            suite.profile(),
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
            crypto,
        )
        .map_err(|e| SrtpError::BadKey(e.to_string()))?;
        Ok(SrtpSession { suite, tx, rx })
    }

    /// The negotiated suite.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// Encrypts and authenticates an RTP packet (RFC 3711 §3.3).
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.tx
            .encrypt_rtp(packet)
            .map(|b| b.freeze())
            .map_err(srtp_error)
    }

    /// Verifies, replay-checks and decrypts an SRTP packet.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        if packet.len() < 12 + self.suite.rtp_tag_len() {
            return Err(SrtpError::Malformed(format!("{} bytes", packet.len())));
        }
        self.rx
            .decrypt_rtp(packet)
            .map(|b| b.freeze())
            .map_err(srtp_error)
    }

    /// Encrypts and authenticates an RTCP compound packet (RFC 3711 §3.4).
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.tx
            .encrypt_rtcp(packet)
            .map(|b| b.freeze())
            .map_err(srtp_error)
    }

    /// Verifies, replay-checks and decrypts an SRTCP packet.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        if packet.len() < 8 + 4 + 10 {
            return Err(SrtpError::Malformed(format!("{} bytes", packet.len())));
        }
        self.rx
            .decrypt_rtcp(packet)
            .map(|b| b.freeze())
            .map_err(srtp_error)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4), as RFC 4568 §9.1 `key-salt` uses.
pub fn base64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        s.push(B64[(n >> 18) as usize & 63] as char);
        s.push(B64[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

/// Decodes base64, tolerating missing padding; `None` on any invalid character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in text.bytes() {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use rtc_srtp::crypto::{BlockCipherAlgorithm, RTCCrypto};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key(k: &str, s: &str) -> SrtpMasterKey {
        let mut m = SrtpMasterKey {
            key: [0; 16],
            salt: [0; 14],
        };
        m.key.copy_from_slice(&hex(k));
        m.salt.copy_from_slice(&hex(s));
        m
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
        p.extend_from_slice(&0xcafebabeu32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// The AES-CM PRF of RFC 3711 §4.3.3 with kdr = 0, on rtc-srtp's own AES primitive.
    fn derive(crypto: &dyn RTCCrypto, k: &SrtpMasterKey, label: u8, len: usize) -> Vec<u8> {
        let mut x = [0u8; 16];
        x[..14].copy_from_slice(&k.salt);
        x[7] ^= label;
        let mut out = Vec::new();
        for i in 0..len.div_ceil(16) {
            let mut block = x;
            block[14] = (i >> 8) as u8;
            block[15] = i as u8;
            crypto
                .block_encrypt(BlockCipherAlgorithm::Aes128, &k.key, &mut block)
                .unwrap();
            out.extend_from_slice(&block);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn rfc3711_b3_key_derivation() {
        let provider = rtc_srtp::crypto::default_provider().unwrap();
        let k = key(
            "E1F97A0D3E018BE0D64FA32C06DE4139",
            "0EC675AD498AFEEBB6960B3AABE6",
        );
        assert_eq!(
            derive(provider.crypto(), &k, 0, 16),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(
            derive(provider.crypto(), &k, 2, 14),
            hex("30CBBC08863D8C85D49DB34A9AE1")
        );
        assert_eq!(
            derive(provider.crypto(), &k, 1, 94),
            hex(
                "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let provider = rtc_srtp::crypto::default_provider().unwrap();
        let session_key = hex("2B7E151628AED2A6ABF7158809CF4F3C");
        let iv = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000");
        let block = |counter: u16| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&iv);
            b[14..].copy_from_slice(&counter.to_be_bytes());
            provider
                .crypto()
                .block_encrypt(BlockCipherAlgorithm::Aes128, &session_key, &mut b)
                .unwrap();
            b.to_vec()
        };
        assert_eq!(block(0x0000), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(0x0001), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(0x0002), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xFEFF), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xFF00), hex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xFF01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    /// The libsrtp reference packet (srtp_driver.c `srtp_validate`): RFC 3711 B.3 master
    /// key, SSRC 0xcafebabe, seq 0x1234 — checks KDF, AES-CM and HMAC end to end.
    #[test]
    fn known_answer_packet_both_tag_lengths() {
        let k = key(
            "E1F97A0D3E018BE0D64FA32C06DE4139",
            "0EC675AD498AFEEBB6960B3AABE6",
        );
        let plain = hex("800f1234decafbadcafebabeabababababababababababababababab");
        let cipher80 =
            hex("800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb");
        let mut s = SrtpSession::new(SrtpSuite::AesCm128HmacSha1_80, &k, &k).unwrap();
        assert_eq!(s.protect_rtp(&plain).unwrap().to_vec(), cipher80);
        assert_eq!(s.unprotect_rtp(&cipher80).unwrap().to_vec(), plain);
        let mut s32 = SrtpSession::new(SrtpSuite::AesCm128HmacSha1_32, &k, &k).unwrap();
        assert_eq!(
            s32.protect_rtp(&plain).unwrap().to_vec(),
            cipher80[..32].to_vec()
        );
        // SRTCP reference (same source): encrypted SR with index 1 and E flag.
        let rtcp = hex("81c8000bcafebabeabababababababababababababababab");
        let srtcp =
            hex("81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798");
        assert_eq!(s.protect_rtcp(&rtcp).unwrap().to_vec(), srtcp);
        assert_eq!(s.unprotect_rtcp(&srtcp).unwrap().to_vec(), rtcp);
    }

    #[test]
    fn round_trip_replay_and_tamper() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let a = SrtpMasterKey::generate(&mut rng);
        let b = SrtpMasterKey::generate(&mut rng);
        for suite in SrtpSuite::ALL {
            let mut alice = SrtpSession::new(suite, &a, &b).unwrap();
            let mut bob = SrtpSession::new(suite, &b, &a).unwrap();
            let mut sent = Vec::new();
            for seq in [65530u16, 65531, 65532, 65533, 65534, 65535, 0, 1, 2] {
                let p = rtp(seq, &[seq as u8; 160]);
                let c = alice.protect_rtp(&p).unwrap();
                assert_eq!(c.len(), p.len() + suite.rtp_tag_len());
                assert_eq!(
                    bob.unprotect_rtp(&c).unwrap().to_vec(),
                    p,
                    "across the rollover"
                );
                sent.push(c);
            }
            // Replay of an already accepted packet.
            assert!(matches!(
                bob.unprotect_rtp(&sent[3]),
                Err(SrtpError::Replayed { .. })
            ));
            // Tampering with payload or header.
            let mut t = sent[8].to_vec();
            t[20] ^= 1;
            let fresh = alice.protect_rtp(&rtp(3, &[1; 160])).unwrap();
            let mut t2 = fresh.to_vec();
            t2[1] ^= 0x01;
            assert_eq!(bob.unprotect_rtp(&t2), Err(SrtpError::AuthenticationFailed));
            // The forged copy must not consume the sequence number: the real one still passes.
            assert!(bob.unprotect_rtp(&fresh).is_ok());
            assert!(bob.unprotect_rtp(&t).is_err());
            // Too short.
            assert!(matches!(
                bob.unprotect_rtp(&[0x80; 8]),
                Err(SrtpError::Malformed(_))
            ));
            // RTCP round trip and replay.
            let sr = hex("81c8000bcafebabeabababababababababababababababab");
            let c = alice.protect_rtcp(&sr).unwrap();
            assert_eq!(bob.unprotect_rtcp(&c).unwrap().to_vec(), sr);
            assert!(matches!(
                bob.unprotect_rtcp(&c),
                Err(SrtpError::Replayed { .. })
            ));
        }
    }

    #[test]
    fn wrong_key_fails_authentication() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let a = SrtpMasterKey::generate(&mut rng);
        let b = SrtpMasterKey::generate(&mut rng);
        let mut alice = SrtpSession::new(SrtpSuite::AesCm128HmacSha1_80, &a, &a).unwrap();
        let mut eve = SrtpSession::new(SrtpSuite::AesCm128HmacSha1_80, &b, &b).unwrap();
        let c = alice.protect_rtp(&rtp(1, &[0; 20])).unwrap();
        assert_eq!(eve.unprotect_rtp(&c), Err(SrtpError::AuthenticationFailed));
    }

    #[test]
    fn crypto_attribute_parse_and_print() {
        let line = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20";
        let c = CryptoAttribute::parse(line).unwrap();
        assert_eq!(c.tag, 1);
        assert_eq!(c.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(c.to_value(), line.trim_end_matches("|2^20"));
        assert_eq!(CryptoAttribute::parse(&c.to_value()).unwrap(), c);
        for bad in [
            "",
            "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVe",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTP",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
        ] {
            assert!(CryptoAttribute::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", c.key), "SrtpMasterKey(..)");
    }

    #[test]
    fn base64_round_trip() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 97 + 13) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }
}
