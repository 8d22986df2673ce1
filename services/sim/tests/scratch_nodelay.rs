use std::time::{Duration, Instant};
use herald_sim::{Sim, SimConfig};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;

async fn run(nodelay: bool) -> Duration {
    let sim = Sim::build(SimConfig::ephemeral()).await.unwrap();
    let port = sim.smtp_port();
    tokio::spawn(sim.run(std::future::pending()));
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(nodelay).unwrap();
    let mut c = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &ClientId::Domain("x".into())).await.unwrap();
    let m = Message::builder().from("a@b.c".parse().unwrap()).to("d@e.f".parse().unwrap()).subject("s").body("hi".to_owned()).unwrap();
    let start = Instant::now();
    for _ in 0..100 { c.send(m.envelope(), &m.formatted()).await.unwrap(); }
    start.elapsed()
}

#[tokio::test]
async fn scratch() {
    println!("nodelay=false {:?}", run(false).await);
    println!("nodelay=true {:?}", run(true).await);
}
