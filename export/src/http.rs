//! HTTP/1.1 for OTLP: a request writer and a response reader (httparse), sans-IO.
//!
//! The reader takes bytes as they arrive and says when a whole response is in: it handles
//! `Content-Length`, `Transfer-Encoding: chunked`, bodies delimited by close, interim 1xx
//! responses and `Connection: close`. It caps what it buffers and never panics on input.

use std::fmt;

/// The most response bytes (head and body) kept; OTLP responses are small.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
const MAX_HEADERS: usize = 32;

/// What goes into every request.
pub struct RequestHead<'a> {
    /// `host[:port]`.
    pub authority: &'a str,
    pub path: &'a str,
    /// Extra headers; values are secrets and are never logged.
    pub headers: &'a [(String, String)],
    pub content_type: &'a str,
    pub gzip: bool,
}

/// Whether a header name and value can go on the wire as they are.
pub fn header_ok(name: &str, value: &str) -> bool {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    !name.is_empty()
        && name.bytes().all(token)
        && value
            .bytes()
            .all(|c| c == b'\t' || (c >= 0x20 && c != 0x7f))
}

/// Writes a POST request with `body` into `out` (cleared first). Headers that could not
/// go on the wire safely are left out (config refuses them before this).
pub fn write_request(out: &mut Vec<u8>, head: &RequestHead<'_>, body: &[u8]) {
    use std::io::Write;
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: telegen/{}\r\n\
         Content-Type: {}\r\nContent-Length: {}\r\n",
        head.path,
        head.authority,
        env!("CARGO_PKG_VERSION"),
        head.content_type,
        body.len()
    );
    if head.gzip {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    for (k, v) in head.headers {
        if header_ok(k, v) {
            let _ = write!(out, "{k}: {v}\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server will close the connection (or the body ran to the close).
    pub close: bool,
    /// `Retry-After`, as sent.
    pub retry_after: Option<String>,
}

/// Why a response could not be read; the connection is unusable afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    Malformed(String),
    TooLarge,
    /// The connection closed before the response was complete.
    Truncated,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "malformed HTTP response: {m}"),
            Self::TooLarge => write!(f, "HTTP response larger than {MAX_RESPONSE_BYTES} bytes"),
            Self::Truncated => write!(f, "connection closed before the response was complete"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    close: bool,
    retry_after: Option<String>,
}

/// Reads one response at a time from the bytes of a connection.
#[derive(Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
}

impl ResponseReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (a new connection).
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// Adds bytes; returns a response once one is complete. Bytes after it are kept.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, ResponseError> {
        if self.buf.len() + data.len() > MAX_RESPONSE_BYTES {
            return Err(ResponseError::TooLarge);
        }
        self.buf.extend_from_slice(data);
        self.poll(false)
    }

    /// The peer closed the connection: a close-delimited body ends here.
    pub fn eof(&mut self) -> Result<Option<Response>, ResponseError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match self.poll(true)? {
            Some(r) => Ok(Some(r)),
            None => Err(ResponseError::Truncated),
        }
    }

    fn poll(&mut self, at_eof: bool) -> Result<Option<Response>, ResponseError> {
        loop {
            let Some(head) = parse_head(&self.buf)? else {
                return Ok(None);
            };
            if (100..200).contains(&head.status) {
                // Interim response: skip it and read on.
                self.buf.drain(..head.len);
                continue;
            }
            let body = &self.buf[head.len..];
            let (body, used) = match head.framing {
                Framing::Length(n) => {
                    if body.len() < n {
                        return Ok(None);
                    }
                    (body[..n].to_vec(), head.len + n)
                }
                Framing::Chunked => match dechunk(body)? {
                    Some((b, used)) => (b, head.len + used),
                    None => return Ok(None),
                },
                Framing::UntilClose => {
                    if !at_eof {
                        return Ok(None);
                    }
                    (body.to_vec(), self.buf.len())
                }
            };
            self.buf.drain(..used);
            let close = head.close || matches!(head.framing, Framing::UntilClose);
            return Ok(Some(Response {
                status: head.status,
                body,
                close,
                retry_after: head.retry_after,
            }));
        }
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    let status = r.code.unwrap_or(0);
    let mut framing = Framing::UntilClose;
    let mut close = r.version == Some(0);
    let mut retry_after = None;
    let mut length: Option<usize> = None;
    for h in r.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .map_err(|_| ResponseError::Malformed(format!("Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(ResponseError::Malformed(
                    "conflicting Content-Length".into(),
                ));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
            {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("close"));
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(value.to_string());
        }
    }
    if !matches!(framing, Framing::Chunked)
        && let Some(n) = length
    {
        if n > MAX_RESPONSE_BYTES {
            return Err(ResponseError::TooLarge);
        }
        framing = Framing::Length(n);
    }
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
        retry_after,
    }))
}

