//! The audit object format: gzip NDJSON, one audit event per line, under
//! `audit/v1/YYYY/MM/DD/HH/<batch-id>[-<part>].ndjson.gz`.
//!
//! Keys are a pure function of the batch id (a UUIDv7, whose time names the hour), so a
//! re-driven batch lands on the same key and S3's create-only put turns a retry into a no-op
//! instead of a second copy of the events.

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde::Deserialize;
use std::io::{Read, Write};
use time::OffsetDateTime;

/// Prefix of every audit object.
pub const KEY_PREFIX: &str = "audit/v1/";
/// Lambda's payload limit for asynchronous (`Event`) invocations: 1 MB.
pub const ASYNC_PAYLOAD_LIMIT: usize = 1_000_000;
/// Bytes of envelope we reserve around the events in a batch payload.
pub const BATCH_ENVELOPE_BYTES: usize = 128;
/// Largest decompressed object we read back (guards against gzip bombs).
pub const MAX_OBJECT_BYTES: u64 = 64 * 1024 * 1024;

/// Errors of the audit format.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuditFormatError {
    /// The batch id is not a UUIDv7.
    #[error("batch id {0:?} is not a UUIDv7")]
    BadBatchId(String),
    /// An object could not be decoded.
    #[error("audit object is not gzip NDJSON: {0}")]
    BadObject(String),
    /// An event lacks a request id.
    #[error("audit event without a request_id")]
    EventWithoutRequestId,
}

/// A new batch id.
pub fn new_batch_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// A batch id whose time is `t` (a re-drive, a test or a benchmark that writes the past).
pub fn batch_id_at(t: OffsetDateTime) -> String {
    let nanos = t.unix_timestamp_nanos();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    );
    uuid::Uuid::new_v7(ts).hyphenated().to_string()
}

/// The creation time encoded in a UUIDv7 batch id.
pub fn batch_time(batch_id: &str) -> Result<OffsetDateTime, AuditFormatError> {
    let bad = || AuditFormatError::BadBatchId(batch_id.to_string());
    let id = uuid::Uuid::parse_str(batch_id).map_err(|_| bad())?;
    if id.get_version_num() != 7 {
        return Err(bad());
    }
    let (secs, nanos) = id.get_timestamp().ok_or_else(bad)?.to_unix();
    OffsetDateTime::from_unix_timestamp(secs as i64)
        .map(|t| t + time::Duration::nanoseconds(nanos.into()))
        .map_err(|_| bad())
}

/// The key of part `part` of a batch (part 0 has no suffix).
pub fn object_key(batch_id: &str, part: u32) -> Result<String, AuditFormatError> {
    let t = batch_time(batch_id)?;
    let suffix = if part == 0 { String::new() } else { format!("-{part}") };
    Ok(format!(
        "{KEY_PREFIX}{:04}/{:02}/{:02}/{:02}/{batch_id}{suffix}.ndjson.gz",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    ))
}

/// Encodes events (each one JSON document without newlines) as gzip NDJSON. The gzip
/// header carries no time or name, so the same events always give the same bytes. Level 1:
/// audit NDJSON is repetitive enough that it still shrinks several times, at a fraction of
/// the CPU of the default level (the profile of the load benchmark showed deflate first).
pub fn encode<'a>(events: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut gz: GzEncoder<Vec<u8>> = GzBuilder::new().mtime(0).write(Vec::new(), Compression::fast());
    for e in events {
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(e.as_bytes());
        let _ = gz.write_all(b"\n");
    }
    gz.finish().unwrap_or_default()
}

/// Decodes gzip NDJSON into its lines.
pub fn decode(object: &[u8]) -> Result<Vec<String>, AuditFormatError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(object)
        .take(MAX_OBJECT_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| AuditFormatError::BadObject(e.to_string()))?;
    Ok(text.lines().filter(|l| !l.is_empty()).map(String::from).collect())
}

#[derive(Deserialize)]
struct EventKey<'a> {
    #[serde(borrow)]
    request_id: std::borrow::Cow<'a, str>,
}

/// The request id of a serialized audit event.
pub fn event_request_id(event: &str) -> Result<String, AuditFormatError> {
    serde_json::from_str::<EventKey<'_>>(event)
        .map(|k| k.request_id.into_owned())
        .map_err(|_| AuditFormatError::EventWithoutRequestId)
}

/// Splits serialized events into groups whose batch payload stays under `max_bytes`
/// and `max_events`, keeping order.
pub fn split_by_size<T: AsRef<str>>(events: Vec<T>, max_bytes: usize, max_events: usize) -> Vec<Vec<T>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut bytes = BATCH_ENVELOPE_BYTES;
    for e in events {
        let len = e.as_ref().len() + 1;
        if !current.is_empty() && (bytes + len > max_bytes || current.len() >= max_events) {
            groups.push(std::mem::take(&mut current));
            bytes = BATCH_ENVELOPE_BYTES;
        }
        bytes += len;
        current.push(e);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// The audit-writer invocation payload for a batch (`{"batch_id":...,"events":[...]}`),
/// built from already-serialized events without re-parsing them.
pub fn batch_payload<T: AsRef<str>>(batch_id: &str, events: &[T]) -> bytes::Bytes {
    let len: usize = events.iter().map(|e| e.as_ref().len() + 1).sum();
    let mut out = Vec::with_capacity(len + BATCH_ENVELOPE_BYTES);
    out.extend_from_slice(b"{\"batch_id\":");
    // A batch id is a UUID: serializing it cannot fail.
    let _ = serde_json::to_writer(&mut out, batch_id);
    out.extend_from_slice(b",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e.as_ref().as_bytes());
    }
    out.extend_from_slice(b"]}");
    bytes::Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_batch_hour() {
        let id = "019abc12-3456-7def-8123-456789abcdef";
        let key = object_key(id, 0).unwrap();
        let t = batch_time(id).unwrap();
        assert!(key.starts_with(&format!("audit/v1/{:04}/", t.year())), "{key}");
        assert!(key.ends_with(&format!("{id}.ndjson.gz")));
        assert!(object_key(id, 2).unwrap().ends_with(&format!("{id}-2.ndjson.gz")));
        assert!(object_key("not-a-uuid", 0).is_err());
        assert!(object_key(&uuid::Uuid::new_v4().to_string(), 0).is_err());
    }

    #[test]
    fn encoding_is_deterministic_and_round_trips() {
        let events = [r#"{"request_id":"a"}"#, r#"{"request_id":"b"}"#];
        let a = encode(events);
        let b = encode(events);
        assert_eq!(a, b);
        assert_eq!(decode(&a).unwrap(), events);
        assert_eq!(event_request_id(events[1]).unwrap(), "b");
        assert!(decode(b"nope").is_err());
    }

    #[test]
    fn split_respects_both_limits() {
        let events: Vec<String> = (0..10).map(|i| format!("{{\"n\":{i}}}")).collect();
        let groups = split_by_size(events.clone(), 1_000_000, 4);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let groups = split_by_size(events, BATCH_ENVELOPE_BYTES + 16, 100);
        assert!(groups.iter().all(|g| g.len() == 2), "{groups:?}");
    }
}
