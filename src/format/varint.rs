//! Zig-zag variable-length integers, as Kafka's record format v2 uses them (protobuf's encoding).

/// The longest encoding of a 64-bit value.
pub const MAX_VARLONG_LEN: usize = 10;

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// How many bytes `put_varlong(v)` writes.
#[inline]
pub fn varlong_len(v: i64) -> usize {
    let z = zigzag(v);
    // 1 byte per 7 significant bits, at least one byte.
    let bits = 64 - (z | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the zig-zag varint encoding of `v`.
#[inline]
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = zigzag(v);
    if z < 0x80 {
        out.push(z as u8);
        return;
    }
    let mut buf = [0u8; MAX_VARLONG_LEN];
    let mut n = 0;
    while z >= 0x80 {
        buf[n] = (z as u8) | 0x80;
        z >>= 7;
        n += 1;
    }
    buf[n] = z as u8;
    out.extend_from_slice(&buf[..=n]);
}

/// Decodes a zig-zag varint from the front of `bytes`: the value and the bytes it took.
/// `None` when the bytes end first or the encoding is longer than ten bytes.
#[inline]
pub fn get_varlong(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut z: u64 = 0;
    for (i, &b) in bytes.iter().take(MAX_VARLONG_LEN).enumerate() {
        z |= u64::from(b & 0x7f) << (7 * i as u32);
        if b < 0x80 {
            return Some((unzigzag(z), i + 1));
        }
    }
    None
}

/// Decodes a varint that must fit in 32 bits (Kafka's `varint`, as opposed to `varlong`).
#[inline]
pub fn get_varint(bytes: &[u8]) -> Option<(i32, usize)> {
    let (v, n) = get_varlong(bytes)?;
    let v = i32::try_from(v).ok()?;
    Some((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edge_values() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "length of {v}");
            assert_eq!(get_varlong(&out), Some((v, out.len())), "value {v}");
        }
    }

    #[test]
    fn matches_kafka_test_vectors() {
        // Zig-zag: 0 -> 00, -1 -> 01, 1 -> 02, -64 -> 7f, 64 -> 80 01, 300 -> d8 04.
        for (v, hex) in [(0i64, &[0x00u8][..]), (-1, &[0x01]), (1, &[0x02]), (-64, &[0x7f]), (64, &[0x80, 0x01]), (300, &[0xd8, 0x04])] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out, hex, "encoding of {v}");
        }
    }

    #[test]
    fn rejects_truncated_and_overlong_input() {
        assert_eq!(get_varlong(&[]), None);
        assert_eq!(get_varlong(&[0x80]), None);
        assert_eq!(get_varlong(&[0xff; 11]), None);
        assert_eq!(get_varint(&[0x80, 0x80, 0x80, 0x80, 0x7f]), None, "beyond 32 bits");
    }
}
