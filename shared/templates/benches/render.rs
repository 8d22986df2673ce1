//! What a template costs per message: a render of a typical campaign email
//! (subject, text and HTML with five variables), and the compile a cache
//! miss adds.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use herald_domain::{Channel, TemplateParts};

fn parts() -> TemplateParts {
    TemplateParts {
        subject: Some("{{ first_name }}, your {{ product }} offer".into()),
        text: Some(
            "Hello {{ first_name }} {{ last_name }},\n\nYour {{ product }} is waiting.\n\
             {% if coupon %}Use {{ coupon }} at checkout.{% endif %}\n\nUnsubscribe: {{ unsubscribe }}\n"
                .into(),
        ),
        html: Some(
            "<html><body><p>Hello {{ first_name }} {{ last_name }},</p>\
             <p>Your <b>{{ product }}</b> is waiting.</p>\
             {% if coupon %}<p>Use <code>{{ coupon }}</code> at checkout.</p>{% endif %}\
             <p><a href=\"{{ unsubscribe }}\">Unsubscribe</a></p></body></html>"
                .into(),
        ),
        ..TemplateParts::default()
    }
}

fn bench(c: &mut Criterion) {
    let compiled = herald_templates::compile(Channel::Email, &parts()).expect("compiles");
    let vars: BTreeMap<String, String> = [
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("product", "Analytical Engine <Deluxe>"),
        ("coupon", "WELCOME10"),
        ("unsubscribe", "https://example.com/u/abc?x=1&y=2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    c.bench_function("render_email", |b| {
        b.iter(|| compiled.render(&vars).expect("renders"))
    });
    c.bench_function("compile_email", |b| {
        b.iter(|| herald_templates::compile(Channel::Email, &parts()).expect("compiles"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
