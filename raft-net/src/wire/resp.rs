//! RESP2, the Redis serialisation protocol, as spoken on the client port: a parser for the
//! commands clients send and an encoder for the replies.
//!
//! # Commands (client to server)
//!
//! A command is either a RESP array of bulk strings, which is what client libraries and
//! `redis-cli` send:
//!
//! ```text
//! *<n>\r\n                    n = number of arguments, 1..=max_array_len
//! $<len>\r\n<len bytes>\r\n   repeated n times; len in 0..=max_bulk_len, the bytes are binary-safe
//! ```
//!
//! for example `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, or an inline command: any line that does not
//! start with `*`, ended by `\n` (an optional `\r` before it is dropped), split into arguments
//! the way redis-server splits them: on spaces and tabs, with `"double quotes"` understanding
//! the escapes `\n \r \t \b \a \\ \" \xHH`, and `'single quotes'` understanding `\'`. A closing
//! quote must be followed by a space or the end of the line. `PING\r\n` and
//! `SET k "hello world"\r\n` are inline commands.
//!
//! As redis-server does, the parser skips empty inline lines and arrays of length 0 or -1, and
//! treats as protocol errors: a count or length that is not a plain decimal integer (no sign
//! other than a leading `-`, no leading zeros), a negative array length other than -1, any
//! negative bulk length (a command cannot contain a null), an array element that is not a bulk
//! string, and anything over the configured [`RespLimits`]. It is stricter than redis-server in
//! one way: a count line or bulk string must end in exactly `\r\n`.
//!
//! # Replies (server to client)
//!
//! [`RespValue::encode`] writes, byte for byte:
//!
//! ```text
//! SimpleString("OK")          +OK\r\n
//! Error("ERR no such key")    -ERR no such key\r\n
//! Integer(-3)                 :-3\r\n
//! BulkString(Some("ab"))      $2\r\nab\r\n
//! BulkString(None)            $-1\r\n
//! Array(Some([v1, v2]))       *2\r\n<v1><v2>
//! Array(None)                 *-1\r\n
//! ```
//!
//! # Errors
//!
//! A [`RespError`] displays as redis-server's own message, for example `ERR Protocol error:
//! invalid bulk length`, so a server replies with `-` + that text + `\r\n` (see
//! [`RespError::to_reply`]) and closes the connection, as redis-server does: after a protocol
//! error the stream cannot be trusted.

use std::fmt::Write as _;
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest count line (`*<n>` or `$<len>`) accepted before its `\r\n`: the longest valid one
/// is `*-9223372036854775808`, 21 bytes.
const MAX_COUNT_LINE: usize = 32;

/// Limits on what a client may send in one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// The longest bulk string argument, in bytes. Default 512 MiB, redis-server's
    /// `proto-max-bulk-len`.
    pub max_bulk_len: usize,
    /// The most arguments in one array command. Default 1 048 576, redis-server's limit for
    /// unauthenticated clients.
    pub max_array_len: usize,
    /// The longest inline command line, in bytes. Default 64 KiB, redis-server's
    /// `PROTO_INLINE_MAX_SIZE`.
    pub max_inline_len: usize,
}

impl Default for RespLimits {
    fn default() -> RespLimits {
        RespLimits { max_bulk_len: 512 * 1024 * 1024, max_array_len: 1024 * 1024, max_inline_len: 64 * 1024 }
    }
}

/// A protocol error in what a client sent. Displays as redis-server's message for the same
/// error; the connection should be closed after replying with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// An inline command line is longer than [`RespLimits::max_inline_len`].
    #[error("ERR Protocol error: too big inline request")]
    InlineTooLong,
    /// An inline command has an unterminated quote, or a closing quote not followed by a space.
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An array length is malformed, below -1, or over [`RespLimits::max_array_len`].
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk string length is malformed, negative, or over [`RespLimits::max_bulk_len`].
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An array element is not a bulk string.
    #[error("ERR Protocol error: expected '$', got '{}'", escaped(.got))]
    ExpectedBulk {
        /// The type byte found instead of `$`.
        got: u8,
    },
    /// An array length line has no `\r\n` within a sensible length.
    #[error("ERR Protocol error: too big mbulk count string")]
    MultibulkCountTooLong,
    /// A bulk length line has no `\r\n` within a sensible length.
    #[error("ERR Protocol error: too big bulk count string")]
    BulkCountTooLong,
    /// A count line or bulk string does not end in `\r\n`.
    #[error("ERR Protocol error: expected CRLF")]
    ExpectedCrlf,
}

