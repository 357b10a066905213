//! Messages to frames and back: a frame's payload is one bincode `Vec<Message>`. The batch
//! builder splits what a peer has queued into frames that fit both the frame limit and the
//! receiver's decode limit; [`read_frame`] takes one frame off a connection without ever
//! buffering more than the frame limit. Nothing here knows about sockets or peers.

use super::frame::{self, FrameError, HEADER_BYTES, PAYLOAD_BYTES_MAX};
use crate::raft::{Entry, Message, MessageBody, Payload};
use smol::io::{AsyncRead, AsyncReadExt};
use std::fmt;
use std::io;
use std::ops::Range;

/// What decoding one frame's messages may claim. bincode counts the in-memory size of every
/// value it decodes against the limit and refuses a container whose length alone would go
/// over it, so a hostile length prefix allocates nothing. The batch builder keeps every
/// frame it makes under this, so what one member sends, the other always decodes.
pub const DECODE_BYTES_MAX: usize = PAYLOAD_BYTES_MAX;

/// The bincode configuration of message frames.
pub const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_BYTES_MAX>,
> = bincode::config::standard().with_limit::<DECODE_BYTES_MAX>();

/// Bytes of the payload's length prefix at most (a varint u64).
const LENGTH_PREFIX_BYTES_MAX: usize = 9;
/// Above any message's fixed part, encoded (three varint ids, a variant, four varint fields:
/// at most 68 bytes) or decoded (bincode claims 8 bytes per u64, 4 per variant: at most 60).
const MESSAGE_BYTES_BOUND: usize = std::mem::size_of::<Message>() + 64;
/// The same for an entry's fixed part (at most 32 bytes encoded, 28 claimed).
const ENTRY_BYTES_BOUND: usize = std::mem::size_of::<Entry>() + 64;

/// Where a batch stops taking more messages (one larger message still goes, alone): bigger
/// frames would not make a peer faster, only the memory a stalled peer holds larger (the
/// batch, its encoding and its frame exist at once).
pub const BATCH_BYTES_TARGET: usize = 1 << 20;

/// Kept between frames only up to this capacity, so one large frame (a long append after
/// a partition) does not pin its buffer for the life of the connection.
const BUFFER_KEEP_BYTES: usize = 1 << 20;

/// An upper bound of both the encoded size of `m` and what decoding it claims against
/// [`DECODE_BYTES_MAX`] (counting the slot its container reserves for it).
pub fn bytes_bound(m: &Message) -> usize {
    let entries = match &m.body {
        MessageBody::Append { entries, .. } => entries.iter().fold(0usize, |sum, e| {
            let data = match &e.payload {
                Payload::Empty => 0,
                Payload::Command(data)
                | Payload::Forwarded { command: data, .. }
                | Payload::Membership { context: data, .. } => data.len(),
            };
            sum.saturating_add(ENTRY_BYTES_BOUND).saturating_add(data)
        }),
        // A forwarded command carries its bytes too.
        MessageBody::Propose { command, .. } => command.len(),
        MessageBody::ProposeMembership { context, .. } => context.len(),
        _ => 0,
    };
    MESSAGE_BYTES_BOUND.saturating_add(entries)
}

/// Messages gathered for one frame.
#[derive(Debug)]
pub struct Batch {
    messages: Vec<Message>,
    // Invariant: LENGTH_PREFIX_BYTES_MAX + bound <= DECODE_BYTES_MAX (and PAYLOAD_BYTES_MAX).
    bound: usize,
    // More messages are taken while bound stays within this.
    budget: usize,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::with_budget(BATCH_BYTES_TARGET)
    }
}

/// What [`Batch::push`] did with a message.
#[derive(Debug)]
pub enum Push {
    /// It is in the batch.
    Added,
    /// The batch has no room left for it: send the batch, then start the next with it.
    Full(Message),
    /// It is larger than any frame can carry (the caller drops it).
    TooLarge(Message),
}

impl Batch {
    /// An empty batch that stops at [`BATCH_BYTES_TARGET`].
    pub fn new() -> Batch {
        Batch::default()
    }

