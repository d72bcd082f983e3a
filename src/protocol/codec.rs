//! The frame codec of both sides of a connection: length-delimited frames that keep their 4-byte
//! prefix (forwarding needs no re-encoding), read with read-ahead so that one `recv` takes in the
//! rest of a frame and whatever follows it.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// Room kept in the read buffer while no whole frame is buffered.
const READ_AHEAD: usize = 64 * 1024;

pub struct FrameCodec {
    inner: LengthDelimitedCodec,
}

impl FrameCodec {
    pub fn new(max_frame_bytes: u32) -> Self {
        FrameCodec {
            inner: LengthDelimitedCodec::builder()
                .length_field_length(4)
                .length_adjustment(4)
                .num_skip(0)
                .max_frame_length(max_frame_bytes as usize)
                .new_codec(),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> std::io::Result<Option<BytesMut>> {
        let frame = self.inner.decode(src)?;
        // FramedRead alone reads into whatever room is left (8 KiB when the buffer is full), so a
        // large frame or a burst of pipelined ones would take many reads. An empty buffer (an
        // idle connection, or one answered request at a time) keeps FramedRead's small one.
        if frame.is_none() && !src.is_empty() && src.capacity() - src.len() < READ_AHEAD {
            src.reserve(READ_AHEAD);
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_their_prefix_and_partial_frames_leave_room() {
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 9, 1]);
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], &[0, 0, 0, 3, 1, 2, 3]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() - buf.len() >= READ_AHEAD);
        let mut empty = BytesMut::new();
        assert!(codec.decode(&mut empty).unwrap().is_none());
        assert_eq!(empty.capacity(), 0);
        let mut big = BytesMut::from(&[0x7f, 0, 0, 0][..]);
        assert!(FrameCodec::new(1 << 20).decode(&mut big).is_err());
    }
}