impl RespError {
    /// The error reply to send before closing the connection.
    pub fn to_reply(&self) -> RespValue {
        RespValue::Error(self.to_string())
    }
}

/// A byte as printable text for an error message: never a line break, which would end the
/// error reply early.
fn escaped(b: &u8) -> std::ascii::EscapeDefault {
    b.escape_ascii()
}

/// Where a partly parsed array command stands: positions relative to the start of the buffer,
/// which nothing has consumed yet.
#[derive(Clone, Debug, Default)]
struct Cursor {
    /// Bytes of the command parsed so far.
    pos: usize,
    /// Elements still to parse; `None` before the array header is parsed.
    remaining: Option<usize>,
    /// The arguments parsed so far.
    args: Vec<Range<usize>>,
}

/// An incremental command parser that remembers how far it got, so a huge command arriving in
/// many reads is scanned once rather than from its start on every call.
///
/// Between calls the caller may only append to the buffer (as reading from a socket does); the
/// parser consumes a command from the front of the buffer once it is complete.
#[derive(Clone, Debug)]
pub struct CommandParser {
    limits: RespLimits,
    cursor: Cursor,
}

impl CommandParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: RespLimits) -> CommandParser {
        CommandParser { limits, cursor: Cursor::default() }
    }

    /// Takes the next complete command off the front of `buf`. `Ok(None)` means more bytes are
    /// needed. After an error the parser and the buffer are in an unspecified state: reply with
    /// the error and close the connection.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
        parse_with(buf, &self.limits, &mut self.cursor)
    }
}

/// Takes the next complete command off the front of `buf`; `Ok(None)` means more bytes are
/// needed, and nothing but skipped empty commands is consumed until a whole command is there.
///
/// Pipelined commands come out one per call. This stateless form re-scans a partial command's
/// headers on each call; [`CommandParser`] does not.
pub fn parse_command(buf: &mut BytesMut, limits: &RespLimits) -> Result<Option<Vec<Bytes>>, RespError> {
    parse_with(buf, limits, &mut Cursor::default())
}

fn parse_with(buf: &mut BytesMut, limits: &RespLimits, cursor: &mut Cursor) -> Result<Option<Vec<Bytes>>, RespError> {
    // Each round either returns or consumes at least one byte (a skipped empty command), so the
    // buffer's length bounds the loop.
    loop {
        if cursor.remaining.is_none() {
            if buf.is_empty() {
                return Ok(None);
            }
            if buf[0] != b'*' {
                match parse_inline(buf, limits)? {
                    Inline::Incomplete => return Ok(None),
                    Inline::Empty => continue,
                    Inline::Command(args) => return Ok(Some(args)),
                }
            }
        }
        match parse_array(buf, limits, cursor)? {
            Array::Incomplete => return Ok(None),
            Array::Empty(len) => {
                buf.advance(len);
                *cursor = Cursor::default();
            }
            Array::Complete => {
                let command = buf.split_to(cursor.pos).freeze();
                let args = cursor.args.drain(..).map(|r| command.slice(r)).collect();
                *cursor = Cursor::default();
                return Ok(Some(args));
            }
        }
    }
}

enum Array {
    Incomplete,
    /// `*0` or `*-1`: consume this many bytes and carry on.
    Empty(usize),
    Complete,
}

/// Continues parsing an array command from `cursor`.
fn parse_array(buf: &[u8], limits: &RespLimits, cursor: &mut Cursor) -> Result<Array, RespError> {
    let remaining = match cursor.remaining {
        Some(n) => n,
        None => {
            // buf[0] == b'*', checked by the caller.
            let Some((count, next)) = count_line(buf, 1, RespError::MultibulkCountTooLong)? else {
                return Ok(Array::Incomplete);
            };
            let count = count.ok_or(RespError::InvalidMultibulkLength)?;
            if count == 0 || count == -1 {
                return Ok(Array::Empty(next));
            }
            let count = usize::try_from(count).map_err(|_| RespError::InvalidMultibulkLength)?;
            if count > limits.max_array_len {
                return Err(RespError::InvalidMultibulkLength);
            }
            cursor.pos = next;
            cursor.args = Vec::with_capacity(count.min(64));
            count
        }
    };
    cursor.remaining = Some(remaining);
    while cursor.remaining != Some(0) {
        let Some(&kind) = buf.get(cursor.pos) else {
            return Ok(Array::Incomplete);
        };
        if kind != b'$' {
            return Err(RespError::ExpectedBulk { got: kind });
        }
        let Some((len, data_start)) = count_line(buf, cursor.pos + 1, RespError::BulkCountTooLong)? else {
            return Ok(Array::Incomplete);
        };
        let len = len.and_then(|l| usize::try_from(l).ok()).filter(|&l| l <= limits.max_bulk_len).ok_or(RespError::InvalidBulkLength)?;
        let data_end = data_start + len;
        let Some(terminator) = buf.get(data_end..data_end + 2) else {
            return Ok(Array::Incomplete);
        };
        if terminator != b"\r\n" {
            return Err(RespError::ExpectedCrlf);
        }
        cursor.args.push(data_start..data_end);
        cursor.pos = data_end + 2;
        cursor.remaining = cursor.remaining.map(|n| n - 1);
    }
    Ok(Array::Complete)
}

