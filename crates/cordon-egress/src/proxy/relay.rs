//! Moving bytes between a client and an upstream server, counting them as
//! they are written. Counting happens in the write path ([`Counted`]) so the
//! totals are exact even when a relay is cut off half way.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::http::{self, BodyFraming, ChunkedDecoder, ChunkedError, HeadError, MAX_HEAD_BYTES};
use crate::record::Counters;

/// First size of a relay buffer: a request/response exchange never
/// allocates more.
const RELAY_BUF_MIN: usize = 16 * 1024;
/// Largest size of a relay buffer, reached by transfers whose reads keep
/// filling it. On a loopback download, 1 MiB reads and writes are about 15%
/// faster than 128 KiB ones and about 10% faster than `splice(2)` through a
/// pipe (the client then copies from pages the proxy just wrote, still in
/// cache, rather than from the server's older ones).
const RELAY_BUF_MAX: usize = 1024 * 1024;

/// Memory that relay buffers may take beyond their first
/// [`RELAY_BUF_MIN`] bytes, shared by every connection that holds it: a
/// buffer grows (fourfold, up to [`RELAY_BUF_MAX`]) only while the budget
/// has room, and gives its share back when it is dropped. A stalled
/// connection therefore holds at most its grown buffers, and the other
/// connections stay at [`RELAY_BUF_MIN`] once the budget is spent: slower,
/// never larger.
///
/// A budget made [`within`](Self::within) another one draws on both: a
/// run's own share of a cap that all runs of a process (a gateway) share.
#[derive(Debug)]
pub struct RelayMemory {
    limit: usize,
    used: AtomicUsize,
    parent: Option<Arc<RelayMemory>>,
}

impl RelayMemory {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(RelayMemory { limit, used: AtomicUsize::new(0), parent: None })
    }

    /// A budget of `limit` bytes that also takes every byte from `parent`:
    /// it grants a byte only when both have room.
    pub fn within(parent: &Arc<RelayMemory>, limit: usize) -> Arc<Self> {
        Arc::new(RelayMemory { limit, used: AtomicUsize::new(0), parent: Some(Arc::clone(parent)) })
    }

    /// The budget every [`ProxyConfig::new`](super::ProxyConfig::new)
    /// draws on, 64 MiB for the whole process: eight runs' worth of fully
    /// grown buffers. Past it, relays in every run of the process keep
    /// their 16 KiB buffers.
    pub fn process_wide() -> &'static Arc<RelayMemory> {
        static PROCESS: std::sync::OnceLock<Arc<RelayMemory>> = std::sync::OnceLock::new();
        PROCESS.get_or_init(|| RelayMemory::new(64 << 20))
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from this budget and every budget it is within, or
    /// nothing.
    fn take(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used.saturating_add(bytes) > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(used, used + bytes, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        if self.parent.as_ref().is_some_and(|p| !p.take(bytes)) {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(p) = &self.parent {
            p.give(bytes);
        }
    }
}

/// A relay buffer that starts at [`RELAY_BUF_MIN`] and grows fourfold, up to
/// [`RELAY_BUF_MAX`], after each read that fills it, while its
/// [`RelayMemory`] allows: small exchanges stay cheap, bulk transfers get
/// large reads and writes.
pub(crate) struct RelayBuf {
    buf: Vec<u8>,
    grow: bool,
    memory: Arc<RelayMemory>,
}

impl RelayBuf {
    pub fn new(memory: &Arc<RelayMemory>) -> Self {
        RelayBuf { buf: vec![0; RELAY_BUF_MIN], grow: false, memory: Arc::clone(memory) }
    }

    /// Reads once from `src`, at most `max` bytes; returns what was read
    /// (empty at end of stream).
    pub async fn read_from<R: AsyncRead + Unpin>(&mut self, src: &mut R, max: usize) -> io::Result<&[u8]> {
        if self.grow {
            self.grow = false;
            let larger = (self.buf.len() * 4).min(RELAY_BUF_MAX);
            if self.memory.take(larger - self.buf.len()) {
                self.buf.resize(larger, 0);
            }
        }
        let want = self.buf.len().min(max);
        let n = src.read(&mut self.buf[..want]).await?;
        self.grow = n == self.buf.len() && n < RELAY_BUF_MAX;
        Ok(&self.buf[..n])
    }
}

impl Drop for RelayBuf {
    fn drop(&mut self) {
        self.memory.give(self.buf.len() - RELAY_BUF_MIN);
    }
}

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
pub(crate) async fn relay_request_body<R, W>(
    client: &mut R,
    upstream: &mut W,
    early: &[u8],
    framing: BodyFraming,
    memory: &Arc<RelayMemory>,
) -> Result<(), ExchangeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut left = match framing {
        BodyFraming::None => return Ok(()),
        BodyFraming::Length(n) => Remaining::Length(n),
        BodyFraming::Chunked => Remaining::Chunked(ChunkedDecoder::default()),
    };
    let used = left.consume(early)?;
    upstream.write_all(&early[..used]).await.map_err(ExchangeError::WriteUpstream)?;
    if let Remaining::Length(n) = left {
        let moved = copy(client, upstream, Some(n), memory).await.map_err(|e| match e {
            CopyError::Read(e) => ExchangeError::ReadClient(e),
            CopyError::Write(e) => ExchangeError::WriteUpstream(e),
        })?;
        return if moved == n { Ok(()) } else { Err(ExchangeError::ClientClosedInBody) };
    }
    let mut buf = RelayBuf::new(memory);
    while !left.is_done() {
        let data = buf.read_from(client, usize::MAX).await.map_err(ExchangeError::ReadClient)?;
        if data.is_empty() {
            return Err(ExchangeError::ClientClosedInBody);
        }
        let used = left.consume(data)?;
        upstream.write_all(&data[..used]).await.map_err(ExchangeError::WriteUpstream)?;
    }
    Ok(())
}

