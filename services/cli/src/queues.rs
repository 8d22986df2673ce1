//! `herald queues`: every queue of the deployment, its ready messages and
//! consumers (RabbitMQ's passive declare; no rates: those need the
//! management API, which Herald does not use).

use std::io::Write;

use herald_api::{Page, QueueDepth};

use crate::client::Explain;
use crate::table::{opt, Table};
use crate::Context;

/// The queues as a table, in the API's order; a missing queue says `absent`.
pub fn table(queues: &[QueueDepth]) -> Table {
    let mut t = Table::new(&["NAME", "KIND", "MESSAGES", "CONSUMERS"])
        .right("MESSAGES")
        .right("CONSUMERS");
    for q in queues {
        let (messages, consumers) = if q.exists {
            (opt(q.messages), opt(q.consumers))
        } else {
            ("absent".to_owned(), String::new())
        };
        t.row(vec![q.name.clone(), q.kind.clone(), messages, consumers]);
    }
    t
}

pub async fn run(cx: &Context, out: &mut impl Write) -> anyhow::Result<()> {
    let items = cx.admin.api.queues().await.explained(&cx.admin)?;
    let list = Page {
        items,
        next_cursor: None,
    };
    if !cx.json(out, &list)? {
        table(&list.items).write(out)?;
    }
    Ok(())
}