    /// An empty batch that takes messages up to `budget` bytes (by [`bytes_bound`]), and
    /// never beyond what one frame can carry and the receiver decode.
    pub fn with_budget(budget: usize) -> Batch {
        Batch {
            messages: Vec::new(),
            bound: 0,
            budget,
        }
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Adds `m` if the frame still has room for it.
    pub fn push(&mut self, m: Message) -> Push {
        let bytes = bytes_bound(&m);
        let room = DECODE_BYTES_MAX.min(PAYLOAD_BYTES_MAX) - LENGTH_PREFIX_BYTES_MAX;
        if bytes > room {
            return Push::TooLarge(m);
        }
        let budget = self.budget.min(room);
        if self.bound + bytes > room || (!self.messages.is_empty() && self.bound + bytes > budget) {
            return Push::Full(m);
        }
        self.bound += bytes;
        self.messages.push(m);
        Push::Added
    }

    /// The framed batch, and the batch emptied; `None` when it was empty.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.messages.is_empty() {
            return None;
        }
        let messages = std::mem::take(&mut self.messages);
        self.bound = 0;
        // Neither can fail for a batch within its bound (the tests check the bound); were it
        // wrong, the batch is lost as a write to a dead peer would be, and Raft resends.
        let payload = match bincode::encode_to_vec(&messages, CONFIG) {
            Ok(p) => p,
            Err(e) => {
                log::error!("cannot encode {} peer messages: {e}", messages.len());
                return None;
            }
        };
        let framed = frame::encode(&payload);
        if framed.is_none() {
            log::error!(
                "a batch of {} peer messages encoded to {} bytes, over the frame limit",
                messages.len(),
                payload.len()
            );
        }
        framed
    }
}

/// The messages of one frame's payload. Any error means the sender is broken or hostile.
pub fn decode_messages(payload: &[u8]) -> Result<Vec<Message>, String> {
    let (messages, used): (Vec<Message>, usize) = bincode::decode_from_slice(payload, CONFIG)
        .map_err(|e| format!("undecodable messages: {e}"))?;
    if used != payload.len() {
        return Err(format!(
            "undecodable messages: {} bytes after them",
            payload.len() - used
        ));
    }
    Ok(messages)
}

