//! The replicated application state of a raftkv server: the key-value store and the address book
//! of the members, plus the formats of log entries and snapshots.
//!
//! Every normal log entry is an envelope:
//!
//! ```text
//! [u8 version = 1][u8 kind]
//!   kind 1 (client request): [u64 LE origin node][u64 LE request id][raft-kv request bytes]
//!   kind 2 (address announcement): [u64 LE node id][u16 LE len][peer addr][u16 LE len][client addr]
//! ```
//!
//! The origin lets the server where a request arrived answer its client when it applies the
//! entry, whichever server proposed it to the leader. Membership entries carry an address
//! announcement as their context, so the leader can reach a new member before it is committed.
//! A snapshot is `[u8 version = 1][u32 LE address book length][address book][raft-kv snapshot]`.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::NodeId;
use raft_kv::{KvStore, Limits};

/// Where a member can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddrs {
    /// host:port of its peer (Raft) listener.
    pub peer: String,
    /// host:port of its client (RESP) listener; empty until it announced it.
    pub client: String,
}

/// A decoded log entry payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Envelope {
    Request { origin: NodeId, request_id: u64, request: Bytes },
    Announce { id: NodeId, addrs: MemberAddrs },
}

const VERSION: u8 = 1;
const KIND_REQUEST: u8 = 1;
const KIND_ANNOUNCE: u8 = 2;

fn put_str(buf: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    buf.put_u16_le(bytes.len() as u16);
    buf.put_slice(bytes);
}

/// A cursor that never panics: every read checks the remaining length.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.data.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "address is not UTF-8".to_string())
    }
}

impl Envelope {
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u8(VERSION);
        match self {
            Envelope::Request { origin, request_id, request } => {
                buf.put_u8(KIND_REQUEST);
                buf.put_u64_le(origin.0);
                buf.put_u64_le(*request_id);
                buf.put_slice(request);
            }
            Envelope::Announce { id, addrs } => {
                buf.put_u8(KIND_ANNOUNCE);
                buf.put_u64_le(id.0);
                put_str(&mut buf, &addrs.peer);
                put_str(&mut buf, &addrs.client);
            }
        }
        buf.freeze()
    }

    pub(crate) fn decode(data: &Bytes) -> Result<Envelope, String> {
        let mut r = Reader { data };
        if r.u8()? != VERSION {
            return Err("unsupported entry version".into());
        }
        match r.u8()? {
            KIND_REQUEST => {
                let origin = NodeId(r.u64()?);
                let request_id = r.u64()?;
                let offset = data.len() - r.data.len();
                Ok(Envelope::Request { origin, request_id, request: data.slice(offset..) })
            }
            KIND_ANNOUNCE => {
                let id = NodeId(r.u64()?);
                let peer = r.string()?;
                let client = r.string()?;
                if !r.data.is_empty() {
                    return Err("trailing bytes".into());
                }
                Ok(Envelope::Announce { id, addrs: MemberAddrs { peer, client } })
            }
            k => Err(format!("unknown entry kind {k}")),
        }
    }
}

/// The application state replicated by Raft. Cloning it is cheap (the store's keys and values
/// are reference-counted): a snapshot is encoded from a clone on another thread.
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub(crate) kv: KvStore,
    pub(crate) members: BTreeMap<NodeId, MemberAddrs>,
}

pub(crate) fn kv_limits() -> Limits {
    Limits::default()
}

impl App {
    pub(crate) fn new(members: BTreeMap<NodeId, MemberAddrs>) -> App {
        App { kv: KvStore::new(kv_limits()), members }
    }

    /// Records a member's addresses (from an announcement or a membership entry's context).
    pub(crate) fn learn(&mut self, id: NodeId, addrs: MemberAddrs) {
        let entry = self.members.entry(id).or_insert_with(|| addrs.clone());
        if !addrs.peer.is_empty() {
            entry.peer = addrs.peer;
        }
        if !addrs.client.is_empty() {
            entry.client = addrs.client;
        }
    }

    pub(crate) fn snapshot(&self) -> Bytes {
        let mut book = BytesMut::new();
        for (id, a) in &self.members {
            book.put_u64_le(id.0);
            put_str(&mut book, &a.peer);
            put_str(&mut book, &a.client);
        }
        let kv = self.kv.snapshot();
        let mut buf = BytesMut::with_capacity(5 + book.len() + kv.len());
        buf.put_u8(VERSION);
        buf.put_u32_le(book.len() as u32);
        buf.put_slice(&book);
        buf.put_slice(&kv);
        buf.freeze()
    }

    pub(crate) fn restore(data: &[u8]) -> Result<App, String> {
        let mut r = Reader { data };
        if r.u8()? != VERSION {
            return Err("unsupported snapshot version".into());
        }
        let book_len = r.u32()? as usize;
        let mut book = Reader { data: r.take(book_len)? };
        let mut members = BTreeMap::new();
        while !book.data.is_empty() {
            let id = NodeId(book.u64()?);
            let peer = book.string()?;
            let client = book.string()?;
            members.insert(id, MemberAddrs { peer, client });
        }
        let kv = KvStore::restore(r.data, kv_limits()).map_err(|e| format!("key-value snapshot: {e}"))?;
        Ok(App { kv, members })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_garbage_is_refused() {
        let req = Envelope::Request { origin: NodeId(3), request_id: 99, request: Bytes::from_static(b"payload") };
        assert_eq!(Envelope::decode(&req.encode()).unwrap(), req);
        let ann = Envelope::Announce { id: NodeId(2), addrs: MemberAddrs { peer: "10.0.0.2:7002".into(), client: "10.0.0.2:6002".into() } };
        let bytes = ann.encode();
        assert_eq!(Envelope::decode(&bytes).unwrap(), ann);
        for cut in 0..bytes.len() {
            assert!(Envelope::decode(&bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(Envelope::decode(&Bytes::from_static(&[1, 9])).is_err());
        assert!(Envelope::decode(&Bytes::from_static(&[7, 1])).is_err());
    }

    #[test]
    fn snapshots_carry_the_store_and_the_address_book() {
        let mut app = App::new(BTreeMap::new());
        app.learn(NodeId(1), MemberAddrs { peer: "a:1".into(), client: String::new() });
        app.learn(NodeId(1), MemberAddrs { peer: String::new(), client: "a:2".into() });
        let put = raft_kv::encode_request(&raft_kv::Request {
            session: None,
            time_ms: 1,
            command: raft_kv::Command::Put { key: b"k".to_vec(), value: b"v".to_vec() },
        });
        app.kv.apply(1, &put);
        let restored = App::restore(&app.snapshot()).unwrap();
        assert_eq!(restored.members, app.members);
        assert_eq!(restored.members[&NodeId(1)], MemberAddrs { peer: "a:1".into(), client: "a:2".into() });
        assert_eq!(restored.kv.get(b"k"), Some(&b"v"[..]));
        let snap = app.snapshot();
        for cut in 0..5 {
            assert!(App::restore(&snap[..cut]).is_err());
        }
    }
}