/// Decodes a chunked body; `None` until it is complete. Returns the body and bytes used.
fn dechunk(mut b: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ResponseError> {
    let total = b.len();
    let mut body = Vec::new();
    loop {
        let Some(eol) = find_crlf(b) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&b[..eol])
            .map_err(|_| ResponseError::Malformed("chunk size is not text".into()))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| ResponseError::Malformed(format!("chunk size {size_hex:?}")))?;
        if size > MAX_RESPONSE_BYTES {
            return Err(ResponseError::TooLarge);
        }
        b = &b[eol + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = find_crlf(b) else {
                    return Ok(None);
                };
                b = &b[eol + 2..];
                if eol == 0 {
                    return Ok(Some((body, total - b.len())));
                }
            }
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        if &b[size..size + 2] != b"\r\n" {
            return Err(ResponseError::Malformed(
                "chunk not followed by CRLF".into(),
            ));
        }
        body.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(parts: &[&[u8]]) -> Result<Option<Response>, ResponseError> {
        let mut r = ResponseReader::new();
        let mut last = Ok(None);
        for p in parts {
            last = r.feed(p);
            if !matches!(last, Ok(None)) {
                return last;
            }
        }
        last
    }

    #[test]
    fn writes_an_otlp_request() {
        let mut out = Vec::new();
        let headers = vec![
            ("x-api-key".to_string(), "k".to_string()),
            ("bad\r\n".into(), "x".into()),
        ];
        let head = RequestHead {
            authority: "c:4318",
            path: "/v1/metrics",
            headers: &headers,
            content_type: "application/x-protobuf",
            gzip: true,
        };
        write_request(&mut out, &head, b"BODY");
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("POST /v1/metrics HTTP/1.1\r\nHost: c:4318\r\n"));
        assert!(s.contains("Content-Type: application/x-protobuf\r\n"));
        assert!(s.contains("Content-Encoding: gzip\r\n"));
        assert!(s.contains("Content-Length: 4\r\n"));
        assert!(s.contains("x-api-key: k\r\n"));
        assert!(!s.contains("bad"));
        assert!(s.ends_with("\r\n\r\nBODY"));
    }

    #[test]
    fn reads_a_response_split_anywhere() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 3\r\n\r\nabc";
        for cut in 0..raw.len() {
            let r = read_all(&[&raw[..cut], &raw[cut..]]).unwrap().unwrap();
            assert_eq!(
                (r.status, r.body.as_slice(), r.close),
                (200, &b"abc"[..], false)
            );
        }
    }

    #[test]
    fn reads_chunked_interim_and_close() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\nConnection: close\r\n\r\n2;x=y\r\nab\r\n1\r\nc\r\n0\r\nTrailer: t\r\n\r\n";
        let r = read_all(&[raw]).unwrap().unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"abc");
        assert!(r.close);
        assert_eq!(r.retry_after.as_deref(), Some("7"));
    }

    #[test]
    fn body_until_close() {
        let mut r = ResponseReader::new();
        assert_eq!(r.feed(b"HTTP/1.0 200 OK\r\n\r\nxyz").unwrap(), None);
        let resp = r.eof().unwrap().unwrap();
        assert_eq!((resp.body.as_slice(), resp.close), (&b"xyz"[..], true));
        let mut r = ResponseReader::new();
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
            .unwrap();
        assert_eq!(r.eof(), Err(ResponseError::Truncated));
    }

    #[test]
    fn reads_captured_responses_back_to_back() {
        // Captured from Python's http.server (the test receiver) on one keep-alive socket.
        let ok = include_bytes!("testdata/python-http-server-200.http");
        let bad = include_bytes!("testdata/python-http-server-400.http");
        let mut both = ok.to_vec();
        both.extend_from_slice(bad);
        let mut r = ResponseReader::new();
        let first = r.feed(&both).unwrap().unwrap();
        assert_eq!(
            (first.status, first.close, first.body.len()),
            (200, false, 0)
        );
        let second = r.feed(b"").unwrap().unwrap();
        assert_eq!(second.status, 400);
        assert_eq!(r.feed(b"").unwrap(), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(read_all(&[b"garbage garbage\r\n\r\n"]).is_err());
        assert!(read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]).is_err());
        assert!(
            read_all(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]).is_err()
        );
        assert_eq!(
            read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"]),
            Err(ResponseError::TooLarge)
        );
    }
}
