//! The ALB response parser (`tollgate_ingress::alb::parse_response`): a function's answer,
//! whatever bytes it is, is a reply or an error (-> 502), never a panic; a reply has a final
//! status and none of the headers the ingress owns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_ingress::alb::parse_response;

/// What a function may not set (the parser drops them).
const OWNED_BY_THE_INGRESS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "x-request-id",
];

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = parse_response(data) else {
        return;
    };
    let status = reply.status.as_u16();
    assert!((200..=599).contains(&status), "status {status} accepted");
    for name in OWNED_BY_THE_INGRESS {
        assert!(!reply.headers.contains_key(*name), "{name} passed through");
    }
});
