//! The signature on Herald's webhooks to tenants: `X-Herald-Signature:
//! t=<unix seconds>,sha256=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the
//! tenant's signing secret (the whole `whsec_…` string). The timestamp is
//! inside the signed bytes, so a receiver that refuses old timestamps
//! refuses replays. While a rotated-out secret still signs, a second
//! `sha256=` entry carries its signature; a receiver accepts either.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::signed::HEADER;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], t: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `t`, signed with each of `secrets`.
pub fn sign(secrets: &[&[u8]], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",sha256=");
        header.push_str(&hex::encode(mac(secret, t, body).finalize().into_bytes()));
    }
    header
}

/// Why a tenant's receiver would refuse a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookSignatureError {
    #[error("the X-Herald-Signature header is missing")]
    Missing,
    #[error("the X-Herald-Signature header is not t=<unix>,sha256=<64 hex digits>")]
    Malformed,
    #[error("the signature's timestamp is {0} s away from now")]
    Stale(i64),
    #[error("no sha256 entry matches the body")]
    Mismatch,
}

/// Checks a delivery as a tenant's receiver should: the timestamp within
/// `tolerance_secs` of `now`, and some `sha256=` entry matching (in
/// constant time). Returns the signed timestamp.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, HookSignatureError> {
    let header = header.ok_or(HookSignatureError::Missing)?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                t = Some(
                    v.parse::<i64>()
                        .map_err(|_| HookSignatureError::Malformed)?,
                )
            }
            Some(("sha256", v)) if v.len() == 64 => {
                signatures.push(hex::decode(v).map_err(|_| HookSignatureError::Malformed)?)
            }
            _ => return Err(HookSignatureError::Malformed),
        }
    }
    let t = t.ok_or(HookSignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(HookSignatureError::Malformed);
    }
    if (now - t).abs() > tolerance_secs {
        return Err(HookSignatureError::Stale(now - t));
    }
    if signatures
        .iter()
        .any(|s| mac(secret, t, body).verify_slice(s).is_ok())
    {
        Ok(t)
    } else {
        Err(HookSignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn signs_the_timestamp_and_the_body() {
        // HMAC-SHA256("whsec_test", "1700000000.{}"), computed independently:
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign(&[b"whsec_test"], 1_700_000_000, b"{}"),
            "t=1700000000,sha256=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn refusals_say_what_was_wrong() {
        let body = br#"{"type":"sent"}"#;
        let h = sign(&[b"new", b"old"], 1000, body);
        assert_eq!(verify(b"new", Some(&h), body, 1000, 300), Ok(1000));
        assert_eq!(verify(b"old", Some(&h), body, 1100, 300), Ok(1000));
        assert_eq!(
            verify(b"other", Some(&h), body, 1000, 300),
            Err(HookSignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"new", Some(&h), body, 1400, 300),
            Err(HookSignatureError::Stale(400))
        );
        assert_eq!(
            verify(b"new", None, body, 1000, 300),
            Err(HookSignatureError::Missing)
        );
        assert_eq!(
            verify(b"new", Some("sha256=00"), body, 1000, 300),
            Err(HookSignatureError::Malformed)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = h.replacen("t=1000", "t=1001", 1);
        assert_eq!(
            verify(b"new", Some(&moved), body, 1000, 300),
            Err(HookSignatureError::Mismatch)
        );
    }

    proptest! {
        #[test]
        fn any_changed_byte_is_refused(body in proptest::collection::vec(any::<u8>(), 1..512), at in any::<prop::sample::Index>(), flip in 1u8..=255, t in 0i64..4_000_000_000) {
            let h = sign(&[b"whsec_k"], t, &body);
            prop_assert_eq!(verify(b"whsec_k", Some(&h), &body, t, 300), Ok(t));
            let mut changed = body.clone();
            let i = at.index(changed.len());
            changed[i] ^= flip;
            prop_assert_eq!(verify(b"whsec_k", Some(&h), &changed, t, 300), Err(HookSignatureError::Mismatch));
        }
    }
}
