//! What providers tell Herald after a send, checked before anything is
//! believed:
//!
//! - [`wework`]: the WeWork callback protocol — the `msg_signature` (SHA-1
//!   of the sorted token, timestamp, nonce and ciphertext), the AES-256-CBC
//!   envelope (key from the 43-character EncodingAESKey, IV its first 16
//!   bytes, PKCS#7 to 32-byte blocks, the receive id checked) and the XML
//!   events inside it; both directions, so the simulator speaks it too.
//! - [`signed`]: Herald's generic callbacks, `X-Herald-Signature:
//!   sha256=<hex HMAC-SHA256 of the body>` with the provider's
//!   `callback_secret`, compared in constant time.
//! - [`links`]: the signed links in emails (unsubscribe, tracking) and
//!   the return paths (VERP) bounces come back to.
//! - [`reports`]: delivery status notifications (RFC 3464) and ARF
//!   complaint reports, read with `mail-parser`.
//! - [`tenant_hooks`]: the other direction — the signature on Herald's
//!   webhooks to tenants (`t=<unix>,sha256=<hex HMAC of "t.body">`).
//! - [`EventKind`]: what a callback says happened, and its rank: a
//!   message's status only ever moves to a higher rank.

pub mod links;
pub mod reports;
pub mod signed;
pub mod tenant_hooks;
pub mod wework;

pub use herald_domain::EventKind;
