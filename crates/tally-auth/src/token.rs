//! The token format: `tally_<id>_<secret>`, the id to find it, the secret to prove it.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

const PREFIX: &str = "tally_";
const SECRET_BYTES: usize = 32;

/// A freshly created token: `text` is shown to its owner once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: String,
    pub text: String,
    pub(crate) secret_sha256: String,
}

impl IssuedToken {
    pub fn generate() -> anyhow::Result<IssuedToken> {
        let id = tally_kernel::id::new_v7().simple().to_string();
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret)
            .map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
        let secret = hex::encode(secret);
        Ok(IssuedToken {
            text: format!("{PREFIX}{id}_{secret}"),
            secret_sha256: digest(&secret),
            id,
        })
    }
}

/// The id and secret of a presented token, if it has the token's shape.
pub fn parse(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_len = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_len(id, 32) && hex_len(secret, SECRET_BYTES * 2)).then_some((id, secret))
}

pub(crate) fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a presented secret with a stored digest in constant time.
pub(crate) fn secret_matches(secret: &str, stored_sha256: &str) -> bool {
    digest(secret)
        .as_bytes()
        .ct_eq(stored_sha256.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_only_its_own_secret_matches() {
        let token = IssuedToken::generate().unwrap();
        let (id, secret) = parse(&token.text).unwrap();
        assert_eq!(id, token.id);
        assert!(secret_matches(secret, &token.secret_sha256));
        let other = IssuedToken::generate().unwrap();
        assert!(!secret_matches(
            parse(&other.text).unwrap().1,
            &token.secret_sha256
        ));
        assert_ne!(token.text, other.text);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in [
            "",
            "tally_",
            "tally_abc_def",
            "bearer",
            &format!("tally_{}_{}", "g".repeat(32), "0".repeat(64)),
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
