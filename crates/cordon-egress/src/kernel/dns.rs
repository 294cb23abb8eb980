//! The DNS wire format, as much as the stub needs: read one query (RFC 1035
//! section 4), write its answer. Pure; everything untrusted is bounded and
//! checked before use.

/// Largest message the stub reads or writes (queries are far smaller; EDNS
/// clients announce larger buffers, which the stub does not need).
pub const MAX_MESSAGE: usize = 512;
/// `A`.
pub const TYPE_A: u16 = 1;
/// `AAAA`.
#[cfg(test)]
const TYPE_AAAA: u16 = 28;
/// `IN`.
pub const CLASS_IN: u16 = 1;
const HEADER: usize = 12;

/// Response codes the stub uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    /// No error (possibly no records: "no data").
    NoError = 0,
    /// The query was malformed.
    FormErr = 1,
    /// The stub could not answer (resolution failed or timed out).
    ServFail = 2,
    /// The name does not exist (or is not allowed: the same to the program).
    NxDomain = 3,
    /// Not a standard query.
    NotImp = 4,
    /// The stub will not answer this (a class other than `IN`).
    Refused = 5,
}

/// One question, read from a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The query's id, echoed.
    pub id: u16,
    /// The name, lower-cased, without the trailing dot; labels joined with
    /// `.`. Only names made of letters, digits, `-` and `_` are read.
    pub name: String,
    /// `QTYPE`.
    pub qtype: u16,
    /// `QCLASS`.
    pub qclass: u16,
    /// The question section as sent (echoed in the answer).
    question: Vec<u8>,
    /// Recursion desired.
    rd: bool,
}

/// Why a query cannot be answered normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// Too short for a header, or a response rather than a query: dropped
    /// without an answer.
    Ignore,
    /// Answer with this code (the header was readable).
    Answer {
        /// The query's id.
        id: u16,
        /// The code.
        rcode: Rcode,
        /// Why, for the records.
        why: &'static str,
    },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads a query. Names with compression pointers, labels of characters a
/// host name cannot have, or more than 253 characters are refused with
/// `NXDOMAIN` (such names cannot be allowed, and reading them loosely would
/// be a way to smuggle data).
pub fn parse_query(msg: &[u8]) -> Result<Query, QueryError> {
    if msg.len() < HEADER || msg.len() > MAX_MESSAGE * 8 {
        return Err(QueryError::Ignore);
    }
    let id = u16_at(msg, 0).ok_or(QueryError::Ignore)?;
    let flags = u16_at(msg, 2).ok_or(QueryError::Ignore)?;
    if flags & 0x8000 != 0 {
        return Err(QueryError::Ignore);
    }
    let fail = |rcode, why| QueryError::Answer { id, rcode, why };
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return Err(fail(Rcode::NotImp, "not a standard query"));
    }
    let qdcount = u16_at(msg, 4).unwrap_or(0);
    if qdcount != 1 {
        return Err(fail(Rcode::FormErr, "a query must ask exactly one question"));
    }
    let mut at = HEADER;
    let mut labels: Vec<String> = vec![];
    let mut total = 0usize;
    loop {
        let len = usize::from(*msg.get(at).ok_or(fail(Rcode::FormErr, "the question is cut short"))?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return Err(fail(Rcode::NxDomain, "the name uses compression or an extended label"));
        }
        let label = msg.get(at..at + len).ok_or(fail(Rcode::FormErr, "the question is cut short"))?;
        if !label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') {
            return Err(fail(Rcode::NxDomain, "the name has characters a host name cannot have"));
        }
        total += len + 1;
        if total > 254 {
            return Err(fail(Rcode::NxDomain, "the name is longer than 253 characters"));
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16_at(msg, at).ok_or(fail(Rcode::FormErr, "the question is cut short"))?;
    let qclass = u16_at(msg, at + 2).ok_or(fail(Rcode::FormErr, "the question is cut short"))?;
    let question = msg[HEADER..at + 4].to_vec();
    Ok(Query { id, name: labels.join("."), qtype, qclass, question, rd: flags & 0x0100 != 0 })
}

