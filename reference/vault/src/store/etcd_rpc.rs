//! A small etcd v3 gRPC client: the three calls the etcd store makes (`KV/Range`, `KV/Txn`,
//! `Auth/Authenticate`) over tonic's balanced channel.
//!
//! The messages are written out with `prost`'s derive from etcd's `api/etcdserverpb/rpc.proto`
//! and `api/mvccpb/kv.proto` (etcd v3.5, Apache-2.0), keeping only the fields Coffer sends or
//! reads; field numbers are those of the `.proto` files, and fields left out are skipped on
//! decoding as protobuf requires. Hand-written rather than generated so that building Coffer
//! needs no `protoc` (the etcd-client crate ran it from its build script, which broke the
//! build on a machine with only the Rust toolchain); the subset is small and etcd's v3 wire
//! format is stable.
//!
//! What the client does beyond sending a message, as etcd's own Go client does: it spreads
//! calls over the members it is given, asks every member to refuse when it has no leader
//! (`hasleader` metadata) instead of answering from stale state, authenticates with the
//! configured user and sends the token with every call, and when a member says the token has
//! expired, authenticates again (once for all calls that noticed) and retries that call once.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tonic::client::Grpc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;
use zeroize::Zeroizing;

/// `mvccpb.KeyValue`, without `lease` (6).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `RangeRequest.SortOrder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(super) enum SortOrder {
    None = 0,
    Ascend = 1,
    Descend = 2,
}

/// `RangeRequest.SortTarget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(super) enum SortTarget {
    Key = 0,
    Version = 1,
    Create = 2,
    Mod = 3,
    Value = 4,
}

/// `etcdserverpb.RangeRequest`: the keys in `[key, range_end)`, or `key` alone when
/// `range_end` is empty. Revision 0 (field 4, left out) is the latest; the read is
/// linearizable (`serializable`, field 7, left false).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    /// The store's revision to read at (0: the latest).
    #[prost(int64, tag = "4")]
    pub revision: i64,
    #[prost(enumeration = "SortOrder", tag = "5")]
    pub sort_order: i32,
    #[prost(enumeration = "SortTarget", tag = "6")]
    pub sort_target: i32,
    #[prost(int64, tag = "12")]
    pub min_create_revision: i64,
}

impl RangeRequest {
    /// One key.
    pub(super) fn key(key: &str) -> Self {
        RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    /// Every key that starts with `prefix`, oldest first, created at `min_create_revision`
    /// or later, at most `limit` of them.
    pub(super) fn prefix_by_creation(prefix: &str, min_create_revision: i64, limit: i64) -> Self {
        RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            limit,
            sort_order: SortOrder::Ascend as i32,
            sort_target: SortTarget::Create as i32,
            min_create_revision,
            revision: 0,
        }
    }
}

/// The smallest key after every key that starts with `prefix` (etcd's convention: the last
/// byte below 0xff incremented, the rest dropped; `\0` for "to the end" when there is none).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `etcdserverpb.RangeResponse`: `header` and `kvs` (`more` and `count` are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// `etcdserverpb.ResponseHeader`: only `revision`, the store's revision when the request
/// was served.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ResponseHeader {
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

/// `etcdserverpb.CompactionRequest`: drop every key's history before `revision` (each
/// key's value at `revision` stays); `physical` waits until the backend has removed it.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct CompactionRequest {
    #[prost(int64, tag = "1")]
    pub revision: i64,
    #[prost(bool, tag = "2")]
    pub physical: bool,
}

/// `etcdserverpb.CompactionResponse` (its header is not read).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct CompactionResponse {}

/// `etcdserverpb.PutRequest`, without `lease` (3) and the `prev_kv`/`ignore_*` flags.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.RequestOp`, of which Coffer reads and puts.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RequestOp {
    #[prost(oneof = "Operation", tags = "1, 2")]
    pub request: Option<Operation>,
}

/// `RequestOp.request`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Operation {
    #[prost(message, tag = "1")]
    Range(RangeRequest),
    #[prost(message, tag = "2")]
    Put(PutRequest),
}

/// `etcdserverpb.ResponseOp`: only the answer to a range (a put's answer, field 2, is
/// skipped and leaves `response` empty).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ResponseOp {
    #[prost(oneof = "Response", tags = "1")]
    pub response: Option<Response>,
}

/// `ResponseOp.response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Response {
    #[prost(message, tag = "1")]
    Range(RangeResponse),
}

