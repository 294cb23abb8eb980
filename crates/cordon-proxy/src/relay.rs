//! Moving bytes between a client and an upstream server, counting them as
//! they are written. Counting happens in the write path ([`Counted`]) so the
//! totals are exact even when a relay is cut off half way.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};

use crate::http::{self, BodyFraming, ChunkedDecoder, ChunkedError, HeadError, MAX_HEAD_BYTES};
use crate::record::Counters;
use crate::splice::{self, Pipe, PumpError};

/// Size of each userspace relay buffer (chunked bodies, and bulk transfers
/// when no pipe for `splice` can be had). Large enough that a transfer
/// costs few syscalls per megabyte.
pub(crate) const RELAY_BUF: usize = 128 * 1024;

/// Most `1xx` heads relayed before the final response.
const MAX_INTERIM_RESPONSES: usize = 16;

/// Which counter a [`Counted`] stream's writes go to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Direction {
    /// Writes go to the upstream server.
    Up,
    /// Writes go to the client.
    Down,
}

/// A stream whose successful writes are added to a byte counter. Reads pass
/// through uncounted: every relayed byte is counted once, when it is written
/// to the other side.
#[derive(Debug)]
pub(crate) struct Counted<S> {
    inner: S,
    counters: Arc<Counters>,
    direction: Direction,
}

