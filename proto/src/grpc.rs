//! The gRPC enqueue API's shared parts.
//!
//! A failed call's status carries a `google.rpc.Status` in
//! `grpc-status-details-bin` whose one detail is a [`v1::ErrorDetail`] packed
//! in an `Any`, so clients of any language read the API's code (docs/API.md), field and
//! index the same way ([`error_detail`]).

use prost::Message;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::v1;

/// The `Any` type URL of [`v1::ErrorDetail`].
pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/herald.v1.ErrorDetail";

/// `google.rpc.Status`, the standard envelope of rich gRPC errors.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// A status with `detail` in its details.
pub fn status_with_detail(code: tonic::Code, detail: &v1::ErrorDetail) -> tonic::Status {
    let envelope = RpcStatus {
        code: code as i32,
        message: detail.message.clone(),
        details: vec![prost_types::Any {
            type_url: ERROR_DETAIL_TYPE_URL.to_owned(),
            value: detail.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(
        code,
        detail.message.clone(),
        envelope.encode_to_vec().into(),
    )
}

/// The [`v1::ErrorDetail`] a failed call carries, if it carries one.
pub fn error_detail(status: &tonic::Status) -> Option<v1::ErrorDetail> {
    let envelope = RpcStatus::decode(status.details()).ok()?;
    envelope
        .details
        .iter()
        .find(|any| any.type_url == ERROR_DETAIL_TYPE_URL)
        .and_then(|any| v1::ErrorDetail::decode(any.value.as_slice()).ok())
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct BearerAuth(MetadataValue<Ascii>);

impl tonic::service::Interceptor for BearerAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// An enqueue client that sends `api_key` with every call.
pub type EnqueueClient = v1::enqueue_client::EnqueueClient<InterceptedService<Channel, BearerAuth>>;

/// The largest answer [`connect`]'s client reads: a `SendStream` answer for
/// about 7 million items.
pub const MAX_ANSWER: usize = 256 * 1024 * 1024;

/// Connects to the producer's gRPC address (`http://127.0.0.1:50051`).
pub async fn connect(address: &str, api_key: &str) -> Result<EnqueueClient, ConnectError> {
    let auth: MetadataValue<Ascii> = format!("Bearer {api_key}")
        .parse()
        .map_err(|_| ConnectError::Key)?;
    let channel = Endpoint::from_shared(address.to_owned())
        .map_err(|e| ConnectError::Address(address.to_owned(), e.to_string()))?
        .connect()
        .await
        .map_err(|e| ConnectError::Unreachable(address.to_owned(), e.to_string()))?;
    // A stream's answer lists every id (about 38 bytes each): allow long
    // streams' answers past tonic's 4 MiB default.
    Ok(
        v1::enqueue_client::EnqueueClient::with_interceptor(channel, BearerAuth(auth))
            .max_decoding_message_size(MAX_ANSWER),
    )
}

/// Why [`connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    Key,
    Address(String, String),
    Unreachable(String, String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Key => write!(f, "the API key holds characters a header cannot carry"),
            ConnectError::Address(a, e) => write!(f, "{a:?} is not a gRPC address: {e}"),
            ConnectError::Unreachable(a, e) => {
                write!(f, "cannot reach the producer's gRPC API at {a}: {e}")
            }
        }
    }
}

impl std::error::Error for ConnectError {}
