//! How a webhook request is signed: the header names, and HMAC-SHA256 of the exact body bytes under `[notify]
//! secret`, written `sha256=<lower-case hex>`. The README's receiver snippets (Python, openssl) check exactly this;
//! a test runs them against real deliveries.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Downloader2-Signature";
/// The event's id (also `event_id` in the body): the same on every delivery of one event.
pub const EVENT_ID_HEADER: &str = "X-Downloader2-Event-Id";
/// When this delivery was sent, Unix seconds (also `timestamp` in the body, and so covered by the signature).
pub const TIMESTAMP_HEADER: &str = "X-Downloader2-Timestamp";
/// The event's name (`completed`, `failed`, ...; also `event` in the body).
pub const EVENT_HEADER: &str = "X-Downloader2-Event";

/// The value of the signature header for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error arm cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return String::new() };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test cases 1, 2 and 6 (HMAC-SHA-256): an independent statement of the expected outputs.
    #[test]
    fn signatures_match_the_rfc_4231_vectors() {
        assert_eq!(
            sign(&[0x0b; 20], b"Hi There"),
            "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sign(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
