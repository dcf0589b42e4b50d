//! The data directory's small metadata files: the topic catalog, the recovery-point checkpoint and
//! each partition's `partition.metadata`. Pure encoding and decoding; docs/FORMAT.md has the layouts.

/// Magic at the start of `catalog`.
pub const CATALOG_MAGIC: [u8; 8] = *b"RUNNELCT";
/// The catalog version this build writes.
pub const CATALOG_VERSION: u32 = 1;

/// A topic as the catalog records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    /// Never reused, so a partition directory left behind by a deleted topic is never mistaken for
    /// one of a new topic with the same name.
    pub id: u64,
    /// The topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Configs set at creation, by Kafka name.
    pub config: Vec<(String, String)>,
}

/// The whole catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The id the next topic gets.
    pub next_topic_id: u64,
    /// Topics, in creation order.
    pub topics: Vec<TopicMeta>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes the catalog file.
pub fn encode_catalog(c: &Catalog) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&c.next_topic_id.to_le_bytes());
    body.extend_from_slice(&(c.topics.len() as u32).to_le_bytes());
    for t in &c.topics {
        body.extend_from_slice(&t.id.to_le_bytes());
        body.extend_from_slice(&t.partitions.to_le_bytes());
        put_str(&mut body, &t.name);
        body.extend_from_slice(&(t.config.len() as u16).to_le_bytes());
        for (k, v) in &t.config {
            put_str(&mut body, k);
            put_str(&mut body, v);
        }
    }
    let mut out = Vec::with_capacity(20 + body.len());
    out.extend_from_slice(&CATALOG_MAGIC);
    out.extend_from_slice(&CATALOG_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A cursor over little-endian fields that never reads past its bytes.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b }
    }
    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.b
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.b.len() {
            return Err("ends early".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(crate) fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        let mut x = [0u8; 8];
        x.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(x))
    }
    pub(crate) fn string(&mut self) -> Result<String, String> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
}

/// Decodes the catalog file. Names and configs are checked by the caller.
pub fn decode_catalog(bytes: &[u8]) -> Result<Catalog, String> {
    let mut r = Reader { b: bytes };
    if r.take(8)? != CATALOG_MAGIC {
        return Err("not a runnel catalog (wrong magic)".into());
    }
    let version = r.u32()?;
    if version != CATALOG_VERSION {
        return Err(format!("catalog version {version} is not supported (this build reads {CATALOG_VERSION})"));
    }
    let crc = r.u32()?;
    let len = r.u32()? as usize;
    let body = r.take(len)?;
    if !r.b.is_empty() {
        return Err("bytes after the catalog".into());
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader { b: body };
    let next_topic_id = r.u64()?;
    let count = r.u32()?;
    let mut topics = Vec::new();
    for _ in 0..count {
        let id = r.u64()?;
        let partitions = r.u32()?;
        let name = r.string()?;
        let n = r.u16()?;
        let mut config = Vec::new();
        for _ in 0..n {
            config.push((r.string()?, r.string()?));
        }
        if id >= next_topic_id {
            return Err(format!("topic id {id} is not below the next id {next_topic_id}"));
        }
        topics.push(TopicMeta { id, name, partitions, config });
    }
    if !r.b.is_empty() {
        return Err("bytes after the last topic".into());
    }
    Ok(Catalog { next_topic_id, topics })
}

/// Encodes the recovery-point checkpoint in Kafka's text format: a version line (0), a count line,
/// then `topic partition offset` per line.
pub fn encode_checkpoint(entries: &[(String, u32, u64)]) -> Vec<u8> {
    let mut s = format!("0\n{}\n", entries.len());
    for (t, p, o) in entries {
        s.push_str(&format!("{t} {p} {o}\n"));
    }
    s.into_bytes()
}

/// Decodes a checkpoint written by [`encode_checkpoint`].
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Vec<(String, u32, u64)>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err("unknown checkpoint version".into());
    }
    let count: usize = lines.next().and_then(|l| l.parse().ok()).ok_or("bad entry count")?;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for line in lines.by_ref().take(count) {
        let mut f = line.split(' ');
        let (Some(t), Some(p), Some(o), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(format!("bad line {line:?}"));
        };
        out.push((t.to_string(), p.parse().map_err(|_| "bad partition")?, o.parse().map_err(|_| "bad offset")?));
    }
    if out.len() != count || lines.next().is_some() {
        return Err("entry count does not match".into());
    }
    Ok(out)
}

