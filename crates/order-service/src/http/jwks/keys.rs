//! A JSON Web Key Set (RFC 7517) as the verifier holds it: signing keys by
//! key id, each with the one algorithm it may verify. The algorithm is the
//! key's (`alg`, else the one its type implies: RSA → RS256, EC P-256 →
//! ES256), never the token's: a token whose header names another algorithm
//! is refused, which is what defeats `alg` confusion (`none`, HS256 keyed
//! with the public key, an RS256 token against an EC key).
//!
//! Signatures are checked with `ring`, which the service already builds for
//! TLS; a JWK carries the raw key parameters ring takes, so no ASN.1 or PEM
//! is involved. (`jsonwebtoken` 10 was weighed: it has no ring backend —
//! aws-lc-rs, a C build, or the RustCrypto `rsa`/`p256`/`p384`/`ed25519`
//! stack — and would replace only the signature calls here and the PEM
//! reading of `config/keys.rs`; the claims checks of `http::auth` stay ours.)

use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

/// The algorithms a key from a set may verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 (MGF1 SHA-256, salt of 32 bytes).
    Ps256,
    /// ECDSA on P-256 with SHA-256, the signature as `r || s`.
    Es256,
}

impl Alg {
    pub fn from_name(name: &str) -> Option<Self> {
        [Alg::Rs256, Alg::Ps256, Alg::Es256]
            .into_iter()
            .find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
        }
    }
}

/// Smallest RSA modulus accepted, in bytes (2048 bits; ring's floor too).
const MIN_RSA_MODULUS: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
enum PublicKey {
    /// Modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed P-256 point: `0x04 || x || y`.
    P256(Vec<u8>),
}

/// One verification key of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Alg,
    key: PublicKey,
}

