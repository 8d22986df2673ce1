//! The WeWork callback protocol (企业微信 "接收消息与事件"): what arrives at
//! `GET|POST /v1/callbacks/wework/{provider_id}`.
//!
//! - URL verification: `GET ?msg_signature=&timestamp=&nonce=&echostr=`;
//!   the answer is the decrypted `echostr` and nothing else.
//! - Events: `POST ?msg_signature=&timestamp=&nonce=` with
//!   `<xml><ToUserName/><Encrypt/><AgentID/></xml>`.
//! - `msg_signature` = hex SHA-1 of the token, timestamp, nonce and
//!   ciphertext, sorted and joined.
//! - The ciphertext is base64 of AES-256-CBC, key = base64 of the
//!   EncodingAESKey + "=", IV = the key's first 16 bytes, PKCS#7 padded to
//!   32-byte blocks, over `random(16) ‖ len(msg) as u32 big-endian ‖ msg ‖
//!   receive id` (the corp id).
//!
//! XML is read with `roxmltree`, which refuses DTDs: no entity expansion.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use herald_domain::EventKind;

type Decryptor = cbc::Decryptor<aes::Aes256>;
type Encryptor = cbc::Encryptor<aes::Aes256>;

/// The EncodingAESKey's decoder: 43 characters encode 256 bits plus 2
/// spare bits, which WeWork's keys do not keep at zero (its SDKs decode
/// leniently).
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// WeWork pads to 32-byte blocks, not AES's 16.
const PAD_BLOCK: usize = 32;

/// The largest body or ciphertext read (WeWork's events are a few KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Why a WeWork callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeworkError {
    #[error("encoding_aes_key must be 43 characters of base64 (a 32-byte key)")]
    BadKey,
    #[error("msg_signature does not match the token, timestamp, nonce and ciphertext")]
    Signature,
    #[error("the ciphertext is not valid base64 of whole AES blocks")]
    Ciphertext,
    #[error("the decrypted envelope is malformed: {0}")]
    Envelope(&'static str),
    #[error("the envelope is addressed to {0:?}, not to this provider's corp id")]
    ReceiveId(String),
    #[error("the body is not the callback XML: {0}")]
    Xml(String),
}

/// One WeWork app's callback settings: the token, the AES key and the corp
/// id every envelope must name.
#[derive(Clone)]
pub struct WeworkCrypto {
    token: String,
    key: [u8; 32],
    receive_id: String,
}

impl std::fmt::Debug for WeworkCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeworkCrypto")
            .field("receive_id", &self.receive_id)
            .finish_non_exhaustive()
    }
}

