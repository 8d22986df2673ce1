//! Herald's wire contract, generated from `proto/herald/v1`.
//!
//! Jobs travel on the broker as protobuf [`v1::Job`] messages; the gRPC
//! enqueue API and callback events live beside them.

#[allow(clippy::all, clippy::unwrap_used, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/herald.v1.rs"));
}

pub use prost::Message;
