//! `herald queues`: every queue of the deployment, its ready messages and
//! consumers (RabbitMQ's passive declare; no rates: those need the
//! management API, which Herald does not use).

use std::io::Write;

use serde_json::Value;

use crate::table::{cell, Table};
use crate::Context;

/// The queues as a table, in the API's order; a missing queue says `absent`.
pub fn table(queues: &[Value]) -> Table {
    let mut t = Table::new(&["NAME", "KIND", "MESSAGES", "CONSUMERS"])
        .right("MESSAGES")
        .right("CONSUMERS");
    for q in queues {
        let (messages, consumers) = if q["exists"].as_bool() == Some(false) {
            ("absent".to_owned(), String::new())
        } else {
            (cell(&q["messages"]), cell(&q["consumers"]))
        };
        t.row(vec![
            cell(&q["name"]),
            cell(&q["kind"]),
            messages,
            consumers,
        ]);
    }
    t
}

pub async fn run(cx: &Context, out: &mut impl Write) -> anyhow::Result<()> {
    let list = cx.admin.get("/v1/admin/queues").await?;
    if !cx.json(out, &list)? {
        table(list["items"].as_array().map_or(&[], Vec::as_slice)).write(out)?;
    }
    Ok(())
}
