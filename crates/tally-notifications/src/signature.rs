//! Webhook signatures: how Tally signs each webhook request, and how a receiver checks one.
//!
//! Every request carries
//!
//! ```text
//! Tally-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! Tally-Notification-Id: <delivery id>
//! ```
//!
//! where `body` is the exact bytes of the request body and `secret` the webhook's shared secret.
//! A receiver:
//!
//! 1. reads the raw body, before any JSON parsing (re-serialized JSON will not match);
//! 2. splits the header on `,` into `key=value` pairs and takes `t` and every `v1`;
//! 3. computes HMAC-SHA256 with the secret over the bytes of `t`, a `.`, then the body, and
//!    writes it as lowercase hex;
//! 4. compares it with each `v1` in constant time, and refuses the request if none matches;
//! 5. refuses a `t` further than a few minutes (we suggest [`DEFAULT_TOLERANCE_S`]) from its
//!    own clock, so that a captured request cannot be replayed later;
//! 6. answers any 2xx once it has stored the notification, and treats a second request with a
//!    `Tally-Notification-Id` it has already stored as done: Tally retries until it sees a 2xx,
//!    so a receiver may see one notification more than once (a timeout after it stored it, a
//!    worker stopped before it recorded the answer).
//!
//! Each attempt is signed anew, with the time of that attempt. [`verify`] does steps 2 to 5.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "Tally-Signature";
pub const NOTIFICATION_ID_HEADER: &str = "Tally-Notification-Id";

/// How far a signature's time may be from the receiver's clock, in seconds.
pub const DEFAULT_TOLERANCE_S: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp_s: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Tally-Signature` header value for `body` sent at `timestamp_s` (Unix seconds).
pub fn sign(secret: &[u8], timestamp_s: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp_s, body).finalize().into_bytes();
    format!("t={timestamp_s},v1={}", hex::encode(digest))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the header has no t=<unix seconds>")]
    MissingTimestamp,
    #[error("the header has no v1=<hex signature>")]
    MissingSignature,
    #[error("the signature's time is too far from now")]
    Expired,
    #[error("no signature matches the body")]
    Mismatch,
}

/// Checks a `Tally-Signature` header against the raw `body`, at `now_s` (Unix seconds),
/// accepting times within `tolerance_s` of it.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    if now_s.abs_diff(timestamp) > tolerance_s.unsigned_abs() {
        return Err(SignatureError::Expired);
    }
    let matches = signatures.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|bytes| {
            // `verify_slice` compares in constant time.
            mac(secret, timestamp, body).verify_slice(&bytes).is_ok()
        })
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_hmac_sha256_of_time_dot_body_in_hex() {
        // The same digest computed by hand over "1.{}".
        let header = sign(b"key", 1, b"{}");
        let (t, v1) = header.split_once(',').unwrap();
        assert_eq!(t, "t=1");
        let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
        mac.update(b"1.{}");
        assert_eq!(
            v1,
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_eq!(v1.len(), 3 + 64);
    }

    #[test]
    fn verify_accepts_the_signed_body_and_refuses_everything_else() {
        let body = br#"{"subject":"Bill paid"}"#;
        let header = sign(b"s3cret", 1_700_000_000, body);
        assert_eq!(verify(b"s3cret", &header, body, 1_700_000_100, 300), Ok(()));
        assert_eq!(
            verify(b"other", &header, body, 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", &header, b"{}", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", &header, body, 1_700_000_301, 300),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(b"s3cret", "v1=00", body, 0, 300),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            verify(b"s3cret", "t=5", body, 5, 300),
            Err(SignatureError::MissingSignature)
        );
        // A receiver rotating secrets may be sent several v1 values; one match is enough.
        let rotated = format!("{header},v1=abcd");
        assert_eq!(
            verify(b"s3cret", &rotated, body, 1_700_000_000, 300),
            Ok(())
        );
    }
}
