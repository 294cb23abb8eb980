//! HTTP/1.x message heads: parsing what a client or an upstream server sent,
//! and writing the rewritten head the proxy forwards. Pure functions over
//! byte slices; the caller has already bounded the slice to
//! [`MAX_HEAD_BYTES`].
//!
//! Only what a forward proxy needs is understood: the request line, header
//! fields, the body framing (`Content-Length` or `chunked`), and the
//! hop-by-hop fields that must not be forwarded. Anything ambiguous is
//! refused rather than guessed at, because the proxy's decision is only as
//! good as its reading of the request.

use std::fmt;

/// Largest request or response head (request line and header fields) read.
/// A larger request head is answered with `431`.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header fields accepted in one head.
const MAX_HEADERS: usize = 256;

/// Fields that describe one connection and are never forwarded (RFC 9110
/// section 7.6.1, plus the `Proxy-*` fields meant for this proxy and
/// `Upgrade`, because the proxy relays one request and never switches
/// protocols on a forwarded request).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Why a message head could not be used. Each variant maps to one status
/// code in [`HeadError::status`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head is syntactically wrong.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A request this proxy does not serve (wrong form, scheme, or framing).
    #[error("{0}")]
    Unsupported(&'static str),
    /// An HTTP version other than 1.0 and 1.1.
    #[error("HTTP version not supported; this proxy speaks HTTP/1.0 and HTTP/1.1")]
    Version,
}

impl HeadError {
    /// The status code the client is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::Malformed(_) | HeadError::Unsupported(_) => 400,
            HeadError::Version => 505,
        }
    }
}

type Result<T> = std::result::Result<T, HeadError>;

/// Host and port from a request target, before policy normalisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    /// The host as written, brackets of an IPv6 literal included.
    pub host: String,
    /// The port, or the scheme's default.
    pub port: u16,
    /// The authority as written (without the default port added), for the
    /// forwarded `Host` field.
    pub text: String,
}

/// What a request asks the proxy to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `CONNECT host:port`: open a tunnel.
    Connect(Authority),
    /// `METHOD http://host[:port]/path`: forward one request.
    Forward {
        /// Where to.
        authority: Authority,
        /// The origin-form target sent upstream (`/path?query`).
        path: String,
    },
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One header field. The name keeps its case; the value is trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name.
    pub name: &'a str,
    /// The value; may hold obs-text bytes, never CR, LF or NUL.
    pub value: &'a [u8],
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method token.
    pub method: &'a str,
    /// What is asked.
    pub target: Target,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: &'a str,
    /// The header fields in order.
    pub fields: Vec<Field<'a>>,
    /// The body framing the fields declare.
    pub body: BodyFraming,
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The status line as received, without its line ending.
    pub status_line: &'a str,
    /// The status code.
    pub status: u16,
    /// The header fields in order.
    pub fields: Vec<Field<'a>>,
}

/// The length of the head at the start of `buf` (through the empty line that
/// ends it), or `None` when the empty line has not arrived yet. Bare `LF`
/// line endings are accepted as well as `CRLF`.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf.get(from..)?.iter().position(|&b| b == b'\n') {
        let nl = from + i;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => from = nl + 1,
        }
    }
    None
}

/// Splits a head into lines, dropping the line endings and the final empty
/// line. A CR anywhere but before LF is an error.
fn lines(head: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&b'\r') {
            return Err(HeadError::Malformed("bare CR in the head"));
        }
        out.push(line);
    }
    // `head` ends with the empty line: drop the trailing empties.
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    Ok(out)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_fields<'a>(lines: &[&'a [u8]]) -> Result<Vec<Field<'a>>> {
    if lines.len() > MAX_HEADERS {
        return Err(HeadError::Malformed("too many header fields"));
    }
    lines
        .iter()
        .map(|line| {
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                return Err(HeadError::Malformed("obsolete line folding in a header field"));
            }
            let colon = line.iter().position(|&b| b == b':').ok_or(HeadError::Malformed("header field without `:`"))?;
            let (name, value) = line.split_at(colon);
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(HeadError::Malformed("invalid header field name"));
            }
            let value = value.get(1..).unwrap_or_default().trim_ascii();
            if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(HeadError::Malformed("control character in a header field value"));
            }
            let name = std::str::from_utf8(name).map_err(|_| HeadError::Malformed("invalid header field name"))?;
            Ok(Field { name, value })
        })
        .collect()
}