fn header(id: u16, rd: bool, rcode: Rcode, qd: u16, an: u16) -> Vec<u8> {
    // QR, RA, RD as asked; AA is not claimed.
    let flags: u16 = 0x8000 | 0x0080 | if rd { 0x0100 } else { 0 } | rcode as u16;
    let mut out = Vec::with_capacity(64);
    for v in [id, flags, qd, an, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// An answer with `addrs` as `A` records for the question's name, or no
/// record ("no data") when `addrs` is empty.
pub fn answer(q: &Query, addrs: &[std::net::Ipv4Addr], ttl: u32) -> Vec<u8> {
    let count = u16::try_from(addrs.len()).unwrap_or(0);
    let mut out = header(q.id, q.rd, Rcode::NoError, 1, count);
    out.extend_from_slice(&q.question);
    for a in addrs {
        // A pointer to the name in the question, at offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&a.octets());
    }
    out
}

/// An answer carrying only `rcode` (and the question, when it was read).
pub fn error(q: Option<&Query>, id: u16, rcode: Rcode) -> Vec<u8> {
    match q {
        Some(q) => {
            let mut out = header(id, q.rd, rcode, 1, 0);
            out.extend_from_slice(&q.question);
            out
        }
        None => header(id, true, rcode, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as a resolver sends it.
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![];
        for v in [id, 0x0100, 1, 0, 0, 0] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(u8::try_from(label.len()).unwrap());
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn queries_are_read_and_answered() {
        let q = parse_query(&query(0x1234, "API.Example.com.", TYPE_A)).unwrap();
        assert_eq!((q.id, q.name.as_str(), q.qtype, q.qclass), (0x1234, "api.example.com", TYPE_A, CLASS_IN));
        let a = answer(&q, &["198.18.0.1".parse().unwrap()], 300);
        assert_eq!(&a[0..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16_at(&a, 6), Some(1), "one answer");
        assert_eq!(&a[a.len() - 4..], &[198, 18, 0, 1]);
        let none = answer(&q, &[], 300);
        assert_eq!((u16_at(&none, 6), none[3] & 0x0f), (Some(0), 0));
        let nx = error(Some(&q), q.id, Rcode::NxDomain);
        assert_eq!((nx[3] & 0x0f, u16_at(&nx, 4)), (3, Some(1)));
    }

    #[test]
    fn what_a_name_cannot_be_is_refused() {
        let nx = |m: Vec<u8>| matches!(parse_query(&m), Err(QueryError::Answer { rcode: Rcode::NxDomain, .. }));
        // 63 is the longest label; 254 characters is too long a name.
        assert!(parse_query(&query(1, &format!("{}.example.com", "a".repeat(63)), TYPE_A)).is_ok());
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(nx(query(1, &long, TYPE_A)), "{}", long.len());
        let mut bad = query(1, "a.example.com", TYPE_A);
        bad[13] = b' ';
        assert!(nx(bad));
        let mut pointer = query(1, "a.example.com", TYPE_A);
        pointer[12] = 0xc0;
        assert!(nx(pointer));
        assert!(nx(query(1, "caf\u{e9}.example", TYPE_A)));
    }

    #[test]
    fn malformed_messages_never_panic() {
        assert_eq!(parse_query(&[0; 4]), Err(QueryError::Ignore));
        let mut response = query(1, "a.b", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), Err(QueryError::Ignore));
        let mut two = query(1, "a.b", TYPE_A);
        two[5] = 2;
        assert!(matches!(parse_query(&two), Err(QueryError::Answer { rcode: Rcode::FormErr, .. })));
        let mut notify = query(1, "a.b", TYPE_A);
        notify[2] |= 4 << 3;
        assert!(matches!(parse_query(&notify), Err(QueryError::Answer { rcode: Rcode::NotImp, .. })));
        let full = query(7, "abc.example.com", TYPE_AAAA);
        for cut in 0..full.len() {
            let _ = parse_query(&full[..cut]);
        }
        for seed in 0..500u32 {
            let junk: Vec<u8> =
                (0..(seed % 97)).map(|i| seed.wrapping_mul(31).wrapping_add(i * 7).to_le_bytes()[0]).collect();
            let _ = parse_query(&junk);
        }
    }
}
