//! Decoding of key material from configuration text: hex digests of API
//! keys and PEM RSA public keys for RS256. Hand-written (no ASN.1 crate)
//! because only the two shapes of an RSA public key need reading.

use super::layers::Raw;
use super::ConfigError;

pub(super) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`), inline or in the
/// file the value names, as PKCS#1 `RSAPublicKey` DER.
pub(super) fn parse_rsa_public_key(raw: &Raw) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine as _;
    let value = raw.value.trim();
    let pem = if value.starts_with("-----BEGIN") {
        value.to_owned()
    } else {
        std::fs::read_to_string(value)
            .map_err(|e| ConfigError::new(format!("{}: cannot read {value:?}: {e}", raw.source)))?
    };
    let bad = |why: &str| ConfigError::new(format!("{}: not an RSA public key: {why}", raw.source));
    let spki = pem.contains("-----BEGIN PUBLIC KEY-----");
    if !spki && !pem.contains("-----BEGIN RSA PUBLIC KEY-----") {
        return Err(bad("expected a PEM `PUBLIC KEY` or `RSA PUBLIC KEY` block"));
    }
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| bad("the PEM body is not base64"))?;
    if !spki {
        return Ok(der);
    }
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier,
    //   subjectPublicKey BIT STRING } — the BIT STRING holds RSAPublicKey.
    const RSA_OID: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let (tag, outer, _) = der_tlv(&der).ok_or_else(|| bad("malformed DER"))?;
    let (alg_tag, alg, rest) = der_tlv(outer).ok_or_else(|| bad("malformed DER"))?;
    if tag != 0x30 || alg_tag != 0x30 || !alg.starts_with(RSA_OID) {
        return Err(bad("not an RSA key"));
    }
    match der_tlv(rest) {
        Some((0x03, [0, key @ ..], _)) if !key.is_empty() => Ok(key.to_vec()),
        _ => Err(bad("malformed DER")),
    }
}

/// One DER tag-length-value: (tag, value, the rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}