fn ascii_line<'a>(line: &'a [u8], what: &'static str) -> Result<&'a str> {
    if !line.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(HeadError::Malformed(what));
    }
    std::str::from_utf8(line).map_err(|_| HeadError::Malformed(what))
}

/// Parses a request head (as delimited by [`head_len`]).
pub fn parse_request(head: &[u8]) -> Result<RequestHead<'_>> {
    let lines = lines(head)?;
    let (first, rest) = lines.split_first().ok_or(HeadError::Malformed("empty request"))?;
    let line = ascii_line(first, "the request line is not printable ASCII")?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("the request line is not `METHOD TARGET HTTP/1.1`"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(HeadError::Malformed("invalid method"));
    }
    if !version.starts_with("HTTP/") {
        return Err(HeadError::Malformed("the request line is not `METHOD TARGET HTTP/1.1`"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Version);
    }
    let target =
        if method == "CONNECT" { Target::Connect(parse_authority(target, None)?) } else { parse_absolute(target)? };
    let fields = parse_fields(rest)?;
    let body = body_framing(&fields)?;
    Ok(RequestHead { method, target, version, fields, body })
}

fn parse_absolute(target: &str) -> Result<Target> {
    let scheme_end = target.find("://");
    let Some(scheme_end) = scheme_end else {
        return Err(HeadError::Unsupported(
            "this is cordon's egress proxy: send absolute-form requests (`GET http://host/path`), as clients do when HTTP_PROXY points here",
        ));
    };
    let (scheme, rest) = (&target[..scheme_end], &target[scheme_end + 3..]);
    if scheme.eq_ignore_ascii_case("https") {
        return Err(HeadError::Unsupported(
            "https:// URLs go through a CONNECT tunnel; this proxy does not originate TLS",
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(HeadError::Unsupported("only http:// URLs are forwarded (https goes through CONNECT)"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if path.contains('#') {
        return Err(HeadError::Malformed("a fragment (`#`) in the request target"));
    }
    let path = match path.as_bytes().first() {
        None => "/".to_owned(),
        Some(b'?') => format!("/{path}"),
        Some(_) => path.to_owned(),
    };
    Ok(Target::Forward { authority: parse_authority(authority, Some(80))?, path })
}

/// Parses `host`, `host:port`, `[v6]` or `[v6]:port`. Without a default
/// port (CONNECT), the port is required.
fn parse_authority(text: &str, default_port: Option<u16>) -> Result<Authority> {
    if text.contains('@') {
        return Err(HeadError::Unsupported("credentials in the URL (`user@host`) are not supported"));
    }
    let (host, port) = if text.starts_with('[') {
        let close = text.find(']').ok_or(HeadError::Malformed("unclosed `[` in the host"))?;
        let (host, tail) = text.split_at(close + 1);
        match tail {
            "" => (host, None),
            _ => (host, Some(tail.strip_prefix(':').ok_or(HeadError::Malformed("junk after `]` in the host"))?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(HeadError::Malformed("empty host"));
    }
    let port = match port {
        Some(p) if !p.is_empty() => parse_port(p)?,
        _ => default_port.ok_or(HeadError::Malformed("CONNECT needs `host:port`"))?,
    };
    Ok(Authority { host: host.to_owned(), port, text: text.to_owned() })
}

fn parse_port(p: &str) -> Result<u16> {
    if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::Malformed("invalid port"));
    }
    match p.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(HeadError::Malformed("port must be 1 to 65535")),
    }
}

fn body_framing(fields: &[Field<'_>]) -> Result<BodyFraming> {
    let named = |n: &'static str| fields.iter().filter(move |f| f.name.eq_ignore_ascii_case(n));
    let mut te = named("transfer-encoding");
    let mut lengths = named("content-length");
    match (te.next(), lengths.next()) {
        (Some(_), Some(_)) => Err(HeadError::Malformed("both Transfer-Encoding and Content-Length")),
        (Some(t), None) => {
            if te.next().is_some() || !t.value.eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::Unsupported("only `Transfer-Encoding: chunked` is supported"));
            }
            Ok(BodyFraming::Chunked)
        }
        (None, Some(first)) => {
            if lengths.any(|l| l.value != first.value) {
                return Err(HeadError::Malformed("conflicting Content-Length fields"));
            }
            let digits = first.value;
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Malformed("invalid Content-Length"));
            }
            let n = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok());
            Ok(n.map_or(BodyFraming::None, BodyFraming::Length))
        }
        (None, None) => Ok(BodyFraming::None),
    }
}

/// The body framing a response declares, or `None` when its framing fields
/// are unusable; the body then runs until the upstream closes, which the
/// client sees too because the proxy closes after one response.
pub fn response_framing(fields: &[Field<'_>]) -> Option<BodyFraming> {
    body_framing(fields).ok()
}

/// Parses a response head (as delimited by [`head_len`]).
pub fn parse_response(head: &[u8]) -> Result<ResponseHead<'_>> {
    let lines = lines(head)?;
    let (first, rest) = lines.split_first().ok_or(HeadError::Malformed("empty response"))?;
    let status_line = ascii_line(first, "the status line is not printable ASCII")?;
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HeadError::Malformed("the status line is not `HTTP/1.1 CODE REASON`"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Version);
    }
    let status = match code.parse::<u16>() {
        Ok(s) if code.len() == 3 && (100..=999).contains(&s) => s,
        _ => return Err(HeadError::Malformed("invalid status code")),
    };
    Ok(ResponseHead { status_line, status, fields: parse_fields(rest)? })
}

