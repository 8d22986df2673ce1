//! The gRPC enqueue API end to end, through the client that
//! `services/producer/examples/grpc_send.rs` uses
//! (`herald_proto::grpc::connect`).

use std::time::Duration;

use herald_e2e::Harness;
use herald_proto::grpc::{connect, error_detail, EnqueueClient};
use herald_proto::v1;
use herald_sim::SimChannel;
use herald_testing::{unique, wait_for};

fn email(i: usize) -> v1::SendRequest {
    v1::SendRequest {
        channel: v1::Channel::Email as i32,
        to: format!("grpc{i}@example.com"),
        subject: "Hello".into(),
        text: format!("message {i}"),
        ..Default::default()
    }
}

async fn stream(
    client: &mut EnqueueClient,
    items: Vec<v1::SendRequest>,
) -> Result<Vec<String>, tonic::Status> {
    client
        .send_stream(futures::stream::iter(items))
        .await
        .map(|r| r.into_inner().ids)
}

async fn count_messages(h: &Harness) -> i64 {
    let db = h.db().await.expect("db");
    let n = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&db)
        .await
        .expect("count");
    db.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_sends_and_streams_arrive_exactly_once() {
    let h = Harness::start(1).await.expect("herald starts");
    h.sim_providers().await.expect("providers");
    let (_tenant, key) = h.tenant(&unique("grpc")).await.expect("tenant");
    let mut client = connect(&h.grpc_url, &key).await.expect("connects");

    let one = client
        .send(email(0))
        .await
        .expect("unary send")
        .into_inner();
    assert_eq!(one.status, "queued");
    // 1,500 items: one whole chunk of 1,000 and one of 500.
    let ids = stream(&mut client, (1..=1500).map(email).collect())
        .await
        .expect("stream accepted");
    assert_eq!(ids.len(), 1500);
    let mut all = ids.clone();
    all.push(one.id.clone());

    let done = wait_for(Duration::from_secs(120), || async {
        all.iter()
            .filter(|id| h.sim.count(SimChannel::Email, id) >= 1)
            .count()
            == all.len()
    })
    .await;
    assert!(done, "not every gRPC message reached the simulator");
    for id in &all {
        assert_eq!(h.sim.count(SimChannel::Email, id), 1, "message {id}");
    }
    let recorded = wait_for(Duration::from_secs(30), || {
        let mut client = client.clone();
        let id = one.id.clone();
        async move {
            client
                .get_message(v1::GetMessageRequest { id })
                .await
                .is_ok_and(|r| r.get_ref().status == "sent")
        }
    })
    .await;
    assert!(recorded, "the unary send was not recorded sent");
    let record = client
        .get_message(v1::GetMessageRequest { id: one.id.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(record.id, one.id);
    assert_eq!(record.to, "grpc0@example.com");
    assert_eq!(record.channel, v1::Channel::Email as i32);
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_item_rejects_its_whole_chunk_and_is_named_by_index() {
    let h = Harness::start(0).await.expect("herald starts");
    let (_tenant, key) = h.tenant(&unique("grpc")).await.expect("tenant");
    let mut client = connect(&h.grpc_url, &key).await.expect("connects");

    // Index 7 of the first chunk: nothing of the stream is accepted.
    let mut items: Vec<v1::SendRequest> = (0..20).map(email).collect();
    items[7].to = "not an address".into();
    let status = stream(&mut client, items).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let detail = error_detail(&status).expect("the status carries the API error");
    assert_eq!(
        (
            detail.code.as_str(),
            detail.field.as_str(),
            detail.index,
            detail.accepted
        ),
        ("invalid_field", "to", 7, 0),
        "{detail:?}"
    );
    assert_eq!(count_messages(&h).await, 0, "nothing of the chunk was kept");

    // Index 1,003, in the second chunk: the first chunk stays accepted.
    let mut items: Vec<v1::SendRequest> = (0..1010).map(email).collect();
    items[1003].channel = 0;
    let status = stream(&mut client, items).await.expect_err("refused");
    let detail = error_detail(&status).expect("details");
    assert_eq!(
        (detail.field.as_str(), detail.index, detail.accepted),
        ("channel", 1003, 1000),
        "{detail:?}"
    );
    assert_eq!(count_messages(&h).await, 1000);

    // An empty stream is refused like an empty batch.
    let status = stream(&mut client, Vec::new()).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_without_a_valid_key_are_refused_with_the_api_code() {
    let h = Harness::start(0).await.expect("herald starts");
    let mut client = connect(&h.grpc_url, "not-a-key").await.expect("connects");
    let status = client.send(email(0)).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let detail = error_detail(&status).expect("details");
    assert_eq!(detail.code, "unauthorized");

    let (_tenant, key) = h.tenant(&unique("grpc")).await.expect("tenant");
    let mut client = connect(&h.grpc_url, &key).await.expect("connects");
    let status = client
        .get_message(v1::GetMessageRequest {
            id: "no-such-id".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::NotFound);
    let mut bad = email(0);
    bad.priority = 11;
    let status = client.send(bad).await.expect_err("refused");
    let detail = error_detail(&status).expect("details");
    assert_eq!((detail.field.as_str(), detail.index), ("priority", -1));
    h.stop().await.expect("clean stop");
}
