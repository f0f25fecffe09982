//! PKCE (RFC 7636), S256 only: `plain` and missing challenges are refused (OAuth 2.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why an authorization request's challenge (an `invalid_request`) or a token request's
/// verifier (an `invalid_grant`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge is required (PKCE with S256)")]
    ChallengeMissing,
    #[error("code_challenge_method is required and must be S256")]
    MethodMissing,
    #[error("code_challenge_method plain is not allowed; use S256")]
    PlainMethod,
    #[error("code_challenge_method must be S256")]
    UnsupportedMethod,
    #[error("code_challenge must be 43 base64url characters (an S256 challenge)")]
    MalformedChallenge,
    #[error("code_verifier is required")]
    VerifierMissing,
    #[error("code_verifier must be 43 to 128 characters")]
    VerifierLength,
    #[error("code_verifier may contain only unreserved characters (A-Z a-z 0-9 - . _ ~)")]
    VerifierCharacters,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// Checks the `code_challenge` / `code_challenge_method` pair of an authorization request.
pub fn validate_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<String, PkceError> {
    let challenge = match challenge {
        Some(c) if !c.is_empty() => c,
        _ => return Err(PkceError::ChallengeMissing),
    };
    match method {
        Some("S256") => {}
        None => return Err(PkceError::MethodMissing),
        Some("plain") => return Err(PkceError::PlainMethod),
        Some(_) => return Err(PkceError::UnsupportedMethod),
    }
    // An S256 challenge is base64url(SHA-256(verifier)) without padding: exactly 43 characters.
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(PkceError::MalformedChallenge);
    }
    Ok(challenge.to_string())
}

/// Checks a `code_verifier` against the stored S256 challenge.
pub fn verify(verifier: Option<&str>, challenge: &str) -> Result<(), PkceError> {
    let verifier = verifier.ok_or(PkceError::VerifierMissing)?;
    if !(43..=128).contains(&verifier.len()) {
        return Err(PkceError::VerifierLength);
    }
    if !verifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(PkceError::VerifierCharacters);
    }
    let computed = challenge_for(verifier);
    if computed.as_bytes().ct_eq(challenge.as_bytes()).into() {
        Ok(())
    } else {
        Err(PkceError::Mismatch)
    }
}

/// The S256 challenge of a verifier.
pub fn challenge_for(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_example_verifies() {
        assert_eq!(challenge_for(VERIFIER), CHALLENGE);
        assert!(verify(Some(VERIFIER), CHALLENGE).is_ok());
    }

    #[test]
    fn wrong_short_or_bad_verifiers_fail() {
        let mut wrong = VERIFIER.to_string();
        wrong.replace_range(0..1, "e");
        assert!(verify(Some(&wrong), CHALLENGE)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        assert!(verify(Some("short"), CHALLENGE)
            .unwrap_err()
            .to_string()
            .contains("43 to 128"));
        assert!(verify(Some(&"a".repeat(129)), CHALLENGE).is_err());
        assert!(verify(Some(&format!("{}!", &VERIFIER[..43])), CHALLENGE)
            .unwrap_err()
            .to_string()
            .contains("unreserved"));
        assert!(verify(None, CHALLENGE)
            .unwrap_err()
            .to_string()
            .contains("required"));
    }

    #[test]
    fn only_s256_challenges_are_accepted() {
        assert_eq!(
            validate_challenge(Some(CHALLENGE), Some("S256")).unwrap(),
            CHALLENGE
        );
        assert!(validate_challenge(Some(CHALLENGE), Some("plain"))
            .unwrap_err()
            .to_string()
            .contains("plain"));
        assert!(validate_challenge(Some(CHALLENGE), None)
            .unwrap_err()
            .to_string()
            .contains("S256"));
        assert!(validate_challenge(None, Some("S256"))
            .unwrap_err()
            .to_string()
            .contains("required"));
        assert!(validate_challenge(Some("abc"), Some("S256"))
            .unwrap_err()
            .to_string()
            .contains("43"));
        assert!(validate_challenge(Some(CHALLENGE), Some("s256")).is_err());
    }
}