impl WeworkCrypto {
    pub fn new(
        token: &str,
        encoding_aes_key: &str,
        receive_id: &str,
    ) -> Result<WeworkCrypto, WeworkError> {
        if encoding_aes_key.len() != 43 {
            return Err(WeworkError::BadKey);
        }
        let bytes = KEY_BASE64
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| WeworkError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| WeworkError::BadKey)?;
        Ok(WeworkCrypto {
            token: token.to_owned(),
            key,
            receive_id: receive_id.to_owned(),
        })
    }

    /// The `msg_signature` of a ciphertext.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypted];
        parts.sort_unstable();
        let mut sha = Sha1::new();
        for p in parts {
            sha.update(p.as_bytes());
        }
        hex::encode(sha.finalize())
    }

    /// Checks `msg_signature` in constant time.
    pub fn verify(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<(), WeworkError> {
        let expected = self.signature(timestamp, nonce, encrypted);
        let given = msg_signature.trim().to_ascii_lowercase();
        if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            Ok(())
        } else {
            Err(WeworkError::Signature)
        }
    }

    /// Decrypts a ciphertext (already signature-checked) to its message,
    /// checking the receive id.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, WeworkError> {
        if encrypted.len() > MAX_BODY {
            return Err(WeworkError::Ciphertext);
        }
        let data = STANDARD
            .decode(encrypted.trim())
            .map_err(|_| WeworkError::Ciphertext)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(WeworkError::Ciphertext);
        }
        let iv: [u8; 16] = self.key[..16].try_into().expect("16 of 32 bytes");
        let plain = Decryptor::new(&self.key.into(), &iv.into())
            .decrypt_padded_vec_mut::<NoPadding>(&data)
            .map_err(|_| WeworkError::Ciphertext)?;
        let pad = usize::from(*plain.last().ok_or(WeworkError::Envelope("empty"))?);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(WeworkError::Envelope("bad padding"));
        }
        let body = &plain[..plain.len() - pad];
        if body.len() < 20 {
            return Err(WeworkError::Envelope("shorter than its header"));
        }
        let len = u32::from_be_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
        if 20 + len > body.len() {
            return Err(WeworkError::Envelope("its length runs past the end"));
        }
        let msg = std::str::from_utf8(&body[20..20 + len])
            .map_err(|_| WeworkError::Envelope("the message is not UTF-8"))?;
        let receive_id = String::from_utf8_lossy(&body[20 + len..]);
        if receive_id != self.receive_id {
            return Err(WeworkError::ReceiveId(receive_id.into_owned()));
        }
        Ok(msg.to_owned())
    }

    /// Encrypts `msg` the way WeWork does (`random` is its 16 random bytes):
    /// what the simulator posts, and the tests' round trips.
    pub fn encrypt(&self, msg: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(20 + msg.len() + self.receive_id.len() + PAD_BLOCK);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        plain.extend_from_slice(msg.as_bytes());
        plain.extend_from_slice(self.receive_id.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let iv: [u8; 16] = self.key[..16].try_into().expect("16 of 32 bytes");
        let data = Encryptor::new(&self.key.into(), &iv.into())
            .encrypt_padded_vec_mut::<NoPadding>(&plain);
        STANDARD.encode(data)
    }

    /// The POST body WeWork sends for `msg` (the simulator's).
    pub fn envelope(&self, msg: &str, random: [u8; 16], agent_id: i64) -> String {
        format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt><AgentID><![CDATA[{agent_id}]]></AgentID></xml>",
            self.receive_id,
            self.encrypt(msg, random)
        )
    }
}

/// The `<Encrypt>` of a POST body.
pub fn encrypted_part(body: &str) -> Result<String, WeworkError> {
    let fields = xml_fields(body)?;
    fields
        .into_iter()
        .find(|(k, _)| k == "Encrypt")
        .map(|(_, v)| v)
        .ok_or_else(|| WeworkError::Xml("no <Encrypt> element".into()))
}

/// The root's child elements and their text, in order.
fn xml_fields(xml: &str) -> Result<Vec<(String, String)>, WeworkError> {
    if xml.len() > MAX_BODY {
        return Err(WeworkError::Xml("larger than 64 KiB".into()));
    }
    let doc = roxmltree::Document::parse(xml).map_err(|e| WeworkError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "xml" {
        return Err(WeworkError::Xml(format!(
            "the root element is <{}>, not <xml>",
            root.tag_name().name()
        )));
    }
    Ok(root
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            (
                n.tag_name().name().to_owned(),
                n.text().unwrap_or_default().trim().to_owned(),
            )
        })
        .collect())
}

/// A decrypted WeWork message or event, as Herald reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeworkEvent {
    /// The member (`FromUserName`): the recipient the event is about.
    pub from_user: String,
    pub create_time: i64,
    /// `MsgType`: `text`, `image`, …, or `event`.
    pub msg_type: String,
    /// `Event`, when `msg_type` is `event`.
    pub event: Option<String>,
    pub agent_id: Option<String>,
    pub msg_id: Option<String>,
    /// A reply's text (`Content`), if any.
    pub content: Option<String>,
}

