//! Signed links in what Herald sends: the one-click unsubscribe link of
//! every email (`List-Unsubscribe`, RFC 8058), and, for tenants that opt
//! in, the open pixel and the click redirects of HTML email. A token is the
//! message id (and, for a click, the destination URL) with a truncated
//! HMAC-SHA256 under a key every service shares, the link's purpose bound
//! into it: a tampered or made-up token is refused, an unsubscribe token
//! is not an open token, and a click token redirects only to the URL it
//! was made for (no open redirect).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// What the link does, bound into its signature.
const UNSUBSCRIBE: &[u8] = b"herald:unsubscribe:";
const OPEN: &[u8] = b"herald:open:";
const CLICK: &[u8] = b"herald:click:";
const BOUNCE: &[u8] = b"herald:bounce:";
/// The longest URL a click token carries (longer links are left as they are).
pub const MAX_CLICK_URL: usize = 2048;

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

    /// The producer's base URL, as links start with it.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn hmac(&self, purpose: &[u8], message: Uuid, extra: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(purpose);
        mac.update(message.as_bytes());
        mac.update(extra);
        mac
    }

    /// The token: the message id, the truncated tag, then `extra` (a
    /// click's URL), URL-safe base64.
    fn token(&self, purpose: &[u8], message: Uuid, extra: &[u8]) -> String {
        let full = self.hmac(purpose, message, extra).finalize().into_bytes();
        let mut raw = Vec::with_capacity(32 + extra.len());
        raw.extend_from_slice(message.as_bytes());
        raw.extend_from_slice(&full[..16]);
        raw.extend_from_slice(extra);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The message (and the extra bytes) a token names, when its tag holds
    /// for `purpose`.
    fn verify(&self, purpose: &[u8], token: &str) -> Option<(Uuid, Vec<u8>)> {
        if token.len() < 43 || token.len() > 43 + MAX_CLICK_URL * 4 / 3 + 4 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < 32 {
            return None;
        }
        let message = Uuid::from_slice(&raw[..16]).ok()?;
        let extra = raw[32..].to_vec();
        self.hmac(purpose, message, &extra)
            .verify_truncated_left(&raw[16..32])
            .ok()?;
        Some((message, extra))
    }

    /// The token of `message`'s unsubscribe link (43 URL-safe characters).
    pub fn unsubscribe_token(&self, message: Uuid) -> String {
        self.token(UNSUBSCRIBE, message, &[])
    }

    /// `<base>/t/o/<token>`: the open pixel of `message`.
    pub fn open_url(&self, message: Uuid) -> String {
        format!("{}/t/o/{}", self.base, self.token(OPEN, message, &[]))
    }

    /// `<base>/t/c/<token>`: a redirect to `url` that counts a click on
    /// `message`.
    pub fn click_url(&self, message: Uuid, url: &str) -> String {
        format!(
            "{}/t/c/{}",
            self.base,
            self.token(CLICK, message, url.as_bytes())
        )
    }

    /// `bounce+<48 hex digits>@<domain>`: `message`'s return path (VERP).
    /// Hex, not base64: MTAs may change the case of a local part.
    pub fn return_path(&self, message: Uuid, domain: &str) -> String {
        let full = self.hmac(BOUNCE, message, &[]).finalize().into_bytes();
        format!(
            "bounce+{}{}@{domain}",
            hex::encode(message.as_bytes()),
            hex::encode(&full[..8])
        )
    }

    /// The message a return path names (the address as received, any
    /// case), when its tag holds.
    pub fn verify_return_path(&self, address: &str) -> Option<Uuid> {
        let local = address.split('@').next()?.to_ascii_lowercase();
        let token = local.strip_prefix("bounce+")?;
        if token.len() != 48 {
            return None;
        }
        let raw = hex::decode(token).ok()?;
        let message = Uuid::from_slice(&raw[..16]).ok()?;
        self.hmac(BOUNCE, message, &[])
            .verify_truncated_left(&raw[16..])
            .ok()?;
        Some(message)
    }

    /// The message an open pixel's token names.
    pub fn verify_open(&self, token: &str) -> Option<Uuid> {
        match self.verify(OPEN, token)? {
            (message, extra) if extra.is_empty() => Some(message),
            _ => None,
        }
    }

    /// The message and the destination a click token names (only an
    /// http(s) URL is ever signed, and only one signed is returned).
    pub fn verify_click(&self, token: &str) -> Option<(Uuid, String)> {
        let (message, extra) = self.verify(CLICK, token)?;
        let url = String::from_utf8(extra).ok()?;
        (url.starts_with("https://") || url.starts_with("http://")).then_some((message, url))
    }

    /// `<base>/u/<token>`.
    pub fn unsubscribe_url(&self, message: Uuid) -> String {
        format!("{}/u/{}", self.base, self.unsubscribe_token(message))
    }

    /// The message a token names, when its signature holds.
    pub fn verify_unsubscribe(&self, token: &str) -> Option<Uuid> {
        match self.verify(UNSUBSCRIBE, token)? {
            (message, extra) if extra.is_empty() => Some(message),
            _ => None,
        }
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

    #[test]
    fn open_and_click_tokens_are_bound_to_their_purpose_and_url() {
        let links = Links::new(b"k1", "http://herald.example");
        let id = Uuid::now_v7();
        let open = links.open_url(id);
        let token = open.rsplit('/').next().expect("a value");
        assert!(open.starts_with("http://herald.example/t/o/"));
        assert_eq!(links.verify_open(token), Some(id));
        assert_eq!(
            links.verify_unsubscribe(token),
            None,
            "an open is not an unsubscribe"
        );
        assert_eq!(links.verify_click(token), None);
        let unsubscribe = links.unsubscribe_token(id);
        assert_eq!(links.verify_open(&unsubscribe), None);

        let url = "https://shop.example/sale?a=1&b=2#top";
        let click = links.click_url(id, url);
        let token = click.rsplit('/').next().expect("a value");
        assert_eq!(links.verify_click(token), Some((id, url.to_owned())));
        assert_eq!(links.verify_open(token), None);
        // Another URL under the same tag: refused (no open redirect).
        let mut raw = URL_SAFE_NO_PAD.decode(token).expect("a value");
        let at = raw.len() - 3;
        raw[at] = b'X';
        assert_eq!(links.verify_click(&URL_SAFE_NO_PAD.encode(&raw)), None);
        // A signed non-http URL is never handed out.
        let js = links.token(CLICK, id, b"javascript:alert(1)");
        assert_eq!(links.verify_click(&js), None);
    }

    #[test]
    fn a_return_path_names_its_message_in_any_case() {
        let links = Links::new(b"k1", "http://h");
        let id = Uuid::now_v7();
        let rp = links.return_path(id, "bounces.example");
        assert!(
            rp.starts_with("bounce+") && rp.ends_with("@bounces.example"),
            "{rp}"
        );
        assert!(
            rp.split('@').next().expect("a value").len() <= 64,
            "RFC 5321 local part"
        );
        assert_eq!(links.verify_return_path(&rp), Some(id));
        assert_eq!(links.verify_return_path(&rp.to_uppercase()), Some(id));
        let mut bad = rp.clone().into_bytes();
        bad[10] = if bad[10] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            links.verify_return_path(&String::from_utf8(bad).expect("a value")),
            None
        );
        assert_eq!(Links::new(b"k2", "x").verify_return_path(&rp), None);
        assert_eq!(links.verify_return_path("postmaster@bounces.example"), None);
    }

    proptest! {
        #[test]
        fn a_click_token_carries_any_url_and_refuses_any_change(path in "[a-z0-9/?=&%._-]{0,200}", at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let links = Links::new(b"key", "http://h");
            let id = Uuid::from_u128(7);
            let url = format!("https://example.com/{path}");
            let click = links.click_url(id, &url);
            let token = click.rsplit('/').next().expect("a value");
            prop_assert_eq!(links.verify_click(token), Some((id, url.clone())));
            let mut raw = URL_SAFE_NO_PAD.decode(token).expect("a value");
            let i = at.index(raw.len());
            raw[i] ^= flip;
            prop_assert_eq!(links.verify_click(&URL_SAFE_NO_PAD.encode(&raw)), None);
        }

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