impl RequestOp {
    /// Reads `key` (in a transaction: at the transaction's revision).
    pub(super) fn range(key: &str) -> Self {
        RequestOp {
            request: Some(Operation::Range(RangeRequest::key(key))),
        }
    }

    /// Sets `key` to `value`.
    pub(super) fn put(key: impl Into<Vec<u8>>, value: Vec<u8>) -> Self {
        RequestOp {
            request: Some(Operation::Put(PutRequest {
                key: key.into(),
                value,
            })),
        }
    }
}

/// `Compare.CompareResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(super) enum CompareResult {
    Equal = 0,
    Greater = 1,
    Less = 2,
    NotEqual = 3,
}

/// `Compare.CompareTarget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(super) enum CompareTarget {
    Version = 0,
    Create = 1,
    Mod = 2,
    Value = 3,
    Lease = 4,
}

/// `etcdserverpb.Compare`: one condition of a transaction, on one key.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Compare {
    #[prost(enumeration = "CompareResult", tag = "1")]
    pub result: i32,
    #[prost(enumeration = "CompareTarget", tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(oneof = "CompareWith", tags = "5, 6")]
    pub target_union: Option<CompareWith>,
}

/// `Compare.target_union`, the revisions only.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum CompareWith {
    #[prost(int64, tag = "5")]
    CreateRevision(i64),
    #[prost(int64, tag = "6")]
    ModRevision(i64),
}

impl Compare {
    /// `key` was created at `revision` (0: `key` does not exist).
    pub(super) fn created_at(key: &str, revision: i64) -> Self {
        Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(CompareWith::CreateRevision(revision)),
        }
    }

    /// `key` was last changed at `revision` (0: `key` does not exist).
    pub(super) fn modified_at(key: &str, revision: i64) -> Self {
        Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(CompareWith::ModRevision(revision)),
        }
    }
}

/// `etcdserverpb.TxnRequest`: if every `compare` holds, `success`, else `failure`; one
/// revision, atomically.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

/// `etcdserverpb.TxnResponse`: `succeeded` and the operations' `responses` (the `header`
/// is not read).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct TxnResponse {
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
    #[prost(message, repeated, tag = "3")]
    pub responses: Vec<ResponseOp>,
}

/// `etcdserverpb.AuthenticateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    password: String,
}

/// `etcdserverpb.AuthenticateResponse`: only the `token`.
#[derive(Clone, PartialEq, prost::Message)]
struct AuthenticateResponse {
    #[prost(string, tag = "2")]
    token: String,
}

const RANGE: &str = "/etcdserverpb.KV/Range";
const TXN: &str = "/etcdserverpb.KV/Txn";
const COMPACT: &str = "/etcdserverpb.KV/Compact";
const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";

/// A failed call.
#[derive(Debug)]
pub(super) enum RpcError {
    /// No member could take the call (none reachable, or the channel broke).
    NotReady(String),
    /// A member's answer, or tonic's for a call that got none (timeout, reset).
    Status(Status),
    /// The configuration cannot make a channel (a bad address or certificate).
    Config(String),
}

impl RpcError {
    /// Whether the call may pass if tried again (a member down or electing a leader, or an
    /// answer lost), as opposed to a definite refusal (credentials, permission, request).
    /// A lost answer may hide a committed write: callers of `txn` must find out which.
    pub(super) fn transient(&self) -> bool {
        match self {
            RpcError::NotReady(_) => true,
            RpcError::Status(status) => matches!(
                status.code(),
                // Cancelled is also what tonic reports when a call's own timeout expires.
                Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Unavailable
            ),
            RpcError::Config(_) => false,
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::NotReady(why) => write!(f, "no member can take the call: {why}"),
            RpcError::Status(status) => {
                write!(f, "{} ({:?})", status.message(), status.code())
            }
            RpcError::Config(why) => f.write_str(why),
        }
    }
}

/// How to reach the members.
pub(super) struct Connection<'a> {
    /// `http://host:port` or `https://host:port` of each member.
    pub endpoints: &'a [String],
    /// PEM of the CA that signs the members' certificates (for `https`).
    pub ca_pem: Option<&'a [u8]>,
    /// PEM of a client certificate and its key, when the members ask for one.
    pub client_pem: Option<(&'a [u8], &'a [u8])>,
    /// Longest one call may take, and one connection attempt.
    pub attempt: Duration,
}

/// The etcd user's name and password.
struct Credentials {
    name: String,
    password: Zeroizing<String>,
}

