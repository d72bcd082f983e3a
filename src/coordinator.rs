//! The async shell around the group coordinator. Until the local coordinator lands, every group
//! request is passed through to the gateway (`--group-mode passthrough`), so nothing is submitted here.

use bytes::Bytes;

use crate::protocol::{FrameError, Peek};
use crate::server::conn::LocalReply;

/// Handle to the coordinator actor.
#[derive(Clone, Default)]
pub struct GroupService;

impl GroupService {
    /// Decodes a group request and hands it to the coordinator; the reply resolves to a response frame.
    pub fn submit(
        &self,
        peek: &Peek,
        _frame: Bytes,
        _client_host: &str,
    ) -> Result<LocalReply, FrameError> {
        Err(FrameError::UnsupportedApi(peek.api_key))
    }
}
