//! The filer's lock calls over gRPC (`DistributedLock`, `DistributedUnlock`), mapped to the lease
//! machine's [`Answer`]s. One HTTP/2 channel to the filer's gRPC port, opened lazily and reopened
//! by tonic after a failure; every call is bounded by a timeout.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::machine::Answer;

mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("filer_pb");
}

use pb::seaweed_filer_client::SeaweedFilerClient;
use pb::{LockRequest, UnlockRequest};

/// A client of one filer's lock service.
#[derive(Clone)]
pub struct LockClient {
    client: SeaweedFilerClient<Channel>,
    /// Sent as the lock's owner (the filer names it to others that ask for the lease).
    owner: String,
    timeout: Duration,
}

impl LockClient {
    /// `url`: the filer's gRPC address, `http://host:port`. Connects on first use.
    pub fn new(url: &str, owner: String, timeout: Duration) -> Result<LockClient, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("bad filer gRPC address {url:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        Ok(LockClient {
            client: SeaweedFilerClient::new(endpoint.connect_lazy()),
            owner,
            timeout,
        })
    }

    /// Takes (`token` empty) or renews the lease `name` for `ttl`.
    pub async fn lock(&self, name: &str, ttl: Duration, token: &str) -> Answer {
        let request = LockRequest {
            name: name.to_string(),
            seconds_to_lock: ttl.as_secs().max(1) as i64,
            renew_token: token.to_string(),
            is_moved: false,
            owner: self.owner.clone(),
        };
        let mut client = self.client.clone();
        let call = client.distributed_lock(request);
        let response = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => return Answer::Failed("timed out".into()),
            Ok(Err(status)) => return Answer::Failed(status.message().to_string()),
            Ok(Ok(r)) => r.into_inner(),
        };
        classify(
            &response.error,
            response.renew_token,
            response.lock_owner,
            token,
        )
    }

    /// Gives the lease `name` back; errors are only logged (it expires anyway).
    pub async fn unlock(&self, name: &str, token: &str) {
        let request = UnlockRequest {
            name: name.to_string(),
            renew_token: token.to_string(),
            is_moved: false,
        };
        let mut client = self.client.clone();
        match tokio::time::timeout(self.timeout, client.distributed_unlock(request)).await {
            Ok(Ok(r)) if r.get_ref().error.is_empty() => {}
            Ok(Ok(r)) => {
                tracing::debug!(lease = name, error = %r.get_ref().error, "the filer refused to give a lease back; it expires")
            }
            Ok(Err(status)) => {
                tracing::debug!(lease = name, error = %status.message(), "could not give a lease back; it expires")
            }
            Err(_) => tracing::debug!(lease = name, "giving a lease back timed out; it expires"),
        }
    }
}

/// What a `LockResponse` means. The filer reports every refusal in `error`: "lock already owned
/// by X" for a take while someone holds it (with `lock_owner` set), token errors for a renewal of
/// a lease it no longer has, "no lock server found" while its lock ring is still forming.
fn classify(error: &str, token: String, owner: String, sent_token: &str) -> Answer {
    if error.is_empty() {
        return if token.is_empty() {
            Answer::Failed("granted without a token".into())
        } else {
            Answer::Granted { token }
        };
    }
    if error.contains("already owned") {
        let owner = if owner.is_empty() {
            error
                .rsplit("owned by ")
                .next()
                .unwrap_or_default()
                .to_string()
        } else {
            owner
        };
        return if sent_token.is_empty() {
            Answer::Held { owner }
        } else {
            Answer::Refused(error.to_string())
        };
    }
    if error.contains("token") {
        return Answer::Refused(error.to_string());
    }
    Answer::Failed(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filers_answers_map_to_grants_holders_refusals_and_failures() {
        assert_eq!(
            classify("", "t1".into(), String::new(), ""),
            Answer::Granted { token: "t1".into() }
        );
        assert_eq!(
            classify(
                "lock already owned by kelp-b",
                String::new(),
                "kelp-b".into(),
                ""
            ),
            Answer::Held {
                owner: "kelp-b".into()
            }
        );
        assert_eq!(
            classify(
                "lock already owned by kelp-b",
                String::new(),
                String::new(),
                ""
            ),
            Answer::Held {
                owner: "kelp-b".into()
            }
        );
        assert!(matches!(
            classify("lock: token mismatch", String::new(), "x".into(), "t0"),
            Answer::Refused(_)
        ));
        assert!(matches!(
            classify(
                "lock: non-empty token on a new lock",
                String::new(),
                String::new(),
                "t0"
            ),
            Answer::Refused(_)
        ));
        assert!(matches!(
            classify("no lock server found", String::new(), String::new(), ""),
            Answer::Failed(_)
        ));
        assert!(matches!(
            classify("", String::new(), String::new(), ""),
            Answer::Failed(_)
        ));
    }
}
