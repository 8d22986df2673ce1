//! Herald's generic provider callbacks: the body is signed with the
//! provider's `callback_secret` as `X-Herald-Signature: sha256=<hex>`, the
//! hex HMAC-SHA256 of the exact bytes sent.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "x-herald-signature";

type HmacSha256 = Hmac<Sha256>;

/// The header value for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Herald-Signature header is missing")]
    Missing,
    #[error("the X-Herald-Signature header is not sha256=<64 hex digits>")]
    Malformed,
    #[error("the X-Herald-Signature does not match the body")]
    Mismatch,
}

/// Checks `header` (the X-Herald-Signature value, if any) against `body`,
/// in constant time.
pub fn verify(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_sig.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let sig = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn refusals_say_what_was_wrong() {
        let body = br#"{"event":"delivered"}"#;
        let good = sign(b"s3cret", body);
        assert_eq!(verify(b"s3cret", Some(&good), body), Ok(()));
        assert_eq!(verify(b"s3cret", None, body), Err(SignatureError::Missing));
        assert_eq!(
            verify(b"s3cret", Some("md5=abc"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"other", Some(&good), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", Some(&good), br#"{"event":"bounced"}"#),
            Err(SignatureError::Mismatch)
        );
    }

    proptest! {
        #[test]
        fn any_changed_byte_is_refused(body in proptest::collection::vec(any::<u8>(), 1..512), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let sig = sign(b"key", &body);
            prop_assert_eq!(verify(b"key", Some(&sig), &body), Ok(()));
            let mut changed = body.clone();
            let i = at.index(changed.len());
            changed[i] ^= flip;
            prop_assert_eq!(verify(b"key", Some(&sig), &changed), Err(SignatureError::Mismatch));
        }
    }
}