impl<S> Counted<S> {
    pub fn new(inner: S, counters: Arc<Counters>, direction: Direction) -> Self {
        Counted { inner, counters, direction }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The counter this stream's writes go to.
    pub fn counter(&self) -> &AtomicU64 {
        match self.direction {
            Direction::Up => &self.counters.up,
            Direction::Down => &self.counters.down,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.counter().fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

/// Resolves once no byte has moved either way for at least `idle` (and at
/// most twice that). Polling a counter instead of resetting a timer on every
/// write keeps the relay loops free of timer bookkeeping.
pub(crate) async fn idle(counters: &Counters, idle: Duration) {
    loop {
        let before = counters.activity();
        tokio::time::sleep(idle).await;
        if counters.activity() == before {
            return;
        }
    }
}

/// Why relaying a plain HTTP exchange stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// Reading from the client failed.
    #[error("reading the request body from the client failed")]
    ReadClient(#[source] io::Error),
    /// The client closed before the whole body arrived.
    #[error("the client closed the connection before the request body was complete")]
    ClientClosedInBody,
    /// The chunked request body is malformed.
    #[error(transparent)]
    Chunked(#[from] ChunkedError),
    /// Writing to the upstream server failed.
    #[error("writing the request to the upstream server failed")]
    WriteUpstream(#[source] io::Error),
    /// Reading from the upstream server failed.
    #[error("reading the response from the upstream server failed")]
    ReadUpstream(#[source] io::Error),
    /// The upstream closed before a complete response.
    #[error("the upstream server closed the connection before the response was complete")]
    UpstreamClosed,
    /// The upstream response head is unreadable.
    #[error("the upstream server sent an unreadable response")]
    BadResponse(#[source] HeadError),
    /// The upstream response head exceeds the limit.
    #[error("the upstream response head is larger than 64 KiB")]
    ResponseHeadTooLarge,
    /// Writing to the client failed.
    #[error("writing the response to the client failed")]
    WriteClient(#[source] io::Error),
}

/// Relays exactly one request body, as `framing` delimits it: first the
/// bytes that arrived with the head (`early`), then from the client. Bytes
/// after the body (a pipelined second request) are not relayed: the proxy
/// answers one request per connection.
pub(crate) async fn relay_request_body(
    client: &mut ReadHalf<'_>,
    upstream: &mut Counted<WriteHalf<'_>>,
    early: &[u8],
    framing: BodyFraming,
) -> Result<(), ExchangeError> {
    let mut left = match framing {
        BodyFraming::None => return Ok(()),
        BodyFraming::Length(n) => Remaining::Length(n),
        BodyFraming::Chunked => Remaining::Chunked(ChunkedDecoder::default()),
    };
    let used = left.consume(early)?;
    upstream.write_all(&early[..used]).await.map_err(ExchangeError::WriteUpstream)?;
    if let Remaining::Length(n) = left {
        let moved = bulk(client, upstream, Some(n)).await.map_err(|e| match e {
            PumpError::Read(e) => ExchangeError::ReadClient(e),
            PumpError::Write(e) => ExchangeError::WriteUpstream(e),
        })?;
        return if moved == n { Ok(()) } else { Err(ExchangeError::ClientClosedInBody) };
    }
    let mut buf = vec![0; RELAY_BUF];
    while !left.is_done() {
        let n = client.read(&mut buf).await.map_err(ExchangeError::ReadClient)?;
        if n == 0 {
            return Err(ExchangeError::ClientClosedInBody);
        }
        let used = left.consume(&buf[..n])?;
        upstream.write_all(&buf[..used]).await.map_err(ExchangeError::WriteUpstream)?;
    }
    Ok(())
}

/// Relays up to `limit` bytes (all, without one) from `src` to `dst`, in
/// the kernel with `splice(2)` when a pipe can be had, through a buffer
/// otherwise. Returns the number of bytes relayed; fewer than `limit` means
/// `src` reached end of stream.
async fn bulk(src: &mut ReadHalf<'_>, dst: &mut Counted<WriteHalf<'_>>, limit: Option<u64>) -> Result<u64, PumpError> {
    if limit == Some(0) {
        return Ok(0);
    }
    if let Ok(pipe) = Pipe::new() {
        return splice::pump(src.as_ref(), dst.get_ref().as_ref(), &pipe, limit, dst.counter()).await;
    }
    // Out of descriptors for a pipe: copy through userspace instead.
    let mut buf = vec![0; RELAY_BUF];
    let mut moved = 0u64;
    loop {
        let want = match limit {
            Some(limit) => usize::try_from(limit - moved).unwrap_or(usize::MAX).min(buf.len()),
            None => buf.len(),
        };
        if want == 0 {
            return Ok(moved);
        }
        let n = src.read(&mut buf[..want]).await.map_err(PumpError::Read)?;
        if n == 0 {
            return Ok(moved);
        }
        dst.write_all(&buf[..n]).await.map_err(PumpError::Write)?;
        moved += n as u64;
    }
}

/// Relays the upstream response to the client: each head rewritten (see
/// [`http::rewrite_response`]), then the body as its framing delimits it,
/// or until the upstream closes when it has none.
pub(crate) async fn relay_response(
    upstream: &mut ReadHalf<'_>,
    client: &mut Counted<WriteHalf<'_>>,
    method: &str,
) -> Result<(), ExchangeError> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0; RELAY_BUF];
    let mut interim = 0;
    let mut left = loop {
        let len = loop {
            if let Some(len) = http::head_len(&buf) {
                break len;
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(ExchangeError::ResponseHeadTooLarge);
            }
            let room = (MAX_HEAD_BYTES + 1 - buf.len()).min(chunk.len());
            let n = upstream.read(&mut chunk[..room]).await.map_err(ExchangeError::ReadUpstream)?;
            if n == 0 {
                return Err(ExchangeError::UpstreamClosed);
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if len > MAX_HEAD_BYTES {
            return Err(ExchangeError::ResponseHeadTooLarge);
        }
        let head = http::parse_response(&buf[..len]).map_err(ExchangeError::BadResponse)?;
        client.write_all(&http::rewrite_response(&head)).await.map_err(ExchangeError::WriteClient)?;
        let next = if http::is_interim(head.status) {
            None
        } else {
            Some(Remaining::of_response(method, &head))
        };
        buf.drain(..len);
        match next {
            Some(left) => break left,
            None if interim < MAX_INTERIM_RESPONSES => interim += 1,
            None => return Err(ExchangeError::BadResponse(HeadError::Malformed("too many interim responses"))),
        }
    };
    let used = left.consume(&buf)?;
    client.write_all(&buf[..used]).await.map_err(ExchangeError::WriteClient)?;
    drop(buf);
    let pump_error = |e| match e {
        PumpError::Read(e) => ExchangeError::ReadUpstream(e),
        PumpError::Write(e) => ExchangeError::WriteClient(e),
    };
    match left {
        Remaining::Length(n) => {
            let moved = bulk(upstream, client, Some(n)).await.map_err(pump_error)?;
            return if moved == n { Ok(()) } else { Err(ExchangeError::UpstreamClosed) };
        }
        Remaining::UntilClose => {
            bulk(upstream, client, None).await.map_err(pump_error)?;
            return Ok(());
        }
        Remaining::Chunked(_) => {}
    }
    while !left.is_done() {
        let want = left.want(chunk.len());
        let n = upstream.read(&mut chunk[..want]).await.map_err(ExchangeError::ReadUpstream)?;
        if n == 0 {
            return match left {
                Remaining::UntilClose => Ok(()),
                _ => Err(ExchangeError::UpstreamClosed),
            };
        }
        let used = left.consume(&chunk[..n])?;
        client.write_all(&chunk[..used]).await.map_err(ExchangeError::WriteClient)?;
    }
    Ok(())
}

/// How much of a message body is still to come.
enum Remaining {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl Remaining {
    /// RFC 9112 section 6.3: no body after `HEAD`, `1xx`, `204`, `304`;
    /// chunked or `Content-Length` when declared; otherwise until close
    /// (which the client also sees, because the proxy closes after it).
    fn of_response(method: &str, head: &http::ResponseHead<'_>) -> Self {
        if method.eq_ignore_ascii_case("HEAD") || head.status == 204 || head.status == 304 || head.status < 200 {
            return Remaining::Length(0);
        }
        match http::response_framing(&head.fields) {
            Some(BodyFraming::Length(n)) => Remaining::Length(n),
            Some(BodyFraming::Chunked) => Remaining::Chunked(ChunkedDecoder::default()),
            Some(BodyFraming::None) | None => Remaining::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Remaining::Length(n) => *n == 0,
            Remaining::Chunked(d) => d.is_done(),
            Remaining::UntilClose => false,
        }
    }

    /// How many bytes to read at most: never past a known end, so nothing
    /// after the message is read off the socket.
    fn want(&self, buf: usize) -> usize {
        match self {
            Remaining::Length(n) => usize::try_from(*n).unwrap_or(usize::MAX).min(buf),
            Remaining::Chunked(_) | Remaining::UntilClose => buf,
        }
    }

    /// How many of `input`'s bytes belong to the body.
    fn consume(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        match self {
            Remaining::Length(n) => {
                let take = usize::try_from(*n).unwrap_or(usize::MAX).min(input.len());
                *n -= take as u64;
                Ok(take)
            }
            Remaining::Chunked(d) => d.feed(input),
            Remaining::UntilClose => Ok(input.len()),
        }
    }
}
