//! Parsing RESP2 *replies* (the server side, [`crate::wire::resp`], parses commands): used to
//! relay an administrative command to the leader, and by the `raftkv` client.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::RespValue;

/// Most nested arrays in a reply.
const MAX_DEPTH: usize = 8;
/// Largest bulk string in a reply.
const MAX_BULK: usize = 64 << 20;
/// Most elements in a reply array.
const MAX_ARRAY: usize = 1 << 20;

fn line(buf: &[u8], start: usize) -> Option<(usize, usize)> {
    let end = buf[start..].windows(2).position(|w| w == b"\r\n")? + start;
    Some((end, end + 2))
}

fn int(bytes: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad integer {:?}", String::from_utf8_lossy(bytes)))
}

/// Parses one reply starting at `pos`; returns it and the position after it, or None if more
/// bytes are needed.
fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(RespValue, usize)>, String> {
    if depth > MAX_DEPTH {
        return Err("reply nested too deep".into());
    }
    let Some(&kind) = buf.get(pos) else { return Ok(None) };
    let Some((end, next)) = line(buf, pos + 1) else { return Ok(None) };
    let text = &buf[pos + 1..end];
    match kind {
        b'+' => Ok(Some((RespValue::SimpleString(String::from_utf8_lossy(text).into_owned()), next))),
        b'-' => Ok(Some((RespValue::Error(String::from_utf8_lossy(text).into_owned()), next))),
        b':' => Ok(Some((RespValue::Integer(int(text)?), next))),
        b'$' => {
            let n = int(text)?;
            if n == -1 {
                return Ok(Some((RespValue::BulkString(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| "negative bulk length")?;
            if n > MAX_BULK {
                return Err(format!("bulk string of {n} bytes is too large"));
            }
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err("bulk string not followed by CRLF".into());
            }
            Ok(Some((RespValue::BulkString(Some(bytes::Bytes::copy_from_slice(&buf[next..next + n]))), next + n + 2)))
        }
        b'*' => {
            let n = int(text)?;
            if n == -1 {
                return Ok(Some((RespValue::Array(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| "negative array length")?;
            if n > MAX_ARRAY {
                return Err(format!("array of {n} elements is too large"));
            }
            let mut items = Vec::with_capacity(n.min(1024));
            let mut at = next;
            for _ in 0..n {
                match parse_at(buf, at, depth + 1)? {
                    Some((v, after)) => {
                        items.push(v);
                        at = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((RespValue::Array(Some(items)), at)))
        }
        other => Err(format!("unexpected reply type byte {other:#04x}")),
    }
}

/// Takes one complete reply off the front of `buf`, if there is one.
pub fn parse_reply(buf: &mut BytesMut) -> Result<Option<RespValue>, String> {
    match parse_at(buf, 0, 0)? {
        Some((value, used)) => {
            buf.advance(used);
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

/// Encodes a command (an array of bulk strings).
pub fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    RespValue::Array(Some(args.iter().map(|a| RespValue::BulkString(Some(bytes::Bytes::copy_from_slice(a)))).collect())).encode(out);
}

/// Sends one command on `stream` and reads one reply; bytes after it stay in `buf`.
pub async fn roundtrip(stream: &mut TcpStream, buf: &mut BytesMut, args: &[&[u8]]) -> Result<RespValue, String> {
    let mut out = BytesMut::new();
    encode_command(args, &mut out);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    loop {
        if let Some(v) = parse_reply(buf)? {
            return Ok(v);
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
    }
}

/// Connects to `addr`, sends one command and returns its reply.
pub async fn request(addr: &str, args: &[&[u8]]) -> Result<RespValue, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    roundtrip(&mut stream, &mut BytesMut::with_capacity(4096), args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_through_the_encoder() {
        let values = [
            RespValue::SimpleString("OK".into()),
            RespValue::Error("ERR nope".into()),
            RespValue::Integer(-42),
            RespValue::BulkString(Some(bytes::Bytes::from_static(b"a\r\nb"))),
            RespValue::BulkString(None),
            RespValue::Array(Some(vec![RespValue::Integer(1), RespValue::BulkString(None), RespValue::Array(Some(vec![]))])),
            RespValue::Array(None),
        ];
        for v in values {
            let mut buf = BytesMut::new();
            v.encode(&mut buf);
            let full = buf.clone();
            for cut in 0..full.len() {
                let mut partial = BytesMut::from(&full[..cut]);
                assert_eq!(parse_reply(&mut partial), Ok(None), "{v:?} cut at {cut}");
            }
            assert_eq!(parse_reply(&mut buf).unwrap(), Some(v));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [&b"?x\r\n"[..], b":abc\r\n", b"$-5\r\n", b"$2\r\nabcd\r\n", b"*-3\r\n"] {
            assert!(parse_reply(&mut BytesMut::from(bad)).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