/// The names listed in `Connection` fields (lower-case), which are
/// hop-by-hop for this message.
fn connection_listed<'a>(fields: &'a [Field<'a>]) -> Vec<String> {
    fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether a field goes to the next hop. Framing fields always do, even if
/// a `Connection` field lists them: the proxy relays the body as framed, so
/// the framing it announces must be the one it relays.
fn forwarded(field: &Field<'_>, listed: &[String]) -> bool {
    let name = field.name.to_ascii_lowercase();
    if name == "content-length" || name == "transfer-encoding" {
        return true;
    }
    !HOP_BY_HOP.contains(&name.as_str()) && !listed.contains(&name)
}

fn push_field(out: &mut Vec<u8>, field: &Field<'_>) {
    out.extend_from_slice(field.name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(field.value);
    out.extend_from_slice(b"\r\n");
}

/// The request head sent upstream: origin-form target, `Host` set from the
/// request target (RFC 9112 section 3.2.2: a proxy replaces a received
/// `Host`), hop-by-hop fields dropped, and `Connection: close`, because the
/// proxy forwards one request per connection.
pub fn rewrite_request(req: &RequestHead<'_>) -> Vec<u8> {
    let Target::Forward { authority, path } = &req.target else {
        return Vec::new();
    };
    let listed = connection_listed(&req.fields);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("{} {path} {}\r\nHost: {}\r\n", req.method, req.version, authority.text).as_bytes());
    for field in req.fields.iter().filter(|f| !f.name.eq_ignore_ascii_case("host") && forwarded(f, &listed)) {
        push_field(&mut out, field);
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// The response head sent to the client: hop-by-hop fields dropped and, on
/// the final response, `Connection: close` (interim `1xx` heads pass without
/// it).
pub fn rewrite_response(resp: &ResponseHead<'_>) -> Vec<u8> {
    let listed = connection_listed(&resp.fields);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(resp.status_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for field in resp.fields.iter().filter(|f| forwarded(f, &listed)) {
        push_field(&mut out, field);
    }
    if !is_interim(resp.status) {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `1xx` heads other than `101` are followed by another head.
pub fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// A response the proxy writes itself (refusals and errors): a text/plain
/// body with the explanation, and `Connection: close`.
pub fn error_response(status: u16, message: &dyn fmt::Display) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    let body = format!("cordon proxy: {message}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Validates a chunked body as it streams past, so the proxy relays exactly
/// one request body and knows where it ends. Bytes are forwarded unchanged;
/// the decoder only finds the boundary.
#[derive(Clone, Debug, Default)]
pub struct ChunkedDecoder {
    state: Chunk,
    /// Bytes in the current size line or trailer section, bounded.
    line: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` read so far.
    #[default]
    Start,
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: extensions up to the line end.
    Ext {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// In the trailer section; `empty` if the current line is empty so far.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// The chunked body is not well formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked request body")]
pub struct ChunkedError;

/// Longest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;

impl ChunkedDecoder {
    /// Whether the final chunk and trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Consumes bytes from `input` and returns how many belong to the body.
    /// Returns less than `input.len()` only when the body ended.
    pub fn feed(&mut self, input: &[u8]) -> std::result::Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() && self.state != Chunk::Done {
            if let Chunk::Data { left } = self.state {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len() - i);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 { Chunk::DataCr } else { Chunk::Data { left } };
                continue;
            }
            let b = input[i];
            i += 1;
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Err(ChunkedError);
            }
            self.state = match (self.state, b) {
                (Chunk::Start, _) => Chunk::Size { size: hex(b).ok_or(ChunkedError)?, digits: 1 },
                (Chunk::Size { size, digits }, _) if hex(b).is_some() => {
                    if digits >= 15 {
                        return Err(ChunkedError);
                    }
                    Chunk::Size { size: size << 4 | hex(b).unwrap_or(0), digits: digits + 1 }
                }
                (Chunk::Size { size, .. }, b';' | b' ' | b'\t') => Chunk::Ext { size },
                (Chunk::Size { size, .. } | Chunk::Ext { size }, b'\r') => Chunk::SizeLf { size },
                (Chunk::Size { size, .. } | Chunk::Ext { size } | Chunk::SizeLf { size }, b'\n') => {
                    self.line = 0;
                    if size == 0 {
                        Chunk::Trailer { empty: true }
                    } else {
                        Chunk::Data { left: size }
                    }
                }
                (Chunk::Ext { size }, _) => Chunk::Ext { size },
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr | Chunk::DataLf, b'\n') => {
                    self.line = 0;
                    Chunk::Start
                }
                (Chunk::Trailer { empty }, b'\r') => Chunk::TrailerLf { empty },
                (Chunk::Trailer { empty } | Chunk::TrailerLf { empty }, b'\n') => {
                    if empty {
                        Chunk::Done
                    } else {
                        Chunk::Trailer { empty: true }
                    }
                }
                (Chunk::Trailer { .. }, _) => Chunk::Trailer { empty: false },
                _ => return Err(ChunkedError),
            };
        }
        Ok(i)
    }
}

fn hex(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<RequestHead<'_>> {
        let raw = raw.as_bytes();
        let n = head_len(raw).expect("complete head");
        parse_request(&raw[..n])
    }

    #[test]
    fn head_len_finds_the_empty_line() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_len(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_len(b""), None);
        assert_eq!(head_len(b"\n"), None);
        assert_eq!(head_len(b"\r\n\r\n"), Some(4));
    }

    #[test]
    fn forward_request_is_rewritten() {
        let r = req("GET http://Example.com:8080/a/b?c=d HTTP/1.1\r\nHost: evil.com\r\nProxy-Connection: keep-alive\r\n\
                     Proxy-Authorization: Basic eA==\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n\
                     Accept: */*\r\nUser-Agent: t\r\n\r\n")
        .unwrap();
        let Target::Forward { authority, path } = &r.target else { panic!() };
        assert_eq!((authority.host.as_str(), authority.port, path.as_str()), ("Example.com", 8080, "/a/b?c=d"));
        assert_eq!(
            String::from_utf8(rewrite_request(&r)).unwrap(),
            "GET /a/b?c=d HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\nUser-Agent: t\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn targets() {
        let auth = |raw: &str| match req(raw).unwrap().target {
            Target::Forward { authority, path } => (authority.host, authority.port, path),
            Target::Connect(a) => (a.host, a.port, String::new()),
        };
        assert_eq!(auth("GET http://a.com HTTP/1.1\r\n\r\n"), ("a.com".into(), 80, "/".into()));
        assert_eq!(auth("GET http://a.com?x HTTP/1.1\r\n\r\n"), ("a.com".into(), 80, "/?x".into()));
        assert_eq!(auth("GET HTTP://a.com:/ HTTP/1.0\r\n\r\n"), ("a.com".into(), 80, "/".into()));
        assert_eq!(auth("GET http://[::1]:81/ HTTP/1.1\r\n\r\n"), ("[::1]".into(), 81, "/".into()));
        assert_eq!(auth("CONNECT a.com:443 HTTP/1.1\r\n\r\n"), ("a.com".into(), 443, String::new()));
        assert_eq!(auth("CONNECT [::1]:443 HTTP/1.1\r\n\r\n"), ("[::1]".into(), 443, String::new()));
    }

    #[test]
    fn refusals() {
        for (raw, status) in [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET https://a.com/ HTTP/1.1\r\n\r\n", 400),
            ("GET ftp://a.com/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://u:p@a.com/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://a.com/#f HTTP/1.1\r\n\r\n", 400),
            ("GET http://a.com:0/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://a.com:99999/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://a.com:+80/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://:80/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://[::1/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://[::1]x/ HTTP/1.1\r\n\r\n", 400),
            ("CONNECT a.com HTTP/1.1\r\n\r\n", 400),
            ("CONNECT a.com: HTTP/1.1\r\n\r\n", 400),
            ("GET http://a.com/ HTTP/2.0\r\n\r\n", 505),
            ("PRI * HTTP/2.0\r\n\r\n", 505),
            ("GET http://a.com/ FTP/1.0\r\n\r\n", 400),
            ("GET  http://a.com/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://a.com/\tx HTTP/1.1\r\n\r\n", 400),
            ("G(T http://a.com/ HTTP/1.1\r\n\r\n", 400),
            ("GET http://a.com/ HTTP/1.1\r\nNo-Colon\r\n\r\n", 400),
            ("GET http://a.com/ HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            ("GET http://a.com/ HTTP/1.1\r\n: x\r\n\r\n", 400),
            ("GET http://a.com/ HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
            ("GET http://a.com/ HTTP/1.1\r\nA: b\rc\r\n\r\n", 400),
            ("GET http://a.com/ HTTP/1.1\r\nA: b\x01c\r\n\r\n", 400),
            ("POST http://a.com/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST http://a.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("POST http://a.com/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST http://a.com/ HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400),
            ("POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
            ("POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("\r\n\r\n", 400),
        ] {
            let got = req(raw).map(|_| ()).map_err(|e| e.status());
            assert_eq!(got, Err(status), "{raw:?}");
        }
    }

    #[test]
    fn framing() {
        let body = |raw| req(raw).unwrap().body;
        assert_eq!(body("GET http://a/ HTTP/1.1\r\n\r\n"), BodyFraming::None);
        assert_eq!(body("POST http://a/ HTTP/1.1\r\ncontent-length: 12\r\n\r\n"), BodyFraming::Length(12));
        assert_eq!(
            body("POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            BodyFraming::Length(3)
        );
        assert_eq!(body("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"), BodyFraming::Chunked);
        // Framing fields survive even when `Connection` lists them.
        let r = req("POST http://a/ HTTP/1.1\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n").unwrap();
        assert!(String::from_utf8(rewrite_request(&r)).unwrap().contains("Content-Length: 2\r\n"));
    }

    #[test]
    fn responses() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            String::from_utf8(rewrite_response(&r)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
        let r = parse_response(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        assert!(is_interim(r.status));
        assert_eq!(rewrite_response(&r), b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(parse_response(b"HTTP/1.0 204\r\n\r\n").unwrap().status, 204);
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"\r\n",
            b"HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse_response(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunked_decoder_finds_the_end() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        // Whole, and fed one byte at a time: the boundary is the same.
        let mut d = ChunkedDecoder::default();
        assert_eq!(d.feed(body), Ok(body.len() - 4));
        assert!(d.is_done());
        let mut d = ChunkedDecoder::default();
        let mut used = 0;
        for b in body.iter() {
            used += d.feed(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(used, body.len() - 4);
        let mut d = ChunkedDecoder::default();
        assert_eq!(d.feed(b"0\r\n\r\n"), Ok(5));
        assert!(d.is_done());
        let mut d = ChunkedDecoder::default();
        assert_eq!(d.feed(b"A\nabcdefghij\n0\n\n"), Ok(16));
        assert!(d.is_done());
        for bad in [&b"x\r\n"[..], b"\r\n", b"5\r\nhelloXX", b"5\rX", b"ffffffffffffffff0\r\n", b"1;\x00\r\n"] {
            let mut d = ChunkedDecoder::default();
            let r = d.feed(bad);
            if bad == b"1;\x00\r\n" {
                // Extensions are skipped, not validated.
                assert!(r.is_ok());
                continue;
            }
            assert_eq!(r, Err(ChunkedError), "{bad:?}");
        }
        let mut d = ChunkedDecoder::default();
        assert_eq!(d.feed(&[b'1'; 20]), Err(ChunkedError));
        let mut d = ChunkedDecoder::default();
        let long_ext = [b"1;".as_slice(), &[b'a'; 5000]].concat();
        assert_eq!(d.feed(&long_ext), Err(ChunkedError));
    }

    /// Deterministic garbage: no input may panic the parsers.
    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"GET CONNECT http:// [ ] : / ? # @ \r \n \t 0 9 a f HTTP/1.1 Content-Length Transfer-Encoding chunked ;\x00\xff";
        for _ in 0..20_000 {
            let len = (next() % 200) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| match next() % 3 {
                    0 => next().to_le_bytes()[0],
                    _ => alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap()],
                })
                .collect();
            if let Some(n) = head_len(&input) {
                let _ = parse_request(&input[..n]).map(|r| rewrite_request(&r));
                let _ = parse_response(&input[..n]).map(|r| rewrite_response(&r));
            }
            let _ = parse_request(&input);
            let _ = parse_response(&input);
            let _ = ChunkedDecoder::default().feed(&input);
        }
    }
}