/// A client of one etcd cluster. Cheap to clone: clones share the channel and the token.
#[derive(Clone)]
pub(super) struct EtcdClient {
    channel: Channel,
    credentials: Option<Arc<Credentials>>,
    token: Arc<RwLock<Option<MetadataValue<Ascii>>>>,
    /// Held while authenticating again, so calls that find the token expired together
    /// authenticate once.
    renewing: Arc<tokio::sync::Mutex<()>>,
}

impl EtcdClient {
    /// A client of the members in `connection`, logged in as `user` if given. Must run on a
    /// tokio runtime (the channel's balancer runs on it). Contacts the cluster only to
    /// authenticate; without a user the first call is the first contact.
    pub(super) async fn connect(
        connection: &Connection<'_>,
        user: Option<(&str, &str)>,
    ) -> Result<Self, RpcError> {
        let tls = if connection.ca_pem.is_some() || connection.client_pem.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = connection.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = connection.client_pem {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            Some(tls)
        } else {
            None
        };
        let mut endpoints = Vec::with_capacity(connection.endpoints.len());
        for url in connection.endpoints {
            let bad = |e: tonic::transport::Error| RpcError::Config(format!("{url}: {e}"));
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(bad)?
                .connect_timeout(connection.attempt)
                .timeout(connection.attempt)
                // A dead connection is noticed in about two seconds, idle or not.
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(1))
                .keep_alive_while_idle(true)
                .tcp_nodelay(true);
            if url.starts_with("https://") {
                endpoint = endpoint
                    .tls_config(tls.clone().unwrap_or_default())
                    .map_err(bad)?;
            } else if tls.is_some() {
                return Err(RpcError::Config(format!(
                    "{url}: TLS certificates are given for a plain-text member"
                )));
            }
            endpoints.push(endpoint);
        }
        if endpoints.is_empty() {
            return Err(RpcError::Config("no etcd member given".into()));
        }
        let client = EtcdClient {
            channel: Channel::balance_list(endpoints.into_iter()),
            credentials: user.map(|(name, password)| {
                Arc::new(Credentials {
                    name: name.to_owned(),
                    password: Zeroizing::new(password.to_owned()),
                })
            }),
            token: Arc::new(RwLock::new(None)),
            renewing: Arc::new(tokio::sync::Mutex::new(())),
        };
        if client.credentials.is_some() {
            client.authenticate().await?;
        }
        Ok(client)
    }

    /// `KV/Range`.
    pub(super) async fn range(&self, request: RangeRequest) -> Result<RangeResponse, RpcError> {
        self.call(RANGE, request).await
    }

    /// `KV/Txn`.
    pub(super) async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, RpcError> {
        self.call(TXN, request).await
    }

    /// `KV/Compact`.
    pub(super) async fn compact(
        &self,
        request: CompactionRequest,
    ) -> Result<CompactionResponse, RpcError> {
        self.call(COMPACT, request).await
    }

    /// One call with the current token; if a member says the token is no longer valid,
    /// authenticates again (unless a concurrent call already did) and retries once.
    async fn call<Q, A>(&self, path: &'static str, request: Q) -> Result<A, RpcError>
    where
        Q: prost::Message + Clone + Send + Sync + 'static,
        A: prost::Message + Default + Send + Sync + 'static,
    {
        let sent_with = self.current_token();
        match self.send(path, request.clone(), sent_with.clone()).await {
            Err(RpcError::Status(status))
                if self.credentials.is_some() && token_refused(&status) =>
            {
                {
                    let _one_at_a_time = self.renewing.lock().await;
                    if self.current_token() == sent_with {
                        self.authenticate().await?;
                    }
                }
                self.send(path, request, self.current_token()).await
            }
            answer => answer,
        }
    }

    fn current_token(&self) -> Option<MetadataValue<Ascii>> {
        self.token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `Auth/Authenticate`, keeping the token for the calls that follow.
    async fn authenticate(&self) -> Result<(), RpcError> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        let request = AuthenticateRequest {
            name: credentials.name.clone(),
            password: credentials.password.to_string(),
        };
        let answer: AuthenticateResponse = self.send(AUTHENTICATE, request, None).await?;
        let token = answer.token.parse().map_err(|_| {
            RpcError::Config("etcd sent an authentication token that is not ASCII".into())
        })?;
        *self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
        Ok(())
    }

    async fn send<Q, A>(
        &self,
        path: &'static str,
        message: Q,
        token: Option<MetadataValue<Ascii>>,
    ) -> Result<A, RpcError>
    where
        Q: prost::Message + Send + Sync + 'static,
        A: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| RpcError::NotReady(e.to_string()))?;
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("hasleader", MetadataValue::from_static("true"));
        if let Some(token) = token {
            metadata.insert("token", token);
        }
        let answer = grpc
            .unary(
                request,
                http::uri::PathAndQuery::from_static(path),
                ProstCodec::<Q, A>::default(),
            )
            .await
            .map_err(RpcError::Status)?;
        Ok(answer.into_inner())
    }
}

