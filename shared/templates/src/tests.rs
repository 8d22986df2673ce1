use std::collections::BTreeMap;

use herald_domain::{Channel, TemplateParts, Textcard};
use proptest::prelude::*;

use super::*;

fn email(subject: &str, text: Option<&str>, html: Option<&str>) -> TemplateParts {
    TemplateParts {
        subject: Some(subject.into()),
        text: text.map(Into::into),
        html: html.map(Into::into),
        ..TemplateParts::default()
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn renders_every_part_of_an_email() {
    let t = compile(
        Channel::Email,
        &email(
            "Hello {{ name }}",
            Some("Dear {{ name }}, your code is {{ code }}."),
            Some("<p>Dear {{ name }}</p>"),
        ),
    )
    .expect("compiles");
    assert_eq!(
        t.variables().iter().cloned().collect::<Vec<_>>(),
        ["code", "name"]
    );
    let out = t
        .render(&vars(&[("name", "Ada"), ("code", "42")]))
        .expect("renders");
    assert_eq!(out.subject.as_deref(), Some("Hello Ada"));
    assert_eq!(out.text.as_deref(), Some("Dear Ada, your code is 42."));
    assert_eq!(out.html.as_deref(), Some("<p>Dear Ada</p>"));
}

#[test]
fn html_is_escaped_and_text_is_not() {
    let t = compile(
        Channel::Email,
        &email("{{ v }}", Some("{{ v }}"), Some("<b>{{ v }}</b>")),
    )
    .expect("compiles");
    let out = t
        .render(&vars(&[("v", "<script>\"x\" & 'y'</script>")]))
        .expect("renders");
    assert_eq!(out.text.as_deref(), Some("<script>\"x\" & 'y'</script>"));
    let html = out.html.expect("html");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.starts_with("<b>&lt;script&gt;&quot;x&quot; &amp; "),
        "{html}"
    );
}

#[test]
fn a_missing_printed_variable_is_named() {
    let t = compile(
        Channel::Email,
        &email(
            "Hi {{ first_name }}",
            Some("{{ greeting }} {{ first_name }}"),
            None,
        ),
    )
    .expect("compiles");
    let e = t
        .render(&vars(&[("greeting", "Hello")]))
        .expect_err("refused");
    assert_eq!(e.field, "variables");
    assert!(e.message.contains("\"first_name\""), "{}", e.message);
    assert!(e.message.contains("subject"), "{}", e.message);
}

#[test]
fn a_variable_only_tested_may_be_absent() {
    let t = compile(
        Channel::Email,
        &email(
            "Offer",
            Some("Hello{% if coupon %}, use {{ coupon }}{% endif %}."),
            None,
        ),
    )
    .expect("compiles");
    assert_eq!(
        t.render(&BTreeMap::new()).expect("renders").text.as_deref(),
        Some("Hello.")
    );
    assert_eq!(
        t.render(&vars(&[("coupon", "X1")]))
            .expect("renders")
            .text
            .as_deref(),
        Some("Hello, use X1.")
    );
}

#[test]
fn a_syntax_error_names_the_part_and_line() {
    let e = compile(
        Channel::Email,
        &email(
            "Hi",
            Some("line one\nline two\n{% if x %}never closed"),
            None,
        ),
    )
    .expect_err("refused");
    assert_eq!(e.field, "text");
    assert!(e.message.contains("line 3"), "{}", e.message);
    let e =
        compile(Channel::Email, &email("Hi", None, Some("<p>{{ name </p>"))).expect_err("refused");
    assert_eq!(e.field, "html");
    assert!(e.message.contains("line 1"), "{}", e.message);
}

#[test]
fn each_channel_has_its_parts() {
    let e = compile(
        Channel::Email,
        &TemplateParts {
            text: Some("x".into()),
            ..Default::default()
        },
    )
    .expect_err("refused");
    assert_eq!(e.field, "subject");
    let e = compile(Channel::Email, &email("a\nb", Some("x"), None)).expect_err("refused");
    assert_eq!(e.field, "subject");
    let e = compile(
        Channel::Wework,
        &TemplateParts {
            text: Some("a".into()),
            markdown: Some("b".into()),
            ..Default::default()
        },
    )
    .expect_err("refused");
    assert_eq!(e.field, "text");
    let e = compile(
        Channel::Wework,
        &TemplateParts {
            html: Some("a".into()),
            ..Default::default()
        },
    )
    .expect_err("refused");
    assert_eq!(e.field, "html");
    let e = compile(Channel::Webhook, &email("s", Some("t"), None)).expect_err("refused");
    assert_eq!(e.field, "subject");
    compile(
        Channel::Webhook,
        &TemplateParts {
            text: Some("{{ a }}".into()),
            ..Default::default()
        },
    )
    .expect("a webhook template of text");
}

#[test]
fn wework_markdown_travels_as_html_and_a_textcard_as_itself() {
    let md = compile(
        Channel::Wework,
        &TemplateParts {
            markdown: Some("**{{ who }}**".into()),
            ..Default::default()
        },
    )
    .expect("compiles");
    let content = into_content(
        md.render(&vars(&[("who", "<Ada>")])).expect("renders"),
        Default::default(),
    );
    assert_eq!(content.html, "**<Ada>**");
    assert!(content.text.is_empty());

    let card = compile(
        Channel::Wework,
        &TemplateParts {
            textcard: Some(Textcard {
                title: "Order {{ order }}".into(),
                description: "Shipped".into(),
                url: "https://shop.example/o/{{ order }}".into(),
                btntxt: Some("查看".into()),
            }),
            ..Default::default()
        },
    )
    .expect("compiles");
    let content = into_content(
        card.render(&vars(&[("order", "7")])).expect("renders"),
        Default::default(),
    );
    let c = content.textcard.expect("a card");
    assert_eq!(c.title, "Order 7");
    assert_eq!(c.url, "https://shop.example/o/7");
    assert_eq!(c.btntxt, "查看");
    let e = card
        .render(&vars(&[("order", "7 x")]))
        .expect_err("refused");
    assert!(e.message.contains("textcard.url"), "{}", e.message);
}

#[test]
fn a_rendered_subject_stays_one_line() {
    let t = compile(Channel::Email, &email("Hi {{ name }}", Some("x"), None)).expect("compiles");
    let e = t
        .render(&vars(&[("name", "Ada\r\nBcc: victim@example.com")]))
        .expect_err("refused");
    assert!(e.message.contains("line break"), "{}", e.message);
}

#[test]
fn an_endless_template_runs_out_of_fuel() {
    let t = compile(
        Channel::Email,
        &email(
            "x",
            Some("{% for a in range(1000) %}{% for b in range(1000) %}{{ a }}{% endfor %}{% endfor %}"),
            None,
        ),
    )
    .expect("compiles");
    let e = t.render(&BTreeMap::new()).expect_err("refused");
    assert_eq!(e.field, "variables");
    assert!(e.message.contains("text"), "{}", e.message);
}

#[test]
fn the_rendered_size_is_capped() {
    let t = compile(
        Channel::Email,
        &email("x", Some("{{ v }}{{ v }}{{ v }}{{ v }}{{ v }}"), None),
    )
    .expect("compiles");
    let big = "a".repeat(60 * 1024);
    let e = t.render(&vars(&[("v", &big)])).expect_err("refused");
    assert!(e.message.contains("at most"), "{}", e.message);
}

#[test]
fn templates_cannot_reach_each_other() {
    // Every compiled version has its own environment: an include of a
    // name that is another tenant's part does not resolve.
    let e = compile(
        Channel::Email,
        &email("x", Some("{% include 'html' %}"), None),
    )
    .and_then(|t| t.render(&BTreeMap::new()));
    assert!(e.is_err());
}

#[test]
fn the_cache_is_bounded() {
    let cache = Cache::new(2);
    for v in 1..=5u32 {
        let t = compile(Channel::Email, &email("s", Some("t"), None)).expect("compiles");
        cache.insert((uuid::Uuid::nil(), uuid::Uuid::nil(), v), t);
        assert!(cache.len() <= 2);
    }
    assert!(cache
        .get(&(uuid::Uuid::nil(), uuid::Uuid::nil(), 5))
        .is_some());
}

proptest! {
    /// Whatever a variable holds, the text part is it verbatim and the
    /// HTML part holds none of its markup characters unescaped.
    #[test]
    fn any_variable_is_escaped_in_html_only(v in "\\PC{0,64}") {
        let t = compile(Channel::Email, &email("s", Some("{{ v }}"), Some("{{ v }}"))).expect("compiles");
        let out = t.render(&vars(&[("v", &v)])).expect("renders");
        prop_assert_eq!(out.text.as_deref(), Some(v.as_str()));
        let html = out.html.expect("html");
        prop_assert!(!html.contains('<') && !html.contains('>') && !html.contains('"'));
    }
}
