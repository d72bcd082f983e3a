//! Per request: answer it in kelp, forward it to the backend, or hand it to the group coordinator.
//! This is the one place that says what kelp serves itself and what it forwards.

use kafka_protocol::messages::ApiKey;

use crate::config::GroupMode;
use crate::protocol::{kelp_range, FrameError, Handling, Peek};

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the backend byte for byte; the response back byte for byte.
    Forward,
    /// To the backend byte for byte; the response rewritten to name kelp.
    ForwardRewrite,
    /// A group request passed through untouched to the gateway's coordinator.
    Passthrough,
    /// ApiVersions, answered by kelp.
    ApiVersions,
    /// FindCoordinator, answered by kelp with itself.
    FindCoordinator,
    /// A group request for kelp's own coordinator.
    Coordinator,
}

/// Decides the route of a request from its header alone.
///
/// ApiVersions at any version is routed (an unsupported version is answered with error 35); other
/// requests kelp decodes must be within kelp's range, or the connection is closed.
pub fn route(peek: &Peek, group_mode: GroupMode) -> Result<Route, FrameError> {
    let (handling, range) =
        kelp_range(peek.api_key).ok_or(FrameError::UnsupportedApi(peek.api_key))?;
    let route = match handling {
        Handling::Answer if peek.api_key == ApiKey::ApiVersions => return Ok(Route::ApiVersions),
        Handling::Answer => Route::FindCoordinator,
        Handling::Forward => return Ok(Route::Forward),
        Handling::ForwardRewrite => Route::ForwardRewrite,
        Handling::Group => match group_mode {
            GroupMode::Passthrough => return Ok(Route::Passthrough),
            GroupMode::Local => Route::Coordinator,
        },
    };
    if peek.api_version < range.min || peek.api_version > range.max {
        return Err(FrameError::UnsupportedVersion {
            api: peek.api_key,
            version: peek.api_version,
        });
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peek(api_key: ApiKey, api_version: i16) -> Peek {
        Peek {
            api_key,
            api_version,
            correlation_id: 1,
        }
    }

    #[test]
    fn data_apis_are_forwarded() {
        assert_eq!(
            route(&peek(ApiKey::Produce, 7), GroupMode::Local),
            Ok(Route::Forward)
        );
        assert_eq!(
            route(&peek(ApiKey::Fetch, 7), GroupMode::Local),
            Ok(Route::Forward)
        );
        assert_eq!(
            route(&peek(ApiKey::Metadata, 7), GroupMode::Local),
            Ok(Route::ForwardRewrite)
        );
    }

    #[test]
    fn group_apis_follow_the_mode() {
        assert_eq!(
            route(&peek(ApiKey::JoinGroup, 9), GroupMode::Local),
            Ok(Route::Coordinator)
        );
        assert_eq!(
            route(&peek(ApiKey::JoinGroup, 5), GroupMode::Passthrough),
            Ok(Route::Passthrough)
        );
        assert_eq!(
            route(&peek(ApiKey::FindCoordinator, 4), GroupMode::Passthrough),
            Ok(Route::FindCoordinator)
        );
    }

    #[test]
    fn unserved_apis_and_versions_are_refused() {
        assert!(matches!(
            route(&peek(ApiKey::ConsumerGroupHeartbeat, 0), GroupMode::Local),
            Err(FrameError::UnsupportedApi(_))
        ));
        assert!(matches!(
            route(&peek(ApiKey::JoinGroup, 10), GroupMode::Local),
            Err(FrameError::UnsupportedVersion { .. })
        ));
        assert_eq!(
            route(&peek(ApiKey::ApiVersions, 99), GroupMode::Local),
            Ok(Route::ApiVersions)
        );
    }
}