/// Whether a member refused the call's token (expired, or revoked by a restart).
fn token_refused(status: &Status) -> bool {
    match status.code() {
        Code::Unauthenticated => true,
        Code::Unknown | Code::InvalidArgument => status.message().contains("invalid auth token"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"/coffer/v1/audit/"), b"/coffer/v1/audit0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    /// The bytes the `.proto` field numbers give, worked out by hand field by field: a
    /// compare on creation revision 0 must carry the 0 (a set oneof member is always sent).
    #[test]
    fn txn_encodes_as_the_proto_says() {
        let txn = TxnRequest {
            compare: vec![Compare::created_at("k", 0)],
            success: vec![RequestOp::put("k", b"v".to_vec())],
            failure: vec![],
        };
        let bytes = txn.encode_to_vec();
        // compare (1, len 7): target CREATE (2 = 1), key (3 = "k"), create_revision (5 = 0).
        let compare = [0x0a, 0x07, 0x10, 0x01, 0x1a, 0x01, b'k', 0x28, 0x00];
        // success (2, len 8): request_put (2, len 6): key (1 = "k"), value (2 = "v").
        let success = [0x12, 0x08, 0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v'];
        assert_eq!(bytes, [&compare[..], &success[..]].concat());
        assert_eq!(TxnRequest::decode(&bytes[..]).unwrap(), txn);
    }

    #[test]
    fn responses_skip_fields_left_out() {
        // A KeyValue with a lease (6) and a RangeResponse with a header (1: revision 5),
        // `more` (3) and `count` (4).
        let kv = [
            0x0a, 0x01, b'k', 0x10, 0x07, 0x18, 0x09, 0x20, 0x01, 0x2a, 0x01, b'v', 0x30, 0x05,
        ];
        let mut range = vec![0x0a, 0x02, 0x18, 0x05, 0x12, kv.len() as u8];
        range.extend_from_slice(&kv);
        range.extend_from_slice(&[0x18, 0x01, 0x20, 0x01]);
        let answer = RangeResponse::decode(&range[..]).unwrap();
        assert_eq!(answer.kvs.len(), 1);
        let kv = &answer.kvs[0];
        assert_eq!(
            (
                &kv.key[..],
                kv.create_revision,
                kv.mod_revision,
                &kv.value[..]
            ),
            (&b"k"[..], 7, 9, &b"v"[..])
        );
    }

    #[test]
    fn a_read_transaction_answers_its_ranges_and_skips_puts() {
        // responses (3): a put's answer (ResponseOp field 2, empty), then a range's (field
        // 1) with one key; succeeded (2) = true.
        let range = RangeResponse {
            header: None,
            kvs: vec![KeyValue {
                key: b"k".to_vec(),
                create_revision: 1,
                mod_revision: 4,
                version: 1,
                value: b"v".to_vec(),
            }],
        }
        .encode_to_vec();
        let mut op = vec![0x0a, range.len() as u8];
        op.extend_from_slice(&range);
        let mut txn = vec![0x10, 0x01, 0x1a, 0x02, 0x12, 0x00, 0x1a, op.len() as u8];
        txn.extend_from_slice(&op);
        let answer = TxnResponse::decode(&txn[..]).unwrap();
        assert!(answer.succeeded);
        assert_eq!(answer.responses.len(), 2);
        assert_eq!(answer.responses[0].response, None);
        match &answer.responses[1].response {
            Some(Response::Range(r)) => {
                assert_eq!((&r.kvs[0].value[..], r.kvs[0].mod_revision), (&b"v"[..], 4))
            }
            other => panic!("expected a range answer, got {other:?}"),
        }
    }

    #[test]
    fn lost_answers_are_transient_refusals_are_not() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
            assert!(RpcError::Status(Status::new(code, "x")).transient());
        }
        for code in [
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::FailedPrecondition,
        ] {
            assert!(!RpcError::Status(Status::new(code, "x")).transient());
        }
        assert!(token_refused(&Status::new(
            Code::Unauthenticated,
            "etcdserver: invalid auth token"
        )));
        assert!(!token_refused(&Status::new(
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password"
        )));
    }
}
