//! Standard Webhooks signing and verification.

use std::time::Duration;

use tenancy_events::webhook::{sign, sign_all, verify, DEFAULT_TOLERANCE};
use tenancy_events::{WebhookError, WebhookHeaders, WebhookSecret};

// Vector 1 is the example used by the Standard Webhooks reference libraries; vector 2
// is ours. Both were computed independently of this crate with python3:
//   key = base64.b64decode(secret[len("whsec_"):])
//   "v1," + base64.b64encode(hmac.new(key, f"{id}.{ts}.".encode() + body,
//                                     hashlib.sha256).digest()).decode()
const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TS: i64 = 1_614_265_330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

// key = bytes(range(32))
const OUR_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OUR_ID: &str = "msg_2a";
const OUR_TS: i64 = 1_700_000_000;
const OUR_BODY: &[u8] = br#"{"type":"tenant.created","data":{"id":"acme"}}"#;
const OUR_SIG: &str = "v1,DvHWJ+6VWt3zD6Xdgr3K7gh7ld3cDBpzR3veO1AXH9A=";

fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> WebhookHeaders<'a> {
    WebhookHeaders { id, timestamp: ts, signature: sig }
}

#[test]
fn matches_known_vectors() {
    let spec = WebhookSecret::parse(SPEC_SECRET).unwrap();
    assert_eq!(sign(&spec, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    let ours = WebhookSecret::parse(OUR_SECRET).unwrap();
    assert_eq!(sign(&ours, OUR_ID, OUR_TS, OUR_BODY), OUR_SIG);
    assert_eq!(ours, WebhookSecret::from_bytes((0u8..32).collect::<Vec<_>>()).unwrap());
    let ts = SPEC_TS.to_string();
    verify(&spec, &headers(SPEC_ID, &ts, SPEC_SIG), SPEC_BODY, SPEC_TS, DEFAULT_TOLERANCE).unwrap();
}

#[test]
fn generated_secret_has_prefix_and_32_bytes_and_round_trips() {
    let s = WebhookSecret::generate();
    let text = s.expose();
    assert!(text.starts_with("whsec_"));
    assert_eq!(text.len(), "whsec_".len() + 44);
    assert_eq!(text.parse::<WebhookSecret>().unwrap(), s);
    assert_ne!(WebhookSecret::generate(), s);
    assert_eq!(format!("{s:?}"), "WebhookSecret(..)");
}

#[test]
fn parse_rejects_bad_secrets() {
    assert_eq!(WebhookSecret::parse("whsec_!!!"), Err(WebhookError::SecretEncoding));
    assert_eq!(WebhookSecret::parse("whsec_"), Err(WebhookError::SecretEmpty));
    // The prefix is optional.
    assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
}

#[test]
fn round_trip() {
    let s = WebhookSecret::generate();
    let body = b"{\"hello\":\"world\"}";
    let sig = sign(&s, "msg_1", 1000, body);
    verify(&s, &headers("msg_1", "1000", &sig), body, 1000, DEFAULT_TOLERANCE).unwrap();
}

#[test]
fn tampering_is_detected() {
    let s = WebhookSecret::generate();
    let body = b"{\"amount\":10}";
    let sig = sign(&s, "msg_1", 1000, body);
    let check =
        |id: &str, ts: &str, sig: &str, body: &[u8]| verify(&s, &headers(id, ts, sig), body, 1000, DEFAULT_TOLERANCE);
    let no = Err(WebhookError::NoMatchingSignature);
    assert_eq!(check("msg_1", "1000", &sig, b"{\"amount\":99}"), no);
    assert_eq!(check("msg_2", "1000", &sig, body), no);
    assert_eq!(check("msg_1", "1001", &sig, body), no);
    let mut flipped = sig.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(check("msg_1", "1000", std::str::from_utf8(&flipped).unwrap(), body), no);
    assert_eq!(check("msg_1", "1000", "", body), no);
    assert_eq!(check("msg_1", "1000", &sig.replace("v1,", "v2,"), body), no);
    assert_eq!(check("msg_1", "1000", "v1,not-base64", body), no);
    let other = WebhookSecret::generate();
    assert_eq!(verify(&other, &headers("msg_1", "1000", &sig), body, 1000, DEFAULT_TOLERANCE), no);
}

#[test]
fn rotation_signs_with_every_secret_and_either_verifies() {
    let old = WebhookSecret::generate();
    let new = WebhookSecret::generate();
    let body = b"{}";
    let header = sign_all(&[old.clone(), new.clone()], "msg_r", 500, body);
    let parts: Vec<&str> = header.split(' ').collect();
    assert_eq!(parts, [sign(&old, "msg_r", 500, body), sign(&new, "msg_r", 500, body)]);
    for receiver in [&old, &new] {
        verify(receiver, &headers("msg_r", "500", &header), body, 500, DEFAULT_TOLERANCE).unwrap();
    }
    // A receiver holding both secrets accepts a header signed with only one of them.
    let only_new = sign(&new, "msg_r", 500, body);
    verify(&vec![old.clone(), new.clone()], &headers("msg_r", "500", &only_new), body, 500, DEFAULT_TOLERANCE).unwrap();
    // Unknown versions and extra spaces are tolerated.
    let mixed = format!("v2,xxxx  {only_new}");
    verify(&new, &headers("msg_r", "500", &mixed), body, 500, DEFAULT_TOLERANCE).unwrap();
    let none: [WebhookSecret; 0] = [];
    assert_eq!(
        verify(&none, &headers("msg_r", "500", &header), body, 500, DEFAULT_TOLERANCE),
        Err(WebhookError::NoSecrets)
    );
}

#[test]
fn timestamp_tolerance() {
    let s = WebhookSecret::generate();
    let body = b"x";
    let at = |ts: i64, now: i64, tol: Duration| {
        let sig = sign(&s, "m", ts, body);
        verify(&s, &headers("m", &ts.to_string(), &sig), body, now, tol)
    };
    assert_eq!(DEFAULT_TOLERANCE, Duration::from_secs(300));
    assert!(at(10_000, 10_300, DEFAULT_TOLERANCE).is_ok());
    assert!(at(10_300, 10_000, DEFAULT_TOLERANCE).is_ok());
    assert_eq!(at(10_000, 10_301, DEFAULT_TOLERANCE), Err(WebhookError::TimestampTooOld));
    assert_eq!(at(10_301, 10_000, DEFAULT_TOLERANCE), Err(WebhookError::TimestampTooNew));
    assert_eq!(at(10_000, 10_020, Duration::from_secs(10)), Err(WebhookError::TimestampTooOld));
    let sig = sign(&s, "m", 1, body);
    assert_eq!(
        verify(&s, &headers("m", "soon", &sig), body, 1, DEFAULT_TOLERANCE),
        Err(WebhookError::InvalidTimestamp)
    );
}