/// Which side of a copy failed.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading from the source.
    Read(io::Error),
    /// Writing to the destination.
    Write(io::Error),
}

impl CopyError {
    pub fn into_inner(self) -> io::Error {
        match self {
            CopyError::Read(e) | CopyError::Write(e) => e,
        }
    }
}

/// Copies up to `limit` bytes (all, without one) from `src` to `dst`
/// through a buffer of its own, drawn on `memory`. Returns the number of
/// bytes copied; fewer than `limit` means `src` reached end of stream.
pub(crate) async fn copy<R, W>(
    src: &mut R,
    dst: &mut W,
    limit: Option<u64>,
    memory: &Arc<RelayMemory>,
) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    copy_through(&mut RelayBuf::new(memory), src, dst, limit).await
}

/// [`copy`] through `buf`.
async fn copy_through<R, W>(buf: &mut RelayBuf, src: &mut R, dst: &mut W, limit: Option<u64>) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut moved = 0u64;
    loop {
        let want = match limit {
            Some(limit) => usize::try_from(limit - moved).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        if want == 0 {
            return Ok(moved);
        }
        let data = buf.read_from(src, want).await.map_err(CopyError::Read)?;
        if data.is_empty() {
            return Ok(moved);
        }
        dst.write_all(data).await.map_err(CopyError::Write)?;
        moved += data.len() as u64;
    }
}