/// Reads the `\r\n`-terminated decimal count starting at `buf[start]`: `None` if the line is
/// incomplete, else (the number, or `None` if it is not a valid integer; the position after the
/// line).
fn count_line(buf: &[u8], start: usize, too_long: RespError) -> Result<Option<(Option<i64>, usize)>, RespError> {
    let window = &buf[start.min(buf.len())..buf.len().min(start + MAX_COUNT_LINE + 2)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if window.len() >= MAX_COUNT_LINE + 2 { Err(too_long) } else { Ok(None) };
    };
    let Some(line) = window[..nl].strip_suffix(b"\r") else {
        return Err(RespError::ExpectedCrlf);
    };
    Ok(Some((parse_i64(line), start + nl + 1)))
}

/// Parses a decimal integer as redis-server's `string2ll` does: an optional `-`, then digits
/// with no leading zero (except `0` itself), within i64.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || (digits[0] == b'0' && (digits.len() > 1 || negative)) {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut n: i64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

enum Inline {
    Incomplete,
    /// A blank line, already consumed.
    Empty,
    /// A command, already consumed.
    Command(Vec<Bytes>),
}

fn parse_inline(buf: &mut BytesMut, limits: &RespLimits) -> Result<Inline, RespError> {
    let max = limits.max_inline_len;
    // The line may be `max` bytes plus "\r\n".
    let Some(nl) = buf.iter().take(max.saturating_add(2)).position(|&b| b == b'\n') else {
        // Without a newline yet, the line is already too long unless all that exceeds the limit
        // is a final '\r'.
        let can_still_fit = buf.len() <= max || (buf.len() == max + 1 && buf[max] == b'\r');
        return if can_still_fit { Ok(Inline::Incomplete) } else { Err(RespError::InlineTooLong) };
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > limits.max_inline_len {
        return Err(RespError::InlineTooLong);
    }
    let args = split_inline(line)?;
    buf.advance(nl + 1);
    if args.is_empty() {
        Ok(Inline::Empty)
    } else {
        Ok(Inline::Command(args.into_iter().map(Bytes::from).collect()))
    }
}

/// Splits an inline command line into arguments, as redis-server's `sdssplitargs` does.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        let mut quote: Option<u8> = None;
        // Each iteration consumes at least one byte of `line`.
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return Err(RespError::UnbalancedQuotes);
                }
                break;
            };
            match quote {
                Some(b'"') => {
                    let hex = line.get(i + 2..i + 4).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
                    if c == b'\\' && line.get(i + 1) == Some(&b'x') && hex.is_some() {
                        arg.extend(hex);
                        i += 3;
                    } else if c == b'\\' && i + 1 < line.len() {
                        i += 1;
                        arg.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    } else if c == b'"' {
                        // A closing quote must be followed by a space or the end of the line.
                        if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                            return Err(RespError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    } else {
                        arg.push(c);
                    }
                }
                Some(_) => {
                    if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        i += 1;
                        arg.push(b'\'');
                    } else if c == b'\'' {
                        if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                            return Err(RespError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    } else {
                        arg.push(c);
                    }
                }
                None => match c {
                    c if is_space(c) => break,
                    b'"' | b'\'' => quote = Some(c),
                    c => arg.push(c),
                },
            }
            i += 1;
        }
        args.push(arg);
    }
}

/// A RESP2 value, as the server sends replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespValue {
    /// `+text\r\n`: a short status such as `OK`.
    SimpleString(String),
    /// `-text\r\n`: an error; by convention the text starts with an error code such as `ERR`.
    Error(String),
    /// `:n\r\n`.
    Integer(i64),
    /// `$len\r\nbytes\r\n`, or the null bulk string `$-1\r\n`.
    BulkString(Option<Bytes>),
    /// `*n\r\n` followed by n values, or the null array `*-1\r\n`.
    Array(Option<Vec<RespValue>>),
}

