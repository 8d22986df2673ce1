//! Signed links in what Herald sends: the one-click unsubscribe link of
//! every email (`List-Unsubscribe`, RFC 8058). A token is the message id and
//! a truncated HMAC-SHA256 of it under a key every service shares, so a
//! tampered or made-up token is refused and a token unsubscribes exactly
//! the recipient of its own message.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// What the link does, bound into its signature.
const UNSUBSCRIBE: &[u8] = b"herald:unsubscribe:";

/// The key and the base URL of the producer.
#[derive(Clone)]
pub struct Links {
    key: Vec<u8>,
    base: String,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Links {
    pub fn new(key: &[u8], base_url: &str) -> Links {
        Links {
            key: key.to_vec(),
            base: base_url.trim_end_matches('/').to_owned(),
        }
    }

    fn mac(&self, message: Uuid) -> [u8; 16] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(UNSUBSCRIBE);
        mac.update(message.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The token of `message`'s unsubscribe link (43 URL-safe characters).
    pub fn unsubscribe_token(&self, message: Uuid) -> String {
        let mut raw = [0u8; 32];
        raw[..16].copy_from_slice(message.as_bytes());
        raw[16..].copy_from_slice(&self.mac(message));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// `<base>/u/<token>`.
    pub fn unsubscribe_url(&self, message: Uuid) -> String {
        format!("{}/u/{}", self.base, self.unsubscribe_token(message))
    }

    /// The message a token names, when its signature holds.
    pub fn verify_unsubscribe(&self, token: &str) -> Option<Uuid> {
        if token.len() != 43 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        let (id, tag) = raw.split_at(16);
        let message = Uuid::from_slice(id).ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(UNSUBSCRIBE);
        mac.update(message.as_bytes());
        mac.verify_truncated_left(tag).ok()?;
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_token_names_its_message_under_its_key_only() {
        let links = Links::new(b"k1", "http://herald.example/");
        let id = Uuid::now_v7();
        let token = links.unsubscribe_token(id);
        assert_eq!(token.len(), 43);
        assert_eq!(links.verify_unsubscribe(&token), Some(id));
        assert_eq!(
            links.unsubscribe_url(id),
            format!("http://herald.example/u/{token}")
        );
        assert_eq!(Links::new(b"k2", "x").verify_unsubscribe(&token), None);
        assert_eq!(links.verify_unsubscribe("short"), None);
        assert_eq!(links.verify_unsubscribe(&"A".repeat(43)), None);
    }

    proptest! {
        #[test]
        fn any_changed_character_is_refused(at in 0usize..43, c in "[A-Za-z0-9_-]") {
            let links = Links::new(b"key", "http://h");
            let id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
            let token = links.unsubscribe_token(id);
            let mut chars: Vec<char> = token.chars().collect();
            let new = c.chars().next().unwrap_or('A');
            prop_assume!(chars[at] != new);
            chars[at] = new;
            let changed: String = chars.into_iter().collect();
            // The last character carries 2 spare bits: a change there may
            // decode to the same bytes, which is the same token.
            let same = URL_SAFE_NO_PAD.decode(&changed).ok() == URL_SAFE_NO_PAD.decode(&token).ok();
            prop_assert!(same || links.verify_unsubscribe(&changed).is_none());
        }
    }
}
