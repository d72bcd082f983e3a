//! Requests kelp answers on the spot, without the backend or the coordinator: ApiVersions (the
//! intersection of the backend's ranges and kelp's) and FindCoordinator (always kelp itself).

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FindCoordinatorRequest,
    FindCoordinatorResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::backend::Identity;
use crate::protocol::versions::{advertised, cap_group_apis, BackendRanges};
use crate::protocol::{decode_request, encode_response, error, FrameError, Peek};

/// The highest ApiVersions version kelp answers.
const API_VERSIONS_MAX: i16 = 4;

/// Answers an ApiVersions request. An unsupported version gets error 35 in a v0 body listing the
/// ApiVersions range (KIP-511), so the client retries lower.
pub fn api_versions(
    peek: &Peek,
    frame: Bytes,
    backend: &BackendRanges,
    passthrough_possible: bool,
    peers: &[BackendRanges],
) -> Result<Bytes, FrameError> {
    let encode = |version, body: &ApiVersionsResponse| {
        encode_response(ApiKey::ApiVersions, version, peek.correlation_id, body).map_err(|e| {
            FrameError::Undecodable {
                api: ApiKey::ApiVersions,
                version,
                reason: e.to_string(),
            }
        })
    };
    if !(0..=API_VERSIONS_MAX).contains(&peek.api_version) {
        let body = ApiVersionsResponse::default()
            .with_error_code(error::UNSUPPORTED_VERSION)
            .with_api_keys(vec![ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(0)
                .with_max_version(API_VERSIONS_MAX)]);
        return encode(0, &body);
    }
    let _request: (_, ApiVersionsRequest) = decode_request(frame, peek)?;
    let list = cap_group_apis(advertised(backend, passthrough_possible), peers);
    let body = ApiVersionsResponse::default().with_api_keys(list);
    encode(peek.api_version, &body)
}

/// Answers FindCoordinator with kelp itself for group (0) and transaction (1) keys.
/// Share-group keys (2) are not served: INVALID_REQUEST.
pub fn find_coordinator(peek: &Peek, frame: Bytes, me: &Identity) -> Result<Bytes, FrameError> {
    let (_, request): (_, FindCoordinatorRequest) = decode_request(frame, peek)?;
    let supported = matches!(request.key_type, 0 | 1);
    let (error_code, node, host, port) = if supported {
        (error::NONE, me.node_id, me.host.clone(), me.port)
    } else {
        (error::INVALID_REQUEST, -1, StrBytes::default(), -1)
    };
    let message = (!supported)
        .then(|| StrBytes::from_static_str("kelp serves group and transaction keys only"));
    let mut body = FindCoordinatorResponse::default();
    if peek.api_version >= 4 {
        body.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(error_code)
                    .with_error_message(message.clone())
            })
            .collect();
    } else {
        body.error_code = error_code;
        body.error_message = message;
        body.node_id = BrokerId(node);
        body.host = host;
        body.port = port;
    }
    encode_response(
        ApiKey::FindCoordinator,
        peek.api_version,
        peek.correlation_id,
        &body,
    )
    .map_err(|e| FrameError::Undecodable {
        api: ApiKey::FindCoordinator,
        version: peek.api_version,
        reason: e.to_string(),
    })
}
