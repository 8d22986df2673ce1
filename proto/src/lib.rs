//! Herald's wire contract, generated from `proto/herald/v1`.
//!
//! Jobs travel on the broker as protobuf [`v1::Job`] messages, alone or
//! several in a [`v1::JobBatch`] ([`jobs`] packs and reads both); the gRPC
//! enqueue API and callback events live beside them. [`grpc`] holds what
//! both ends of the enqueue API share: the error details a failed call
//! carries, and a client that sends the API key.

#[allow(clippy::all, clippy::unwrap_used, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/herald.v1.rs"));
}

pub mod grpc;
pub mod jobs;

pub use prost::Message;