/// Relays the upstream response to the client: each head rewritten (see
/// [`http::rewrite_response`]), then the body as its framing delimits it,
/// or until the upstream closes when it has none.
pub(crate) async fn relay_response<R, W>(
    upstream: &mut R,
    client: &mut W,
    method: &str,
    memory: &Arc<RelayMemory>,
) -> Result<(), ExchangeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = RelayBuf::new(memory);
    let mut interim = 0;
    let mut left = loop {
        let len = loop {
            if let Some(len) = http::head_len(&buf) {
                break len;
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(ExchangeError::ResponseHeadTooLarge);
            }
            let data =
                chunk.read_from(upstream, MAX_HEAD_BYTES + 1 - buf.len()).await.map_err(ExchangeError::ReadUpstream)?;
            if data.is_empty() {
                return Err(ExchangeError::UpstreamClosed);
            }
            buf.extend_from_slice(data);
        };
        if len > MAX_HEAD_BYTES {
            return Err(ExchangeError::ResponseHeadTooLarge);
        }
        let head = http::parse_response(&buf[..len]).map_err(ExchangeError::BadResponse)?;
        client.write_all(&http::rewrite_response(&head)).await.map_err(ExchangeError::WriteClient)?;
        let next = if http::is_interim(head.status) { None } else { Some(Remaining::of_response(method, &head)) };
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
    let copy_error = |e| match e {
        CopyError::Read(e) => ExchangeError::ReadUpstream(e),
        CopyError::Write(e) => ExchangeError::WriteClient(e),
    };
    match left {
        Remaining::Length(n) => {
            let moved = copy_through(&mut chunk, upstream, client, Some(n)).await.map_err(copy_error)?;
            if moved == n {
                Ok(())
            } else {
                Err(ExchangeError::UpstreamClosed)
            }
        }
        Remaining::UntilClose => copy_through(&mut chunk, upstream, client, None).await.map(drop).map_err(copy_error),
        Remaining::Chunked(mut decoder) => {
            while !decoder.is_done() {
                let data = chunk.read_from(upstream, usize::MAX).await.map_err(ExchangeError::ReadUpstream)?;
                if data.is_empty() {
                    return Err(ExchangeError::UpstreamClosed);
                }
                let used = decoder.feed(data)?;
                client.write_all(&data[..used]).await.map_err(ExchangeError::WriteClient)?;
            }
            Ok(())
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `reads` times from a source that always fills the buffer.
    fn grow(buf: &mut RelayBuf, reads: usize) {
        let data = vec![7u8; RELAY_BUF_MAX];
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            for _ in 0..reads {
                let mut src = &data[..];
                buf.read_from(&mut src, usize::MAX).await.expect("read");
            }
        });
    }

    #[test]
    fn a_buffer_grows_only_within_its_budget_and_gives_it_back() {
        // Control: with room, three full reads grow 16 KiB to 256 KiB.
        let roomy = RelayMemory::new(1 << 20);
        let mut buf = RelayBuf::new(&roomy);
        grow(&mut buf, 3);
        assert_eq!(buf.buf.len(), 256 * 1024);
        assert_eq!(roomy.used(), 256 * 1024 - RELAY_BUF_MIN);
        drop(buf);
        assert_eq!(roomy.used(), 0);

        // 48 KiB pays for the step to 64 KiB and not for the next one.
        let tight = RelayMemory::new(48 * 1024);
        let mut buf = RelayBuf::new(&tight);
        grow(&mut buf, 5);
        assert_eq!(buf.buf.len(), 64 * 1024);
        assert_eq!(tight.used(), 48 * 1024);
        // A second buffer on the spent budget stays at its first size.
        let mut other = RelayBuf::new(&tight);
        grow(&mut other, 5);
        assert_eq!(other.buf.len(), RELAY_BUF_MIN);
        drop(buf);
        drop(other);
        assert_eq!(tight.used(), 0);
    }

    #[test]
    fn a_budget_within_another_takes_from_both_or_from_neither() {
        let shared = RelayMemory::new(100);
        let (a, b) = (RelayMemory::within(&shared, 80), RelayMemory::within(&shared, 80));
        assert!(a.take(60));
        assert_eq!((a.used(), shared.used()), (60, 60));
        // b has room of its own, but the shared budget has only 40 left.
        assert!(!b.take(50));
        assert_eq!((b.used(), shared.used()), (0, 60));
        assert!(b.take(40));
        // a's own limit: 60 + 30 > 80, whatever the shared budget says.
        b.give(40);
        assert!(!a.take(30));
        assert_eq!((a.used(), shared.used()), (60, 60));
        a.give(60);
        assert_eq!(shared.used(), 0);
    }
}
