//! The peer wire format's framing, pure: `length (u32 BE) | version (u8) | CRC-32C of the
//! payload (u32 BE) | payload`. Decoding is bounded: a length above the limit, a wrong
//! version or a bad checksum is an error, never an allocation of what a hostile peer asked.

use crate::util::checksum::crc32c;
use std::fmt;

/// Version byte of the current frame format.
pub const FRAME_VERSION: u8 = 1;
/// Bytes before the payload: length, version, checksum.
pub const HEADER_BYTES: usize = 9;
/// The largest payload pikv sends or accepts (a snapshot chunk or a batch of entries).
pub const PAYLOAD_BYTES_MAX: usize = 16 << 20;

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The declared payload is larger than the limit.
    TooLarge(u64),
    /// The version byte is not ours.
    Version(u8),
    /// The payload does not match its checksum.
    Checksum,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(
                f,
                "frame of {n} bytes exceeds the {PAYLOAD_BYTES_MAX}-byte limit"
            ),
            FrameError::Version(v) => write!(f, "frame version {v}, expected {FRAME_VERSION}"),
            FrameError::Checksum => write!(f, "frame checksum mismatch"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Frames `payload`; `None` when it is over the limit (the caller splits its messages).
pub fn encode(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > PAYLOAD_BYTES_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.push(FRAME_VERSION);
    out.extend_from_slice(&crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// Takes one frame off the front of `buf`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((payload, used)))` for a whole frame.
pub fn decode(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > PAYLOAD_BYTES_MAX {
        return Err(FrameError::TooLarge(len as u64));
    }
    if buf[4] != FRAME_VERSION {
        return Err(FrameError::Version(buf[4]));
    }
    let Some(payload) = buf.get(HEADER_BYTES..HEADER_BYTES + len) else {
        return Ok(None);
    };
    let want = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
    if crc32c(payload) != want {
        return Err(FrameError::Checksum);
    }
    Ok(Some((payload, HEADER_BYTES + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut stream = encode(b"hello").unwrap();
        stream.extend(encode(b"").unwrap());
        for cut in 0..HEADER_BYTES + 5 {
            assert_eq!(decode(&stream[..cut]), Ok(None), "cut at {cut}");
        }
        let (p, used) = decode(&stream).unwrap().unwrap();
        assert_eq!(p, b"hello");
        assert_eq!(decode(&stream[used..]).unwrap().unwrap().0, b"");
    }

    #[test]
    fn hostile_bytes_are_errors_not_allocations() {
        let mut big = vec![0xFF, 0xFF, 0xFF, 0xFF, FRAME_VERSION, 0, 0, 0, 0];
        assert_eq!(decode(&big), Err(FrameError::TooLarge(u32::MAX as u64)));
        big[0..4].copy_from_slice(&3u32.to_be_bytes());
        big[4] = 9;
        assert_eq!(decode(&big), Err(FrameError::Version(9)));
        let mut f = encode(b"abc").unwrap();
        f[HEADER_BYTES] ^= 1;
        assert_eq!(decode(&f), Err(FrameError::Checksum));
        // Random bytes never panic.
        let mut seed = 1u64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..(seed % 40) as usize)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