impl RespValue {
    /// `+OK`.
    pub fn ok() -> RespValue {
        RespValue::SimpleString("OK".to_string())
    }

    /// A bulk string holding `data`.
    pub fn bulk(data: impl Into<Bytes>) -> RespValue {
        RespValue::BulkString(Some(data.into()))
    }

    /// Appends the value's encoding to `out`.
    ///
    /// Simple strings and errors cannot contain line breaks; any `\r` or `\n` in their text is
    /// written as a space (as redis-server does for error messages), so the output is always
    /// valid RESP.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            RespValue::SimpleString(s) => encode_line(b'+', s, out),
            RespValue::Error(s) => encode_line(b'-', s, out),
            RespValue::Integer(n) => encode_number(b':', *n, out),
            RespValue::BulkString(None) => out.put_slice(b"$-1\r\n"),
            RespValue::BulkString(Some(data)) => {
                encode_number(b'$', data.len() as i64, out);
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            RespValue::Array(None) => out.put_slice(b"*-1\r\n"),
            RespValue::Array(Some(items)) => {
                encode_number(b'*', items.len() as i64, out);
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

fn encode_line(kind: u8, text: &str, out: &mut BytesMut) {
    out.put_u8(kind);
    out.extend(text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.put_slice(b"\r\n");
}

fn encode_number(kind: u8, n: i64, out: &mut BytesMut) {
    out.put_u8(kind);
    // Writing to a BytesMut cannot fail.
    let _ = write!(out, "{n}");
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(input: &[u8]) -> Result<Option<Vec<Bytes>>, RespError> {
        parse_command(&mut BytesMut::from(input), &RespLimits::default())
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn encoded(v: &RespValue) -> BytesMut {
        let mut out = BytesMut::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn parses_arrays_of_bulk_strings() {
        let table: &[(&[u8], &[&str])] = &[
            (b"*1\r\n$4\r\nPING\r\n", &["PING"]),
            (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &["GET", "k"]),
            (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", &["SET", "k", ""]),
            (b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n", &["ECHO", "a\r\nb"]),
        ];
        for (input, want) in table {
            let mut buf = BytesMut::from(*input);
            assert_eq!(parse_command(&mut buf, &RespLimits::default()), Ok(Some(args(want))), "{}", input.escape_ascii());
            assert!(buf.is_empty());
        }
        let binary = parse(b"*1\r\n$3\r\n\x00\xff\n\r\n").unwrap().unwrap();
        assert_eq!(&binary[0][..], b"\x00\xff\n");
    }

    #[test]
    fn parses_inline_commands_as_redis_server_does() {
        let table: &[(&[u8], &[&str])] = &[
            (b"PING\r\n", &["PING"]),
            (b"PING\n", &["PING"]),
            (b"  SET   k\tv  \r\n", &["SET", "k", "v"]),
            (b"SET k \"hello world\"\r\n", &["SET", "k", "hello world"]),
            (b"SET k \"a\\x41\\n\\\"\"\r\n", &["SET", "k", "aA\n\""]),
            (b"SET k 'it\\'s'\r\n", &["SET", "k", "it's"]),
            (b"SET k \"\"\r\n", &["SET", "k", ""]),
            (b"$3\r\n", &["$3"]),
        ];
        for (input, want) in table {
            assert_eq!(parse(input), Ok(Some(args(want))), "{}", input.escape_ascii());
        }
        for bad in [&b"SET k \"open\r\n"[..], b"SET k 'open\r\n", b"SET k \"closed\"x\r\n"] {
            assert_eq!(parse(bad), Err(RespError::UnbalancedQuotes), "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn pipelined_commands_come_out_one_per_call_skipping_empty_ones() {
        let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n\r\nECHO hi\r\n*0\r\n*-1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI"[..]);
        let limits = RespLimits::default();
        assert_eq!(parse_command(&mut buf, &limits), Ok(Some(args(&["PING"]))));
        assert_eq!(parse_command(&mut buf, &limits), Ok(Some(args(&["ECHO", "hi"]))));
        assert_eq!(parse_command(&mut buf, &limits), Ok(Some(args(&["GET", "k"]))));
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPI", "the partial command stays in the buffer");
        buf.extend_from_slice(b"NG\r\n");
        assert_eq!(parse_command(&mut buf, &limits), Ok(Some(args(&["PING"]))));
        assert!(buf.is_empty());
    }

    #[test]
    fn every_prefix_of_a_command_needs_more_bytes() {
        let inputs: [&[u8]; 2] = [b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n", b"SET k \"v v\"\r\n"];
        for full in inputs {
            for cut in 0..full.len() {
                let mut buf = BytesMut::from(&full[..cut]);
                assert_eq!(parse_command(&mut buf, &RespLimits::default()), Ok(None), "cut {cut} of {}", full.escape_ascii());
                assert_eq!(buf.len(), cut, "nothing consumed");
            }
            assert!(parse(full).unwrap().is_some());
        }
    }

    #[test]
    fn the_stateful_parser_resumes_where_it_stopped() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n";
        let mut parser = CommandParser::new(RespLimits::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in full.iter() {
            buf.put_u8(b);
            while let Some(cmd) = parser.parse(&mut buf).unwrap() {
                got.push(cmd);
            }
        }
        assert_eq!(got, vec![args(&["SET", "k", "hello"]), args(&["PING"])]);
        assert!(buf.is_empty());
    }

    #[test]
    fn every_limit_is_enforced_exactly() {
        let limits = RespLimits { max_bulk_len: 5, max_array_len: 2, max_inline_len: 10 };
        let check = |input: &[u8]| parse_command(&mut BytesMut::from(input), &limits);

        assert_eq!(check(b"*1\r\n$5\r\nhello\r\n"), Ok(Some(args(&["hello"]))));
        assert_eq!(check(b"*1\r\n$6\r\n"), Err(RespError::InvalidBulkLength), "rejected before the data arrives");
        assert_eq!(check(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"), Ok(Some(args(&["a", "b"]))));
        assert_eq!(check(b"*3\r\n"), Err(RespError::InvalidMultibulkLength));
        assert_eq!(check(b"0123456789\r\n"), Ok(Some(args(&["0123456789"]))));
        assert_eq!(check(b"0123456789a\r\n"), Err(RespError::InlineTooLong));
        assert_eq!(check(b"0123456789a"), Err(RespError::InlineTooLong), "no newline within the limit");
        assert_eq!(check(b"0123456789"), Ok(None));
        assert_eq!(check(b"0123456789\r"), Ok(None));

        let long_count = format!("*{}", "1".repeat(40));
        assert_eq!(check(long_count.as_bytes()), Err(RespError::MultibulkCountTooLong));
        let long_bulk = format!("*1\r\n${}", "1".repeat(40));
        assert_eq!(check(long_bulk.as_bytes()), Err(RespError::BulkCountTooLong));
    }

    #[test]
    fn malformed_input_is_a_protocol_error() {
        let table: &[(&[u8], RespError)] = &[
            (b"*1\r\n+PING\r\n", RespError::ExpectedBulk { got: b'+' }),
            (b"*1\r\n:1\r\n", RespError::ExpectedBulk { got: b':' }),
            (b"*-2\r\n", RespError::InvalidMultibulkLength),
            (b"*x\r\n", RespError::InvalidMultibulkLength),
            (b"*01\r\n", RespError::InvalidMultibulkLength),
            (b"*+1\r\n", RespError::InvalidMultibulkLength),
            (b"*\r\n", RespError::InvalidMultibulkLength),
            (b"*99999999999999999999\r\n", RespError::InvalidMultibulkLength),
            (b"*1\r\n$-1\r\n", RespError::InvalidBulkLength),
            (b"*1\r\n$-2\r\n", RespError::InvalidBulkLength),
            (b"*1\r\n$1x\r\n", RespError::InvalidBulkLength),
            (b"*1\n$4\r\nPING\r\n", RespError::ExpectedCrlf),
            (b"*1\r\n$4\nPING\r\n", RespError::ExpectedCrlf),
            (b"*1\r\n$4\r\nPINGxx", RespError::ExpectedCrlf),
            (b"*1\r\n$4\r\nPING\n\n", RespError::ExpectedCrlf),
        ];
        for (input, want) in table {
            assert_eq!(parse(input).as_ref(), Err(want), "{}", input.escape_ascii());
        }
    }

    #[test]
    fn errors_read_like_redis_server() {
        assert_eq!(RespError::InvalidBulkLength.to_string(), "ERR Protocol error: invalid bulk length");
        assert_eq!(RespError::InvalidMultibulkLength.to_string(), "ERR Protocol error: invalid multibulk length");
        assert_eq!(RespError::ExpectedBulk { got: b'+' }.to_string(), "ERR Protocol error: expected '$', got '+'");
        assert_eq!(RespError::ExpectedBulk { got: b'\r' }.to_string(), "ERR Protocol error: expected '$', got '\\r'");
        assert_eq!(RespError::InlineTooLong.to_string(), "ERR Protocol error: too big inline request");
        assert_eq!(RespError::UnbalancedQuotes.to_string(), "ERR Protocol error: unbalanced quotes in request");
        assert_eq!(&encoded(&RespError::InvalidBulkLength.to_reply())[..], b"-ERR Protocol error: invalid bulk length\r\n");
    }

    #[test]
    fn parses_integers_like_string2ll() {
        let table: &[(&[u8], Option<i64>)] = &[
            (b"0", Some(0)),
            (b"7", Some(7)),
            (b"-1", Some(-1)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"-0", None),
            (b"00", None),
            (b"", None),
            (b"-", None),
            (b" 1", None),
            (b"1 ", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_i64(s), *want, "{}", s.escape_ascii());
        }
    }

    #[test]
    fn encoder_matches_the_spec_byte_for_byte() {
        let table: &[(RespValue, &[u8])] = &[
            (RespValue::ok(), b"+OK\r\n"),
            (RespValue::SimpleString(String::new()), b"+\r\n"),
            (RespValue::Error("ERR unknown command 'FOO'".into()), b"-ERR unknown command 'FOO'\r\n"),
            (RespValue::Error("ERR two\r\nlines".into()), b"-ERR two  lines\r\n"),
            (RespValue::Integer(0), b":0\r\n"),
            (RespValue::Integer(-3), b":-3\r\n"),
            (RespValue::Integer(i64::MAX), b":9223372036854775807\r\n"),
            (RespValue::bulk("foobar"), b"$6\r\nfoobar\r\n"),
            (RespValue::bulk(""), b"$0\r\n\r\n"),
            (RespValue::bulk(&b"a\r\nb"[..]), b"$4\r\na\r\nb\r\n"),
            (RespValue::BulkString(None), b"$-1\r\n"),
            (RespValue::Array(Some(vec![])), b"*0\r\n"),
            (RespValue::Array(None), b"*-1\r\n"),
            (
                RespValue::Array(Some(vec![
                    RespValue::Integer(1),
                    RespValue::bulk("x"),
                    RespValue::Array(Some(vec![RespValue::BulkString(None)])),
                ])),
                b"*3\r\n:1\r\n$1\r\nx\r\n*1\r\n$-1\r\n",
            ),
        ];
        for (value, want) in table {
            assert_eq!(&encoded(value)[..], *want, "{value:?}");
        }
    }

    fn command_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6)
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(soup in proptest::collection::vec(any::<u8>(), 0..256), star in any::<bool>()) {
            let mut input = soup;
            if star {
                input.insert(0, b'*');
            }
            let limits = RespLimits { max_bulk_len: 64, max_array_len: 8, max_inline_len: 64 };
            let mut buf = BytesMut::from(&input[..]);
            for _ in 0..=input.len() {
                match parse_command(&mut buf, &limits) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn encoded_commands_parse_back_split_anywhere(
            commands in proptest::collection::vec(command_strategy(), 1..5),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut stream = BytesMut::new();
            for c in &commands {
                RespValue::Array(Some(c.iter().map(|a| RespValue::bulk(a.clone())).collect())).encode(&mut stream);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.push(stream.len());
            points.sort_unstable();

            let want: Vec<Vec<Bytes>> = commands.iter().map(|c| c.iter().map(|a| Bytes::from(a.clone())).collect()).collect();
            let limits = RespLimits::default();
            let (mut stateless, mut stateful) = (BytesMut::new(), BytesMut::new());
            let mut parser = CommandParser::new(limits);
            let (mut got_stateless, mut got_stateful) = (Vec::new(), Vec::new());
            let mut fed = 0;
            for p in points {
                stateless.extend_from_slice(&stream[fed..p]);
                stateful.extend_from_slice(&stream[fed..p]);
                fed = p;
                while let Some(cmd) = parse_command(&mut stateless, &limits).unwrap() {
                    got_stateless.push(cmd);
                }
                while let Some(cmd) = parser.parse(&mut stateful).unwrap() {
                    got_stateful.push(cmd);
                }
            }
            prop_assert_eq!(&got_stateless, &want);
            prop_assert_eq!(&got_stateful, &want);
        }
    }
}
