//! Frames waiting to be written to one socket. They are written together with vectored writes
//! (usually one `writev` for everything a connection has ready) and never copied; a failed write
//! keeps them whole, so the caller can resend them on a new connection.

use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Frames kept between writes before the queue's allocation is given back.
const KEEP_CAPACITY: usize = 64;

#[derive(Default)]
pub struct Outbox {
    frames: Vec<Bytes>,
    bytes: usize,
}

impl Outbox {
    pub fn push(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.bytes += frame.len();
        self.frames.push(frame);
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        if self.frames.capacity() > KEEP_CAPACITY {
            self.frames = Vec::new();
        }
    }

    /// Writes every queued frame and empties the queue; returns the bytes written. On an error
    /// the queue is left as it was.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> std::io::Result<usize> {
        let mut cursor = Cursor {
            frames: &self.frames,
            index: 0,
            offset: 0,
            remaining: self.bytes,
        };
        out.write_all_buf(&mut cursor).await?;
        let written = self.bytes;
        self.clear();
        Ok(written)
    }
}

/// A read position over a run of frames, without consuming them.
struct Cursor<'a> {
    frames: &'a [Bytes],
    index: usize,
    offset: usize,
    remaining: usize,
}

impl Buf for Cursor<'_> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.frames
            .get(self.index)
            .map_or(&[], |f| &f[self.offset..])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of the outbox");
        self.remaining -= cnt;
        while cnt > 0 {
            let left = self.frames[self.index].len() - self.offset;
            if cnt < left {
                self.offset += cnt;
                return;
            }
            cnt -= left;
            self.index += 1;
            self.offset = 0;
        }
    }

    fn chunks_vectored<'b>(&'b self, dst: &mut [IoSlice<'b>]) -> usize {
        let mut n = 0;
        let mut offset = self.offset;
        for frame in self.frames.iter().skip(self.index) {
            if n == dst.len() {
                break;
            }
            if frame.len() > offset {
                dst[n] = IoSlice::new(&frame[offset..]);
                n += 1;
            }
            offset = 0;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `max` bytes per call and records what it got.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_deliver_every_frame_in_order() {
        for max in [1, 3, 7, 64, 1 << 20] {
            let mut outbox = Outbox::default();
            let frames: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; (i % 9) as usize]).collect();
            for f in &frames {
                outbox.push(Bytes::from(f.clone()));
            }
            let mut out = Trickle {
                got: Vec::new(),
                max,
            };
            let n = outbox.write_to(&mut out).await.unwrap();
            assert_eq!(out.got, frames.concat(), "max {max}");
            assert_eq!(n, out.got.len());
            assert!(outbox.is_empty());
        }
    }
}
