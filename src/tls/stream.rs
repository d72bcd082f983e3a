//! A connection that is plain TCP or TLS over TCP, with halves that can be read and written from
//! one task each. Plain connections split into tokio's owned TCP halves (no lock); TLS ones into
//! `tokio::io::split` halves. Reads and writes go straight through, vectored writes included.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub enum Stream {
    Plain(TcpStream),
    /// Accepted on a TLS listener.
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Opened to a TLS backend or peer.
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<Stream>),
}

pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<Stream>),
}

impl Stream {
    /// TCP_NODELAY on the underlying socket.
    pub fn set_nodelay(&self, nodelay: bool) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_nodelay(nodelay),
            Stream::Server(s) => s.get_ref().0.set_nodelay(nodelay),
            Stream::Client(s) => s.get_ref().0.set_nodelay(nodelay),
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            tls => {
                let (r, w) = tokio::io::split(tls);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

macro_rules! each {
    ($value:expr, $inner:ident => $body:expr, $($variant:path),+) => {
        match $value {
            $($variant($inner) => $body,)+
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf), Stream::Plain, Stream::Server, Stream::Client)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf), Stream::Plain, Stream::Server, Stream::Client)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs), Stream::Plain, Stream::Server, Stream::Client)
    }
    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored(), Stream::Plain, Stream::Server, Stream::Client)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx), Stream::Plain, Stream::Server, Stream::Client)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx), Stream::Plain, Stream::Server, Stream::Client)
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf), ReadHalf::Plain, ReadHalf::Tls)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf), WriteHalf::Plain, WriteHalf::Tls)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs), WriteHalf::Plain, WriteHalf::Tls)
    }
    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored(), WriteHalf::Plain, WriteHalf::Tls)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx), WriteHalf::Plain, WriteHalf::Tls)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx), WriteHalf::Plain, WriteHalf::Tls)
    }
}