impl WeworkEvent {
    /// Reads the decrypted XML.
    pub fn parse(xml: &str) -> Result<WeworkEvent, WeworkError> {
        let fields = xml_fields(xml)?;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let from_user = get("FromUserName")
            .ok_or_else(|| WeworkError::Xml("no <FromUserName> element".into()))?;
        let msg_type =
            get("MsgType").ok_or_else(|| WeworkError::Xml("no <MsgType> element".into()))?;
        let create_time = get("CreateTime")
            .ok_or_else(|| WeworkError::Xml("no <CreateTime> element".into()))?
            .parse::<i64>()
            .map_err(|_| WeworkError::Xml("<CreateTime> is not a number".into()))?;
        Ok(WeworkEvent {
            from_user,
            create_time,
            event: get("Event"),
            agent_id: get("AgentID"),
            msg_id: get("MsgId"),
            content: get("Content"),
            msg_type,
        })
    }

    /// What the event means for the member's latest message from this app,
    /// or why it means nothing (kept as `ignored`):
    /// - a member's message (text, image, voice, video, location, link) is
    ///   a reply;
    /// - `enter_agent` (the member opened the app) and `view` (opened one
    ///   of its links) are reads: WeWork has no read receipt for app
    ///   messages, and these are the nearest signals it gives;
    /// - `template_card_event` / `template_card_menu_event` (a button on a
    ///   card pressed) are clicks;
    /// - anything else (contact changes, subscriptions, locations reported
    ///   by the client, batch jobs) is not about a message.
    pub fn kind(&self) -> Result<EventKind, String> {
        match self.msg_type.as_str() {
            "text" | "image" | "voice" | "video" | "location" | "link" => Ok(EventKind::Replied),
            "event" => match self.event.as_deref() {
                Some("enter_agent") | Some("view") => Ok(EventKind::Read),
                Some("template_card_event") | Some("template_card_menu_event") => {
                    Ok(EventKind::Clicked)
                }
                Some(other) => Err(format!("WeWork event {other:?} is not about a message")),
                None => Err("a WeWork event without <Event>".into()),
            },
            other => Err(format!("WeWork MsgType {other:?} is not about a message")),
        }
    }

