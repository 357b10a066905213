//! The one bincode configuration every store record is written with, and decoding that turns
//! any malformed record into a [`StorageError`] instead of a panic.

use crate::storage::StorageError;
use bincode::{Decode, Encode};

/// The largest record the store will decode. Values are limited to 10 MiB by the API and an
/// event holds at most two of them; the bound stops a corrupt length prefix from making the
/// decoder allocate gigabytes. It does not change the encoding.
const DECODE_LIMIT: usize = 64 << 20;

/// The shared configuration: bincode's standard encoding (varints, little endian).
pub const BINCODE: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> = bincode::config::standard().with_limit::<DECODE_LIMIT>();

/// Encodes a record. `what` names it in an error and is formatted only then (callers pass
/// `format_args!`: a node's path formatted for every record was measurable on the apply thread).
pub fn encode<T: Encode>(what: impl std::fmt::Display, value: &T) -> Result<Vec<u8>, StorageError> {
    bincode::encode_to_vec(value, BINCODE)
        .map_err(|e| StorageError::corrupt(format!("encode {what}"), e.to_string()))
}

/// Decodes a record that must fill `bytes` exactly (`what` as for [`encode`]).
pub fn decode<T: Decode<()>>(
    what: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StorageError> {
    let op = || format!("decode {what}");
    let (value, used) = bincode::decode_from_slice(bytes, BINCODE)
        .map_err(|e| StorageError::corrupt(op(), e.to_string()))?;
    if used != bytes.len() {
        return Err(StorageError::corrupt(
            op(),
            format!("{} trailing bytes", bytes.len() - used),
        ));
    }
    Ok(value)
}

/// Decodes a big-endian `u64` (index keys and the index counter).
pub fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64, StorageError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        StorageError::corrupt(
            format!("decode {what}"),
            format!("{} bytes, expected 8", bytes.len()),
        )
    })?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_is_corrupt_not_panic() {
        let huge_len = [0xFCu8, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(decode::<String>("s", &huge_len).is_err());
        assert!(decode::<String>("s", &[]).is_err());
        let mut ok = encode("s", &"x".to_string()).unwrap();
        ok.push(0);
        assert!(decode::<String>("s", &ok).is_err());
        assert!(decode_u64("i", &[1, 2]).is_err());
        assert_eq!(decode_u64("i", &7u64.to_be_bytes()).unwrap(), 7);
    }
}
