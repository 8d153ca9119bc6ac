//! The JSON error body every tollgate error response carries.

use serde::Serialize;

/// `{"error":{"code":"...","message":"...","request_id":"..."}}`
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The error.
    pub error: ErrorDetail<'a>,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    /// Stable, machine-readable code (snake_case).
    pub code: &'a str,
    /// Human-readable message; never carries backend details.
    pub message: &'a str,
    /// The request id, also in the `x-request-id` header.
    pub request_id: &'a str,
}

/// Serializes the error body.
pub fn error_json(code: &str, message: &str, request_id: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code,
            message,
            request_id,
        },
    })
    .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"internal error","request_id":""}}"#.to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let v: serde_json::Value = serde_json::from_slice(&super::error_json("not_found", "no \"x\"", "r1")).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "no \"x\"");
        assert_eq!(v["error"]["request_id"], "r1");
    }
}