/// Why a frame could not be read off a connection.
#[derive(Debug)]
pub enum ReadError {
    /// The socket failed.
    Io(io::Error),
    /// The connection closed inside a frame.
    Truncated,
    /// The frame declares a payload above what this read accepts.
    TooLarge {
        /// The declared payload length.
        len: u64,
        /// The limit of this read.
        max: usize,
    },
    /// The frame is not valid (version, checksum).
    Frame(FrameError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read failed: {e}"),
            ReadError::Truncated => f.write_str("connection closed inside a frame"),
            ReadError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            ReadError::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads one frame into `buf`: `Ok(None)` when the connection closed cleanly between frames,
/// otherwise the payload's range in `buf`. The length is checked against
/// `payload_bytes_max` (at most [`PAYLOAD_BYTES_MAX`]) before anything is allocated, and the
/// version as soon as the header is in, so a stranger is turned away after nine bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    payload_bytes_max: usize,
) -> Result<Option<Range<usize>>, ReadError> {
    if buf.capacity() > BUFFER_KEEP_BYTES {
        *buf = Vec::new();
    }
    buf.clear();
    buf.resize(HEADER_BYTES, 0);
    let mut got = 0;
    while got < HEADER_BYTES {
        let n = reader.read(&mut buf[got..]).await.map_err(ReadError::Io)?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ReadError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let max = payload_bytes_max.min(PAYLOAD_BYTES_MAX);
    if len > max {
        return Err(ReadError::TooLarge {
            len: len as u64,
            max,
        });
    }
    // The header alone: a bad version fails here, an empty payload is already whole.
    if frame::decode(buf).map_err(ReadError::Frame)?.is_none() {
        buf.resize(HEADER_BYTES + len, 0);
        reader
            .read_exact(&mut buf[HEADER_BYTES..])
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ReadError::Truncated,
                _ => ReadError::Io(e),
            })?;
    }
    match frame::decode(buf).map_err(ReadError::Frame)? {
        Some((payload, used)) if used == buf.len() => {
            Ok(Some(HEADER_BYTES..HEADER_BYTES + payload.len()))
        }
        // The buffer holds exactly the declared frame; anything else is a bug in this
        // function, reported as a broken frame rather than a panic on peer input.
        _ => Err(ReadError::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(seq: u64) -> Message {
        Message {
            from: u64::MAX,
            to: u64::MAX - 1,
            term: u64::MAX,
            body: MessageBody::Heartbeat {
                commit: u64::MAX,
                seq,
                clock: u64::MAX,
            },
        }
    }

    fn append(entries: usize, data_bytes: usize) -> Message {
        Message {
            from: u64::MAX,
            to: u64::MAX - 1,
            term: u64::MAX,
            body: MessageBody::Append {
                prev_index: u64::MAX,
                prev_term: u64::MAX,
                entries: (0..entries)
                    .map(|i| Entry {
                        term: u64::MAX,
                        index: u64::MAX - i as u64,
                        payload: if data_bytes == 0 {
                            Payload::Empty
                        } else {
                            Payload::Command(vec![0xAB; data_bytes])
                        },
                    })
                    .collect(),
                commit: u64::MAX,
                clock: u64::MAX,
            },
        }
    }

    fn fill(batch: &mut Batch, make: impl Fn(u64) -> Message) -> Vec<Message> {
        let mut pushed = Vec::new();
        for i in 0.. {
            let m = make(i);
            match batch.push(m.clone()) {
                Push::Added => pushed.push(m),
                Push::Full(_) => break,
                Push::TooLarge(_) => panic!("message {i} too large"),
            }
        }
        pushed
    }

    fn payload_of(framed: &[u8]) -> &[u8] {
        frame::decode(framed).unwrap().unwrap().0
    }

    #[test]
    fn batches_round_trip() {
        let mut batch = Batch::new();
        assert!(batch.finish().is_none());
        let sent = vec![heartbeat(1), append(3, 10), append(0, 0), heartbeat(2)];
        for m in &sent {
            assert!(matches!(batch.push(m.clone()), Push::Added));
        }
        assert_eq!(batch.len(), 4);
        let framed = batch.finish().unwrap();
        assert!(batch.is_empty());
        assert_eq!(decode_messages(payload_of(&framed)).unwrap(), sent);
    }

    // The bound must hold for what bincode claims, not only for the encoded bytes: a full
    // frame of the smallest messages (where the claim is ~7x the encoding) and one of entries
    // must both decode under the limit on the other side.
    #[test]
    fn full_batches_decode_under_the_limit() {
        let mut batch = Batch::with_budget(usize::MAX);
        let sent = fill(&mut batch, heartbeat);
        assert!(sent.len() > 1000);
        let framed = batch.finish().unwrap();
        assert_eq!(decode_messages(payload_of(&framed)).unwrap(), sent);

        let mut batch = Batch::with_budget(usize::MAX);
        let sent = fill(&mut batch, |_| append(50, 0));
        let framed = batch.finish().unwrap();
        assert_eq!(decode_messages(payload_of(&framed)).unwrap(), sent);

        let mut batch = Batch::with_budget(usize::MAX);
        let sent = fill(&mut batch, |_| append(3, 100_000));
        assert!(!sent.is_empty());
        let framed = batch.finish().unwrap();
        assert!(framed.len() <= HEADER_BYTES + PAYLOAD_BYTES_MAX);
        assert_eq!(decode_messages(payload_of(&framed)).unwrap(), sent);
    }

    #[test]
    fn batches_stop_at_their_budget() {
        let mut batch = Batch::new();
        let sent = fill(&mut batch, |_| append(1, 1000));
        let bytes: usize = sent.iter().map(bytes_bound).sum();
        assert!(bytes <= BATCH_BYTES_TARGET && bytes + 2000 > BATCH_BYTES_TARGET);
        // A message bigger than the budget still goes, alone.
        let mut batch = Batch::new();
        assert!(matches!(batch.push(append(1, 2 << 20)), Push::Added));
        assert!(matches!(batch.push(heartbeat(1)), Push::Full(_)));
    }

    #[test]
    fn a_message_over_the_limit_is_refused_alone() {
        let mut batch = Batch::new();
        assert!(matches!(
            batch.push(append(1, PAYLOAD_BYTES_MAX)),
            Push::TooLarge(_)
        ));
        assert!(batch.is_empty());
        // One that just fits goes out alone, and the next waits for the next frame.
        let big = append(1, PAYLOAD_BYTES_MAX - 1024);
        assert!(matches!(batch.push(big.clone()), Push::Added));
        assert!(matches!(batch.push(heartbeat(1)), Push::Full(_)));
        let framed = batch.finish().unwrap();
        assert_eq!(decode_messages(payload_of(&framed)).unwrap(), vec![big]);
    }

    #[test]
    fn hostile_payloads_are_errors() {
        // A Vec<Message> claiming u64::MAX elements, and one claiming a million.
        let mut huge = vec![253u8];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_messages(&huge).is_err());
        let mut million = vec![252u8];
        million.extend_from_slice(&1_000_000u32.to_le_bytes());
        assert!(decode_messages(&million).is_err());
        // An append whose entry list claims u64::MAX entries, and one whose entry data
        // claims 4 GiB: count 1, from 1, to 2, term 3, Append (variant 4), prev 0 0, ...
        let head = [1u8, 1, 2, 3, 4, 0, 0];
        let mut fine = head.to_vec();
        fine.extend_from_slice(&[1, 1, 1, 1, 1, 0xAB, 9, 7]); // one byte of data, commit 9, clock 7
        assert_eq!(decode_messages(&fine).unwrap()[0].body.kind(), "Append");
        let mut entries = head.to_vec();
        entries.push(253);
        entries.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_messages(&entries).is_err());
        let mut data = head.to_vec();
        data.extend_from_slice(&[1, 1, 1, 1, 252]); // one entry: term 1, index 1, Command
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_messages(&data).is_err());
        let payload = {
            let mut b = Batch::new();
            let _ = b.push(append(1, 1));
            b.finish().unwrap().split_off(HEADER_BYTES)
        };
        // Trailing bytes.
        let mut trailing = payload.clone();
        trailing.push(0);
        assert!(decode_messages(&trailing).is_err());
        let mut seed = 3u64;
        for _ in 0..5000 {
            let bytes: Vec<u8> = (0..(seed % 64) as usize)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = decode_messages(&bytes);
        }
    }

    fn read_all(mut bytes: &[u8], max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        smol::block_on(async {
            loop {
                match read_frame(&mut bytes, &mut buf, max).await {
                    Ok(Some(r)) => out.push(Ok(buf[r].to_vec())),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        out
    }

    #[test]
    fn frames_are_read_off_a_stream() {
        let mut stream = frame::encode(b"one").unwrap();
        stream.extend(frame::encode(b"").unwrap());
        stream.extend(frame::encode(b"three").unwrap());
        assert_eq!(
            read_all(&stream, 16),
            vec![Ok(b"one".to_vec()), Ok(vec![]), Ok(b"three".to_vec())]
        );
        assert_eq!(read_all(&[], 16), vec![]);
        // Closed inside a header or a payload.
        assert_eq!(
            read_all(&stream[..4], 16),
            vec![Err("connection closed inside a frame".into())]
        );
        assert_eq!(
            read_all(&stream[..HEADER_BYTES + 1], 16),
            vec![Err("connection closed inside a frame".into())]
        );
    }

    #[test]
    fn hostile_streams_are_refused_before_allocating() {
        // Claims 4 GiB.
        let four_gib = [0xFF, 0xFF, 0xFF, 0xFF, frame::FRAME_VERSION, 0, 0, 0, 0];
        assert_eq!(
            read_all(&four_gib, PAYLOAD_BYTES_MAX),
            vec![Err(format!(
                "frame of {} bytes exceeds the {PAYLOAD_BYTES_MAX}-byte limit",
                u32::MAX
            ))]
        );
        // Over this read's own limit (a handshake).
        let f = frame::encode(&[0; 600]).unwrap();
        assert!(read_all(&f, 512)[0].is_err());
        // Text from a stray HTTP client: "GET " is 1.2 GB.
        assert!(read_all(b"GET / HTTP/1.1\r\n\r\n", 512)[0].is_err());
        // A wrong version is refused from the header alone, without waiting for a payload.
        let v = [0, 0, 0, 5, 9, 0, 0, 0, 0];
        assert_eq!(
            read_all(&v, 16),
            vec![Err("frame version 9, expected 1".into())]
        );
        let mut bad = frame::encode(b"abc").unwrap();
        bad[HEADER_BYTES] ^= 1;
        assert_eq!(
            read_all(&bad, 16),
            vec![Err("frame checksum mismatch".into())]
        );
    }
}