/// Encodes `partition.metadata`, which ties a partition directory to its topic's id.
pub fn encode_partition_metadata(topic_id: u64) -> Vec<u8> {
    format!("version: 0\ntopic_id: {topic_id}\n").into_bytes()
}

/// Decodes `partition.metadata`.
pub fn decode_partition_metadata(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "version: 0" {
        return None;
    }
    lines.next()?.strip_prefix("topic_id: ")?.parse().ok()
}

/// A committed offset, as Kafka's `OffsetAndMetadata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The next offset the group will consume.
    pub offset: u64,
    /// Free-form text stored with the commit.
    pub metadata: String,
    /// When it was committed (milliseconds since the Unix epoch).
    pub commit_timestamp: i64,
}

const KEY_VERSION: u16 = 1;
const VALUE_VERSION: u16 = 1;

/// Encodes the key of a `__consumer_offsets` record.
/// Key: version u16 | group (u16 length + bytes) | topic (u16 length + bytes) | partition u32.
pub fn encode_offset_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + group.len() + topic.len());
    k.extend_from_slice(&KEY_VERSION.to_le_bytes());
    put_str(&mut k, group);
    put_str(&mut k, topic);
    k.extend_from_slice(&partition.to_le_bytes());
    k
}

/// Encodes the value of a `__consumer_offsets` record.
/// Value: version u16 | offset u64 | commit timestamp i64 | metadata (u32 length + bytes).
pub fn encode_offset_value(v: &OffsetAndMetadata) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + v.metadata.len());
    out.extend_from_slice(&VALUE_VERSION.to_le_bytes());
    out.extend_from_slice(&v.offset.to_le_bytes());
    out.extend_from_slice(&v.commit_timestamp.to_le_bytes());
    out.extend_from_slice(&(v.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(v.metadata.as_bytes());
    out
}

/// Decodes a `__consumer_offsets` key: group, topic, partition.
pub fn decode_offset_key(b: &[u8]) -> Option<(String, String, u32)> {
    let mut r = Reader { b };
    if r.u16().ok()? != KEY_VERSION {
        return None;
    }
    let (group, topic, p) = (r.string().ok()?, r.string().ok()?, r.u32().ok()?);
    r.b.is_empty().then_some((group, topic, p))
}

/// Decodes a `__consumer_offsets` value.
pub fn decode_offset_value(b: &[u8]) -> Option<OffsetAndMetadata> {
    let mut r = Reader { b };
    if r.u16().ok()? != VALUE_VERSION {
        return None;
    }
    let (offset, commit_timestamp) = (r.u64().ok()?, r.u64().ok()? as i64);
    let n = r.u32().ok()? as usize;
    let metadata = String::from_utf8(r.take(n).ok()?.to_vec()).ok()?;
    r.b.is_empty().then_some(OffsetAndMetadata { offset, metadata, commit_timestamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_round_trips_and_detects_damage() {
        let c = Catalog {
            next_topic_id: 3,
            topics: vec![TopicMeta { id: 2, name: "orders".into(), partitions: 4, config: vec![("retention.ms".into(), "1000".into())] }],
        };
        let bytes = encode_catalog(&c);
        assert_eq!(decode_catalog(&bytes), Ok(c));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode_catalog(&b).is_err(), "flip at {i}");
        }
        for len in 0..bytes.len() {
            assert!(decode_catalog(&bytes[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn checkpoint_round_trips() {
        let e = vec![("a".to_string(), 0, 5), ("b-1".to_string(), 3, 0)];
        let bytes = encode_checkpoint(&e);
        assert_eq!(std::str::from_utf8(&bytes).ok(), Some("0\n2\na 0 5\nb-1 3 0\n"));
        assert_eq!(decode_checkpoint(&bytes), Ok(e));
        assert!(decode_checkpoint(b"0\n3\na 0 5\n").is_err());
    }

    #[test]
    fn partition_metadata_round_trips() {
        assert_eq!(decode_partition_metadata(&encode_partition_metadata(42)), Some(42));
        assert_eq!(decode_partition_metadata(b"version: 1\ntopic_id: 4\n"), None);
    }

    #[test]
    fn offset_key_and_value_round_trip() {
        let k = encode_offset_key("g", "orders", 3);
        assert_eq!(decode_offset_key(&k), Some(("g".into(), "orders".into(), 3)));
        let v = OffsetAndMetadata { offset: 42, metadata: "m".into(), commit_timestamp: 7 };
        assert_eq!(decode_offset_value(&encode_offset_value(&v)), Some(v));
        assert_eq!(decode_offset_key(&k[..k.len() - 1]), None);
    }
}