    /// What identifies a delivery of this event, so WeWork's retries are
    /// stored once: the `MsgId` of a member's message; for events, the
    /// member, the time and the event (as WeWork's documentation advises).
    pub fn dedupe_key(&self) -> String {
        match &self.msg_id {
            Some(id) => format!("wework:msg:{id}"),
            None => format!(
                "wework:event:{}:{}:{}",
                self.from_user,
                self.create_time,
                self.event.as_deref().unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The sample in WeWork's callback documentation (and its official
    // WXBizMsgCrypt SDKs): token, EncodingAESKey and corp id, a URL
    // verification and a member's reply.
    const TOKEN: &str = "QDG6eK";
    const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const CORP: &str = "wx5823bf96d3bd56c7";
    const ECHOSTR: &str =
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
    const POST_ENCRYPT: &str = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";

    fn sample() -> WeworkCrypto {
        WeworkCrypto::new(TOKEN, AES_KEY, CORP).expect("the sample key")
    }

    #[test]
    fn the_documented_url_verification_decrypts() {
        let c = sample();
        c.verify(
            "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
            "1409659589",
            "263014780",
            ECHOSTR,
        )
        .expect("the documented signature");
        let echo = c.decrypt(ECHOSTR).expect("the documented echostr");
        assert!(
            !echo.is_empty() && echo.bytes().all(|b| b.is_ascii_digit()),
            "{echo:?}"
        );
    }

    #[test]
    fn the_documented_member_reply_decrypts_and_parses() {
        let c = sample();
        c.verify(
            "477715d11cdb4164915debcba66cb864d751f3e6",
            "1409659813",
            "1372623149",
            POST_ENCRYPT,
        )
        .expect("the documented signature");
        let body = format!(
            "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{POST_ENCRYPT}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
        );
        assert_eq!(encrypted_part(&body).as_deref(), Ok(POST_ENCRYPT));
        let xml = c.decrypt(POST_ENCRYPT).expect("the documented message");
        let event = WeworkEvent::parse(&xml).expect("its XML");
        assert_eq!(
            event,
            WeworkEvent {
                from_user: "mycreate".into(),
                create_time: 1409659813,
                msg_type: "text".into(),
                event: None,
                agent_id: Some("218".into()),
                msg_id: Some("4561255354251345929".into()),
                content: Some("hello".into()),
            }
        );
        assert_eq!(event.kind(), Ok(EventKind::Replied));
        assert_eq!(event.dedupe_key(), "wework:msg:4561255354251345929");
    }

    #[test]
    fn the_official_sdk_encryption_vector() {
        // WXBizMsgCryptTest of the official Java SDK: fixed random bytes,
        // so the ciphertext is exact.
        let c = WeworkCrypto::new(
            "pamtest",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            "wxb11529c136998cb6",
        )
        .expect("key");
        let cipher = c.encrypt("我是中文abcd123", *b"aaaabbbbccccdddd");
        assert_eq!(
            cipher,
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
        );
        assert_eq!(c.decrypt(&cipher).as_deref(), Ok("我是中文abcd123"));
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let c = sample();
        assert_eq!(
            c.verify(
                "477715d11cdb4164915debcba66cb864d751f3e7",
                "1409659813",
                "1372623149",
                POST_ENCRYPT
            ),
            Err(WeworkError::Signature)
        );
        let other_corp = WeworkCrypto::new(TOKEN, AES_KEY, "ww0000000000000000").expect("key");
        assert!(matches!(
            other_corp.decrypt(POST_ENCRYPT),
            Err(WeworkError::ReceiveId(id)) if id == CORP
        ));
        assert_eq!(c.decrypt("not base64!"), Err(WeworkError::Ciphertext));
        assert_eq!(c.decrypt("AAAA"), Err(WeworkError::Ciphertext));
        assert!(WeworkCrypto::new(TOKEN, "short", CORP).is_err());
        assert!(matches!(
            encrypted_part("<xml><ToUserName>x</ToUserName></xml>"),
            Err(WeworkError::Xml(m)) if m.contains("Encrypt")
        ));
        assert!(matches!(
            encrypted_part("<xml><Encrypt>"),
            Err(WeworkError::Xml(_))
        ));
        // No DTDs, so no entity expansion.
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><xml><Encrypt>&lol;</Encrypt></xml>"#;
        assert!(matches!(encrypted_part(bomb), Err(WeworkError::Xml(_))));
    }

    #[test]
    fn events_map_to_kinds_or_say_why_not() {
        let event = |msg_type: &str, ev: Option<&str>| WeworkEvent {
            from_user: "u1".into(),
            create_time: 1,
            msg_type: msg_type.into(),
            event: ev.map(str::to_owned),
            agent_id: None,
            msg_id: None,
            content: None,
        };
        assert_eq!(event("text", None).kind(), Ok(EventKind::Replied));
        assert_eq!(
            event("event", Some("enter_agent")).kind(),
            Ok(EventKind::Read)
        );
        assert_eq!(
            event("event", Some("template_card_event")).kind(),
            Ok(EventKind::Clicked)
        );
        assert!(event("event", Some("change_contact"))
            .kind()
            .expect_err("refused")
            .contains("change_contact"));
        assert_eq!(
            event("event", Some("enter_agent")).dedupe_key(),
            "wework:event:u1:1:enter_agent"
        );
    }

    proptest! {
        #[test]
        fn any_message_round_trips(msg in "\\PC{0,300}", random in any::<[u8; 16]>()) {
            let c = sample();
            let cipher = c.encrypt(&msg, random);
            let sig = c.signature("1700000000", "42", &cipher);
            prop_assert_eq!(c.verify(&sig, "1700000000", "42", &cipher), Ok(()));
            prop_assert_eq!(c.decrypt(&cipher), Ok(msg));
        }
    }
}
