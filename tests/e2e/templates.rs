//! Templates through the whole pipeline: the worker renders the version
//! pinned at enqueue (even after a newer version and a delete), on every
//! channel, with HTML escaped and WeWork text cards sent as cards.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_api::{NewTemplate, SendMessage, TemplateBody, TemplateVersion};
use herald_domain::{Channel, TemplateId, Textcard};
use herald_e2e::Harness;
use herald_sim::SimChannel;
use herald_testing::{unique, wait_for_value};

fn vars(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// A message of `channel` to `to` from template `id` with `variables`.
fn from_template(
    channel: Channel,
    to: &str,
    id: TemplateId,
    variables: Option<BTreeMap<String, String>>,
) -> SendMessage {
    SendMessage {
        text: None,
        template_id: Some(id.to_string()),
        variables,
        ..SendMessage::new(channel, to, "")
    }
}

/// What the simulator last received for `id` on `channel`, once it has.
async fn received(h: &Harness, channel: SimChannel, id: &str) -> serde_json::Value {
    wait_for_value(
        Duration::from_secs(30),
        || {
            let sim = h.sim.clone();
            let id = id.to_owned();
            async move { sim.last(channel, &id) }
        },
        Option::is_some,
    )
    .await
    .unwrap_or_else(|| panic!("{id} never reached the simulator ({channel:?})"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_renders_the_version_pinned_at_enqueue_on_every_channel() {
    let h = Harness::start(1).await.expect("herald starts");
    h.sim_providers().await.expect("providers");
    h.sim_webhook().await.expect("webhook provider");
    let (_t, key) = h.tenant(&unique("tpl")).await.expect("tenant");
    let client = h.app.client(&key);

    // Email: A is pinned to version 1 and scheduled a few seconds out, so
    // it is sent after version 2 was written and the template deleted.
    let welcome = client
        .create_template(&NewTemplate {
            name: "welcome".into(),
            channel: Channel::Email,
            parts: TemplateBody {
                subject: Some("Hello {{ name }}".into()),
                text: Some("Hi {{ name }}, your code is {{ code }}.".into()),
                ..TemplateBody::default()
            },
        })
        .await
        .expect("created");
    assert_eq!((welcome.version, welcome.current_version), (1, 1));
    assert_eq!(welcome.variables, ["code", "name"]);
    let mut a = from_template(
        Channel::Email,
        "ada@example.com",
        welcome.id,
        vars(&[("name", "Ada"), ("code", "1")]),
    );
    a.scheduled_at = Some((chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339());
    let a = client.send(&a).await.expect("A accepted").id.to_string();
    let v2 = client
        .put_template(
            welcome.id,
            &TemplateVersion {
                name: None,
                channel: Channel::Email,
                parts: TemplateBody {
                    subject: Some("Welcome back, {{ name }}!".into()),
                    text: Some("Hi again {{ name }}.".into()),
                    ..TemplateBody::default()
                },
            },
        )
        .await
        .expect("version 2");
    assert_eq!(v2.version, 2);
    let b = client
        .send(&from_template(
            Channel::Email,
            "bob@example.com",
            welcome.id,
            vars(&[("name", "Bob")]),
        ))
        .await
        .expect("B accepted")
        .id
        .to_string();
    client.delete_template(welcome.id).await.expect("deleted");
    let refused = client
        .send(&from_template(
            Channel::Email,
            "eve@example.com",
            welcome.id,
            vars(&[("name", "Eve")]),
        ))
        .await
        .expect_err("a deleted template takes no new message");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(422));
    assert_eq!(
        refused.detail().and_then(|d| d.field.as_deref()),
        Some("template_id")
    );

    assert_eq!(
        received(&h, SimChannel::Email, &b).await["subject"],
        "Welcome back, Bob!"
    );
    assert_eq!(
        received(&h, SimChannel::Email, &a).await["subject"],
        "Hello Ada"
    );

    // WeWork: a text card.
    let card = client
        .create_template(&NewTemplate {
            name: "shipped".into(),
            channel: Channel::Wework,
            parts: TemplateBody {
                textcard: Some(Textcard {
                    title: "Order {{ order }} shipped".into(),
                    description: "It arrives {{ day }}.".into(),
                    url: "https://shop.example/orders/{{ order }}".into(),
                    btntxt: Some("查看".into()),
                }),
                ..TemplateBody::default()
            },
        })
        .await
        .expect("card template");
    let w = client
        .send(&from_template(
            Channel::Wework,
            "u1|u2",
            card.id,
            vars(&[("order", "A-7"), ("day", "Friday")]),
        ))
        .await
        .expect("accepted")
        .id
        .to_string();
    let body = &received(&h, SimChannel::Wework, &w).await["body"];
    assert_eq!(body["msgtype"], "textcard");
    assert_eq!(body["textcard"]["title"], "Order A-7 shipped");
    assert_eq!(body["textcard"]["url"], "https://shop.example/orders/A-7");
    assert_eq!(body["textcard"]["btntxt"], "查看");

    // Webhook: HTML escaped, text verbatim.
    let hook = client
        .create_template(&NewTemplate {
            name: "hook".into(),
            channel: Channel::Webhook,
            parts: TemplateBody {
                text: Some("{{ who }} ordered".into()),
                html: Some("<b>{{ who }}</b> ordered".into()),
                ..TemplateBody::default()
            },
        })
        .await
        .expect("webhook template");
    let to = format!("http://127.0.0.1:{}/webhook/tpl", h.sim_http_port);
    let k = client
        .send(&from_template(
            Channel::Webhook,
            &to,
            hook.id,
            vars(&[("who", "<script>x</script>")]),
        ))
        .await
        .expect("accepted")
        .id
        .to_string();
    let body = &received(&h, SimChannel::Webhook, &k).await["body"];
    assert_eq!(body["text"], "<script>x</script> ordered");
    assert_eq!(
        body["html"],
        "<b>&lt;script&gt;x&lt;&#x2f;script&gt;</b> ordered"
    );
    assert_eq!(body["template_id"], hook.id.to_string().as_str());
    assert_eq!(body["template_version"], 1);
    h.stop().await.expect("clean stop");
}
