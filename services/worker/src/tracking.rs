//! Open and click tracking of HTML email, for tenants that opt in (issue 17
//! part 6): at send time each http(s) link of the HTML part becomes a
//! signed redirect through Herald (`/t/c/{token}`, the destination inside
//! the signed token, so no other URL can be reached through it), and a 1×1
//! pixel (`/t/o/{token}`) is added before `</body>`. The text part is left
//! as it is. Herald's own links (unsubscribe, already tracked) are not
//! rewritten.

use std::sync::LazyLock;

use herald_callbacks::links::{Links, MAX_CLICK_URL};
use regex::{Captures, Regex};
use uuid::Uuid;

/// `<a … href="http(s)://…"` (either quote), up to the URL's end.
static HREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?is)(<a\b[^>]*?\bhref\s*=\s*)(["'])\s*(https?://[^"'\s]+)\s*(["'])"#)
        .expect("the link pattern")
});
static BODY_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)</body\s*>").expect("the body pattern"));

/// The URL an href's text stands for: HTML's `&amp;` is `&`.
fn unescape(href: &str) -> String {
    href.replace("&amp;", "&").replace("&#38;", "&")
}

/// `html` with its links rewritten (`clicks`) and the pixel added
/// (`opens`), for `message`.
pub fn instrument(html: &str, links: &Links, message: Uuid, opens: bool, clicks: bool) -> String {
    let own = links.base();
    let mut out = if clicks {
        HREF.replace_all(html, |c: &Captures<'_>| {
            let (open_quote, close_quote) = (&c[2], &c[4]);
            let url = unescape(&c[3]);
            let ours =
                url.starts_with(&format!("{own}/u/")) || url.starts_with(&format!("{own}/t/"));
            if open_quote != close_quote || ours || url.len() > MAX_CLICK_URL {
                return c[0].to_owned();
            }
            format!(
                "{}{open_quote}{}{close_quote}",
                &c[1],
                links.click_url(message, &url)
            )
        })
        .into_owned()
    } else {
        html.to_owned()
    };
    if opens {
        let pixel = format!(
            r#"<img src="{}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">"#,
            links.open_url(message)
        );
        match BODY_END.find_iter(&out).last() {
            Some(end) => out.insert_str(end.start(), &pixel),
            None => out.push_str(&pixel),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        Links::new(b"key", "https://herald.example")
    }

    #[test]
    fn links_become_signed_redirects_to_exactly_their_destination() {
        let id = Uuid::now_v7();
        let html = r##"<html><body><p><a href="https://shop.example/sale?a=1&amp;b=2">Sale</a>
            <A class="x" HREF='http://blog.example/post'>Blog</A>
            <a href="mailto:help@shop.example">Mail</a> <a href="#top">Top</a>
            <a href="https://herald.example/u/abc">Unsubscribe</a></p></body></html>"##;
        let out = instrument(html, &links(), id, false, true);
        let tracked: Vec<&str> = out
            .split("https://herald.example/t/c/")
            .skip(1)
            .map(|rest| rest.split(['"', '\'']).next().expect("a value"))
            .collect();
        assert_eq!(tracked.len(), 2, "{out}");
        assert_eq!(
            links().verify_click(tracked[0]),
            Some((id, "https://shop.example/sale?a=1&b=2".to_owned()))
        );
        assert_eq!(
            links().verify_click(tracked[1]),
            Some((id, "http://blog.example/post".to_owned()))
        );
        for kept in [
            "mailto:help@shop.example",
            "#top",
            "https://herald.example/u/abc",
            ">Sale</a>",
        ] {
            assert!(out.contains(kept), "{kept} is kept: {out}");
        }
        assert!(!out.contains("/t/o/"), "no pixel without opens");
    }

    #[test]
    fn the_pixel_goes_before_the_body_end_or_at_the_end() {
        let id = Uuid::now_v7();
        let out = instrument("<html><BODY>Hi</BODY></html>", &links(), id, true, false);
        let at = out.find("/t/o/").expect("a pixel");
        assert!(at < out.find("</BODY>").expect("a value"), "{out}");
        let token = out[at + 5..].split('"').next().expect("a value");
        assert_eq!(links().verify_open(token), Some(id));
        let bare = instrument("<p>Hi</p>", &links(), id, true, true);
        assert!(
            bare.starts_with("<p>Hi</p><img src=\"https://herald.example/t/o/"),
            "{bare}"
        );
    }

    #[test]
    fn nothing_changes_when_tracking_is_off() {
        let html = r#"<a href="https://x.example">x</a></body>"#;
        assert_eq!(
            instrument(html, &links(), Uuid::now_v7(), false, false),
            html
        );
    }
}
