//! Request ids and trace ids.

/// Longest incoming `x-request-id` we adopt; longer ones are replaced by our own.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A new request id: a UUIDv7, so ids sort by creation time.
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// Whether an incoming `x-request-id` may be adopted: 1-128 characters of
/// `[A-Za-z0-9._:-]`, so that it is safe in logs, keys and URLs.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Whether an `X-Amzn-Trace-Id` value looks like one the ALB or X-Ray writes
/// (`Root=1-...;Self=...`): printable ASCII without spaces, at most 256 bytes.
pub fn is_valid_trace_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A new X-Ray style trace id (`Root=1-<8 hex epoch seconds>-<24 hex random>`), the
/// form the ALB adds as `X-Amzn-Trace-Id`; used when no load balancer stands in front.
pub fn new_trace_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random = uuid::Uuid::new_v4().as_u128() & ((1u128 << 96) - 1);
    format!("Root=1-{:08x}-{:024x}", secs as u32, random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_rules() {
        assert!(is_valid_request_id("abc-123_x.y:z"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("has space"));
        assert!(!is_valid_request_id("new\nline"));
        assert!(!is_valid_request_id(&"a".repeat(129)));
        assert!(is_valid_request_id(&new_request_id()));
    }

    #[test]
    fn trace_ids_have_the_xray_shape() {
        let id = new_trace_id();
        assert!(id.starts_with("Root=1-"), "{id}");
        assert_eq!(id.len(), "Root=1-".len() + 8 + 1 + 24);
        assert!(is_valid_trace_id(&id));
        assert!(!is_valid_trace_id("a b"));
    }
}