impl Key {
    /// Whether `sig` is this key's signature of `signed` under its algorithm.
    pub fn verifies(&self, signed: &[u8], sig: &[u8]) -> bool {
        match (&self.key, self.alg) {
            (PublicKey::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, sig)
                .is_ok(),
            (PublicKey::Rsa { n, e }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PSS_2048_8192_SHA256, signed, sig)
                .is_ok(),
            (PublicKey::P256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// What a set says about a token's key id and algorithm.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// A key of the set verified the signature.
    Verified,
    /// The set has no key of that id (or, for a token without one, none of
    /// that algorithm): fetching the set again may help.
    UnknownKey,
    /// Keys were found and none verified it (or the algorithm differs from
    /// the key's): refused, and fetching again would not change that.
    Refused,
}

/// The usable signing keys of a fetched set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// The members of a JWK this verifier reads.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

impl Jwk {
    /// The key, or why it is not used.
    fn into_key(self) -> Result<Key, String> {
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(format!("use {:?}", self.use_.unwrap_or_default()));
        }
        let param = |v: &Option<String>, name: &str| {
            v.as_deref()
                .and_then(b64url)
                .filter(|b| !b.is_empty())
                .ok_or_else(|| format!("{} key without a valid `{name}`", self.kty))
        };
        let (alg, key) = match (self.kty.as_str(), self.alg.as_deref()) {
            ("RSA", alg @ (None | Some("RS256" | "PS256"))) => {
                let n = param(&self.n, "n")?;
                let e = param(&self.e, "e")?;
                // Leading zero octets do not count towards the key size.
                let len = n.iter().skip_while(|b| **b == 0).count();
                if len < MIN_RSA_MODULUS {
                    return Err(format!("RSA modulus of {} bits", len * 8));
                }
                let alg = if alg == Some("PS256") {
                    Alg::Ps256
                } else {
                    Alg::Rs256
                };
                (alg, PublicKey::Rsa { n, e })
            }
            ("EC", None | Some("ES256")) if self.crv.as_deref() == Some("P-256") => {
                let x = param(&self.x, "x")?;
                let y = param(&self.y, "y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err("P-256 coordinates not of 32 bytes".into());
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (Alg::Es256, PublicKey::P256(point))
            }
            (kty, alg) => {
                return Err(format!(
                    "unsupported kty {kty:?} / alg {:?} / crv {:?}",
                    alg.unwrap_or("-"),
                    self.crv.as_deref().unwrap_or("-")
                ))
            }
        };
        Ok(Key {
            kid: self.kid,
            alg,
            key,
        })
    }
}

impl KeySet {
    /// Reads a JWKS document (`{"keys": [...]}`); keys this verifier cannot
    /// use (encryption keys, other algorithms, malformed ones) are left out
    /// and returned with the reason, so one odd key does not cost the set.
    pub fn parse(body: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("not a JSON document: {e}"))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err("no `keys` array".into());
        };
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for entry in entries {
            let key = serde_json::from_value::<Jwk>(entry.clone())
                .map_err(|e| format!("malformed key: {e}"))
                .and_then(Jwk::into_key);
            match key {
                Ok(k) => keys.push(k),
                Err(why) => {
                    let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("-");
                    skipped.push(format!("kid {kid}: {why}"));
                }
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, for logging what changed.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// Checks a signature made with the key `kid` (any key of algorithm
    /// `alg` for a token without a key id); `alg` must be the key's own.
    pub fn check(&self, kid: Option<&str>, alg: &str, signed: &[u8], sig: &[u8]) -> KeyCheck {
        if Alg::from_name(alg).is_none() {
            // No set holds keys for it: fetching again cannot help.
            return KeyCheck::Refused;
        }
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .peekable();
        if kid.is_some() && candidates.peek().is_none() {
            return KeyCheck::UnknownKey;
        }
        let mut of_alg = candidates.filter(|k| k.alg.name() == alg).peekable();
        if kid.is_none() && of_alg.peek().is_none() {
            return KeyCheck::UnknownKey;
        }
        if of_alg.any(|k| k.verifies(signed, sig)) {
            KeyCheck::Verified
        } else {
            KeyCheck::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn p256() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        });
        (pair, jwk)
    }

    #[test]
    fn a_p256_key_verifies_its_signatures_only_under_es256() {
        let (pair, jwk) = p256();
        let (set, skipped) =
            KeySet::parse(json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let sig = pair.sign(&SystemRandom::new(), b"signed").unwrap();
        let sig = sig.as_ref();
        assert_eq!(
            set.check(Some("ec-1"), "ES256", b"signed", sig),
            KeyCheck::Verified
        );
        assert_eq!(set.check(None, "ES256", b"signed", sig), KeyCheck::Verified);
        assert_eq!(
            set.check(Some("ec-1"), "ES256", b"other", sig),
            KeyCheck::Refused
        );
        for alg in ["RS256", "PS256", "HS256", "none"] {
            assert_eq!(
                set.check(Some("ec-1"), alg, b"signed", sig),
                KeyCheck::Refused,
                "{alg}"
            );
        }
        assert_eq!(
            set.check(Some("ec-2"), "ES256", b"signed", sig),
            KeyCheck::UnknownKey
        );
        assert_eq!(
            set.check(None, "RS256", b"signed", sig),
            KeyCheck::UnknownKey
        );
        assert_eq!(
            set.check(Some("ec-2"), "none", b"signed", b""),
            KeyCheck::Refused,
            "an algorithm no set has keys for fetches nothing"
        );
    }

    #[test]
    fn keys_not_for_signing_or_of_other_algorithms_are_left_out_with_a_reason() {
        let (_, ec) = p256();
        let mut enc = ec.clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc-1");
        let mut es384 = ec.clone();
        es384["alg"] = json!("ES384");
        es384["kid"] = json!("es384");
        let mut rs_alg_on_ec = ec.clone();
        rs_alg_on_ec["alg"] = json!("RS256");
        rs_alg_on_ec["kid"] = json!("confused");
        let small_rsa = json!({"kty": "RSA", "kid": "small", "n": b64(&[0xc5; 128]), "e": "AQAB"});
        let rsa = json!({"kty": "RSA", "kid": "rsa", "alg": "PS256", "n": b64(&[0xc5; 256]), "e": "AQAB"});
        let hmac = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let doc = json!({ "keys": [ec, enc, es384, rs_alg_on_ec, small_rsa, rsa, hmac, 42] });
        let (set, skipped) = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.kids(), ["ec-1", "rsa"]);
        assert_eq!(set.keys[1].alg, Alg::Ps256);
        assert_eq!(skipped.len(), 6, "{skipped:?}");
        assert!(skipped[0].contains("enc-1") && skipped[0].contains("use"));
        assert!(skipped[3].contains("1024 bits"), "{skipped:?}");
        assert!(KeySet::parse(b"{}").is_err());
        assert!(KeySet::parse(b"<html>").is_err());
    }
}
