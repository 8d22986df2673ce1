//! A small client of the gRPC enqueue API: one unary send, then a stream.
//!
//! ```text
//! cargo run -p herald-producer --example grpc_send -- \
//!     --addr http://127.0.0.1:50051 --key "$HERALD_API_KEY" --to you@example.com --count 2500
//! ```
//!
//! On an error it prints the API's error code (docs/API.md), field and index the status
//! carries, and for a stream how many items were accepted before it.

use herald_proto::grpc::{connect, error_detail};
use herald_proto::v1;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next();
    args.next()
}

fn explain(status: &tonic::Status) -> String {
    match error_detail(status) {
        Some(d) => format!(
            "{:?}: {} (code {}, field {:?}, index {}, accepted {})",
            status.code(),
            d.message,
            d.code,
            d.field,
            d.index,
            d.accepted
        ),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = arg("--addr").unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let key = arg("--key")
        .or_else(|| std::env::var("HERALD_API_KEY").ok())
        .ok_or("pass --key <tenant API key> or set HERALD_API_KEY")?;
    let to = arg("--to").unwrap_or_else(|| "someone@example.com".into());
    let count: usize = arg("--count").map_or(Ok(2500), |c| c.parse())?;
    let message = move |i: usize| v1::SendRequest {
        channel: v1::Channel::Email as i32,
        to: to.clone(),
        subject: format!("Hello #{i}"),
        text: "Sent through Herald's gRPC API.".into(),
        ..Default::default()
    };

    let mut client = connect(&addr, &key).await?;
    match client.send(message(0)).await {
        Ok(r) => println!("sent {} ({})", r.get_ref().id, r.get_ref().status),
        Err(status) => return Err(explain(&status).into()),
    }
    let items = futures::stream::iter((1..=count).map(message));
    match client.send_stream(items).await {
        Ok(r) => println!("streamed {} messages", r.get_ref().ids.len()),
        Err(status) => return Err(explain(&status).into()),
    }
    Ok(())
}
