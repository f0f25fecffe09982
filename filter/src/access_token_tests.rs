use jwt_simple::prelude::*;
use serde_json::json;

use super::*;
use crate::test_support::*;

const PARAMS: VerifyParams<'static> = VerifyParams {
    issuer: ISSUER,
    algorithm: "EdDSA",
    leeway_seconds: 5,
};

fn setup() -> (Ed25519KeyPair, KeySet) {
    let (pair, jwk) = test_key("k1");
    let (_, other) = test_key("k2");
    (pair, key_set(&[&jwk, &other]))
}

fn check(token: &str, keys: &KeySet) -> Result<AccessClaims, TokenError> {
    verify(token, keys, &PARAMS, ROUTE_A, NOW)
}

#[test]
fn valid_token_returns_claims() {
    let (pair, keys) = setup();
    let c = check(&token(&pair, &claims(ROUTE_A)), &keys).unwrap();
    assert_eq!(c.sub, "user-1");
    assert_eq!(c.email.as_deref(), Some("alice@example.com"));
    assert_eq!(c.groups, vec!["admins", "dev"]);
    assert_eq!(c.client_id.as_deref(), Some("client-1"));
    assert_eq!(c.sid.as_deref(), Some("sid-1"));
    assert_eq!(c.jti.as_deref(), Some("jti-1"));
    assert_eq!(c.exp, NOW + 300);
    assert_eq!(c.audiences, vec![ROUTE_A]);
    assert_eq!(c.kid, "k1");
}

#[test]
fn token_signed_by_jwt_simple_verifies() {
    let (pair, keys) = setup();
    let claims = Claims::create(Duration::from_secs(300))
        .with_issuer(ISSUER)
        .with_subject("u")
        .with_audience(ROUTE_A);
    let at_jwt = HeaderOptions {
        signature_type: Some("at+jwt".into()),
        ..HeaderOptions::default()
    };
    let token = pair.sign_with_options(claims.clone(), &at_jwt).unwrap();
    let now = Clock::now_since_epoch().as_secs();
    assert!(verify(&token, &keys, &PARAMS, ROUTE_A, now).is_ok());
    // jwt-simple's default `typ: JWT` is another kind of token.
    let plain = pair.sign(claims).unwrap();
    assert_eq!(
        verify(&plain, &keys, &PARAMS, ROUTE_A, now).unwrap_err(),
        TokenError::WrongType
    );
}

#[test]
fn only_at_jwt_typed_tokens_are_access_tokens() {
    let (pair, keys) = setup();
    let with_typ = |typ: Option<serde_json::Value>| {
        let mut h = json!({"alg": "EdDSA", "kid": "k1"});
        if let Some(typ) = typ {
            h["typ"] = typ;
        }
        check(&sign_raw(&pair, &h, &claims(ROUTE_A)), &keys)
    };
    for ok in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+JWT",
    ] {
        assert!(with_typ(Some(json!(ok))).is_ok(), "{ok}");
    }
    // A user assertion is signed with the same key, valid claims and all: `typ: JWT`.
    for bad in [
        "JWT",
        "jwt",
        "dpop+jwt",
        "at+jwt ",
        "at+jwtx",
        "application/",
        "application/jwt",
        "xapplication/at+jwt",
        "",
        "é",
        "applicatioé/at+jwt",
    ] {
        assert_eq!(
            with_typ(Some(json!(bad))).unwrap_err(),
            TokenError::WrongType,
            "{bad:?}"
        );
    }
    assert_eq!(with_typ(None).unwrap_err(), TokenError::WrongType);
    assert!(with_typ(Some(json!(1))).is_err());
    assert_eq!(
        peek_kid(
            &sign_raw(
                &pair,
                &json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}),
                &claims(ROUTE_A)
            ),
            "EdDSA"
        ),
        Err(TokenError::WrongType)
    );
    assert_eq!(
        TokenError::WrongType.description(),
        "the token is not an access token"
    );
    assert_eq!(TokenError::Revoked.description(), "token revoked");
}

#[test]
fn optional_claims_may_be_absent() {
    let (pair, keys) = setup();
    let c = json!({"iss": ISSUER, "sub": "u", "aud": ROUTE_A, "exp": NOW + 60});
    let got = check(&token(&pair, &c), &keys).unwrap();
    assert_eq!((got.email, got.groups.len(), got.jti), (None, 0, None));
}

#[test]
fn expired_and_leeway_edges() {
    let (pair, keys) = setup();
    let with_exp = |exp: u64| {
        let mut c = claims(ROUTE_A);
        c["exp"] = json!(exp);
        c["iat"] = json!(exp.saturating_sub(600));
        check(&token(&pair, &c), &keys)
    };
    // Accepted while now < exp + leeway (5 s).
    assert!(with_exp(NOW + 1).is_ok());
    assert!(with_exp(NOW).is_ok());
    assert!(with_exp(NOW - 4).is_ok());
    assert_eq!(with_exp(NOW - 5).unwrap_err(), TokenError::Expired);
    assert_eq!(with_exp(NOW - 6).unwrap_err(), TokenError::Expired);
    assert_eq!(with_exp(NOW - 3600).unwrap_err(), TokenError::Expired);
}

#[test]
fn iat_in_the_future_and_leeway_edges() {
    let (pair, keys) = setup();
    let with_iat = |iat: u64| {
        let mut c = claims(ROUTE_A);
        c["iat"] = json!(iat);
        check(&token(&pair, &c), &keys)
    };
    assert!(with_iat(NOW).is_ok());
    assert!(with_iat(NOW + 5).is_ok());
    assert_eq!(with_iat(NOW + 6).unwrap_err(), TokenError::NotYetValid);
    assert_eq!(with_iat(NOW + 3600).unwrap_err(), TokenError::NotYetValid);
    let mut c = claims(ROUTE_A);
    c["nbf"] = json!(NOW + 60);
    assert_eq!(
        check(&token(&pair, &c), &keys).unwrap_err(),
        TokenError::NotYetValid
    );
}

#[test]
fn leeway_is_capped() {
    let (pair, keys) = setup();
    let params = VerifyParams {
        leeway_seconds: u64::MAX,
        ..PARAMS
    };
    let mut c = claims(ROUTE_A);
    c["exp"] = json!(NOW - MAX_LEEWAY_SECONDS - 1);
    c["iat"] = json!(0);
    let err = verify(&token(&pair, &c), &keys, &params, ROUTE_A, NOW).unwrap_err();
    assert_eq!(err, TokenError::Expired);
}

#[test]
fn tampered_signature_and_payload() {
    let (pair, keys) = setup();
    let good = token(&pair, &claims(ROUTE_A));
    let parts: Vec<&str> = good.split('.').collect();
    // Flip one signature byte.
    let mut sig = Base64UrlSafeNoPadding::decode_to_vec(parts[2], None).unwrap();
    sig[10] ^= 1;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert_eq!(
        check(&bad_sig, &keys).unwrap_err(),
        TokenError::BadSignature
    );
    // Swap in other claims under the original signature.
    let mut forged = claims(ROUTE_A);
    forged["sub"] = json!("admin");
    let bad_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(
        check(&bad_payload, &keys).unwrap_err(),
        TokenError::BadSignature
    );
    // Signed by another key that claims k1's kid.
    let (intruder, _) = test_key("k1");
    assert_eq!(
        check(&token(&intruder, &claims(ROUTE_A)), &keys).unwrap_err(),
        TokenError::BadSignature
    );
    // Empty and truncated signatures.
    let no_sig = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(check(&no_sig, &keys).unwrap_err(), TokenError::Malformed);
    let short_sig = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
    assert!(check(&short_sig, &keys).is_err());
}

#[test]
fn wrong_issuer() {
    let (pair, keys) = setup();
    for iss in [
        json!("http://evil.example"),
        json!("http://localhost:18080/"),
        json!(null),
    ] {
        let mut c = claims(ROUTE_A);
        c["iss"] = iss;
        assert_eq!(
            check(&token(&pair, &c), &keys).unwrap_err(),
            TokenError::WrongIssuer
        );
    }
    let mut c = claims(ROUTE_A);
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        check(&token(&pair, &c), &keys).unwrap_err(),
        TokenError::WrongIssuer
    );
}

#[test]
fn token_for_route_a_is_rejected_on_route_b() {
    let (pair, keys) = setup();
    let t = token(&pair, &claims(ROUTE_A));
    assert!(verify(&t, &keys, &PARAMS, ROUTE_A, NOW).is_ok());
    assert_eq!(
        verify(&t, &keys, &PARAMS, ROUTE_B, NOW).unwrap_err(),
        TokenError::WrongAudience
    );
    // Exact match only: no prefix, no trailing slash, no case folding.
    for resource in [
        "http://localhost:18080/everything/",
        "http://localhost:18080",
        "HTTP://localhost:18080/everything",
    ] {
        assert_eq!(
            verify(&t, &keys, &PARAMS, resource, NOW).unwrap_err(),
            TokenError::WrongAudience
        );
    }
    let mut c = claims(ROUTE_A);
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        check(&token(&pair, &c), &keys).unwrap_err(),
        TokenError::MissingClaim("aud")
    );
}

#[test]
fn audience_as_array() {
    let (pair, keys) = setup();
    let mut c = claims(ROUTE_A);
    c["aud"] = json!([ROUTE_B, ROUTE_A]);
    let t = token(&pair, &c);
    assert!(verify(&t, &keys, &PARAMS, ROUTE_A, NOW).is_ok());
    assert!(verify(&t, &keys, &PARAMS, ROUTE_B, NOW).is_ok());
    assert_eq!(
        verify(&t, &keys, &PARAMS, "http://x", NOW).unwrap_err(),
        TokenError::WrongAudience
    );
    // A client-route or service-account TE names several routes.
    c["aud"] = json!([ROUTE_A, ROUTE_B, "http://localhost:18080/app"]);
    let t = token(&pair, &c);
    let claims = verify_signed(&t, &keys, &PARAMS, NOW).unwrap();
    assert_eq!(claims.audiences.len(), 3);
    for aud in [ROUTE_A, ROUTE_B, "http://localhost:18080/app"] {
        assert!(claims.check_for_route(aud, NOW, 5).is_ok(), "{aud}");
    }
    assert_eq!(
        claims.check_for_route("http://localhost:18080/ap", NOW, 5),
        Err(TokenError::WrongAudience)
    );
    c["aud"] = json!([ROUTE_A, 7]);
    assert!(check(&token(&pair, &c), &keys).is_err());
    c["aud"] = json!([]);
    assert_eq!(
        check(&token(&pair, &c), &keys).unwrap_err(),
        TokenError::WrongAudience
    );
}

#[test]
fn identity_for_route_checks_the_route_then_the_revocation_list() {
    let (pair, keys) = setup();
    let claims = verify_signed(&token(&pair, &claims(ROUTE_A)), &keys, &PARAMS, NOW).unwrap();
    let none = Revocations::default();
    let identity = claims.identity_for_route(ROUTE_A, NOW, 5, &none).unwrap();
    assert!(Rc::ptr_eq(&identity, &claims.identity));
    assert_eq!(identity.user, "user-1");
    let by_jti = Revocations::parse(br#"{"jtis":["jti-1"]}"#).unwrap();
    let by_sub = Revocations::parse(br#"{"subjects":["user-1"]}"#).unwrap();
    let others = Revocations::parse(br#"{"jtis":["jti-2"],"subjects":["user-2"]}"#).unwrap();
    for revoked in [&by_jti, &by_sub] {
        assert_eq!(
            claims.identity_for_route(ROUTE_A, NOW, 5, revoked),
            Err(TokenError::Revoked)
        );
    }
    assert!(claims.identity_for_route(ROUTE_A, NOW, 5, &others).is_ok());
    // The token's own checks come first.
    assert_eq!(
        claims.identity_for_route(ROUTE_B, NOW, 5, &by_jti),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        claims.identity_for_route(ROUTE_A, NOW + 305, 5, &by_jti),
        Err(TokenError::Expired)
    );
}

#[test]
fn other_algorithms_are_rejected_even_if_they_would_verify() {
    let (pair, keys) = setup();
    let body = b64(claims(ROUTE_A).to_string().as_bytes());
    // HS256 keyed with the public key bytes: the classic confusion attack.
    let hs = HS256Key::from_bytes(&pair.public_key().to_bytes()).with_key_id("k1");
    let hs_token = hs
        .authenticate(
            Claims::with_custom_claims(json!({}), Duration::from_secs(60))
                .with_issuer(ISSUER)
                .with_audience(ROUTE_A),
        )
        .unwrap();
    assert_eq!(
        check(&hs_token, &keys).unwrap_err(),
        TokenError::UnsupportedAlgorithm
    );
    // alg none, with and without a signature part.
    let none = b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    assert_eq!(
        check(&format!("{none}.{body}."), &keys).unwrap_err(),
        TokenError::UnsupportedAlgorithm
    );
    assert_eq!(
        check(&format!("{none}.{body}"), &keys).unwrap_err(),
        TokenError::Malformed
    );
    // ES256 with a real P-256 signature.
    let es = ES256KeyPair::generate().with_key_id("k1");
    let es_token = es
        .sign(
            Claims::create(Duration::from_secs(60))
                .with_issuer(ISSUER)
                .with_audience(ROUTE_A),
        )
        .unwrap();
    assert_eq!(
        check(&es_token, &keys).unwrap_err(),
        TokenError::UnsupportedAlgorithm
    );
    // An EdDSA signature under the alias `Ed25519` (jwt-simple accepts it; the contract does not).
    let alias = sign_raw(
        &pair,
        &json!({"alg": "Ed25519", "kid": "k1"}),
        &claims(ROUTE_A),
    );
    assert_eq!(
        check(&alias, &keys).unwrap_err(),
        TokenError::UnsupportedAlgorithm
    );
    // Case matters.
    let lower = sign_raw(
        &pair,
        &json!({"alg": "eddsa", "kid": "k1"}),
        &claims(ROUTE_A),
    );
    assert_eq!(
        check(&lower, &keys).unwrap_err(),
        TokenError::UnsupportedAlgorithm
    );
}

#[test]
fn kid_must_be_present_and_known() {
    let (pair, keys) = setup();
    let unknown = sign_raw(&pair, &header("nope"), &claims(ROUTE_A));
    assert_eq!(
        check(&unknown, &keys).unwrap_err(),
        TokenError::UnknownKeyId
    );
    let missing = sign_raw(
        &pair,
        &json!({"alg": "EdDSA", "typ": "at+jwt"}),
        &claims(ROUTE_A),
    );
    assert_eq!(
        check(&missing, &keys).unwrap_err(),
        TokenError::MissingKeyId
    );
    let empty = sign_raw(&pair, &header(""), &claims(ROUTE_A));
    assert_eq!(check(&empty, &keys).unwrap_err(), TokenError::MissingKeyId);
    assert_eq!(
        peek_kid(&token(&pair, &claims(ROUTE_A)), "EdDSA").unwrap(),
        "k1"
    );
}

#[test]
fn required_claims() {
    let (pair, keys) = setup();
    for (claim, err) in [
        ("exp", TokenError::MissingClaim("exp")),
        ("sub", TokenError::MissingClaim("sub")),
    ] {
        let mut c = claims(ROUTE_A);
        c.as_object_mut().unwrap().remove(claim);
        assert_eq!(check(&token(&pair, &c), &keys).unwrap_err(), err);
    }
    let mut c = claims(ROUTE_A);
    c["groups"] = json!("admins");
    assert_eq!(
        check(&token(&pair, &c), &keys).unwrap_err(),
        TokenError::Malformed
    );
    c["groups"] = json!(null);
    assert!(check(&token(&pair, &c), &keys).is_ok());
}

#[test]
fn malformed_compact_tokens() {
    let (pair, keys) = setup();
    let good = token(&pair, &claims(ROUTE_A));
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        parts[0].into(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!(
            "{}.{}.{}.{}.{}",
            parts[0], parts[1], parts[2], parts[1], parts[2]
        ),
        format!("{}!.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}*.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[]"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"{}"), parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        "Bearer abc".into(),
        "\u{0}\u{1}.é.ü".into(),
    ];
    for t in &cases {
        let err = check(t, &keys).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed | TokenError::BadSignature),
            "{t:?}: {err:?}"
        );
    }
    // A non-JSON payload under a valid signature.
    let sig_input = format!("{}.{}", parts[0], b64(b"not json"));
    let sk = ed25519_compact::KeyPair::from_slice(&pair.to_bytes()).unwrap();
    let t = format!(
        "{sig_input}.{}",
        b64(sk.sk.sign(sig_input.as_bytes(), None).as_ref())
    );
    assert_eq!(check(&t, &keys).unwrap_err(), TokenError::Malformed);
    // Huge tokens are refused before parsing.
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_BYTES), parts[2]);
    assert_eq!(check(&huge, &keys).unwrap_err(), TokenError::TooLarge);
    let huge_header = format!(
        "{}.{}.{}",
        "A".repeat(MAX_TOKEN_BYTES + 1),
        parts[1],
        parts[2]
    );
    assert_eq!(
        check(&huge_header, &keys).unwrap_err(),
        TokenError::TooLarge
    );
}

#[test]
fn weird_claim_values_do_not_panic() {
    let (pair, keys) = setup();
    for (name, value) in [
        ("exp", json!(u64::MAX)),
        ("exp", json!(-1)),
        ("exp", json!(1e300)),
        ("exp", json!("soon")),
        ("iat", json!(u64::MAX)),
        ("iat", json!(-5)),
        ("nbf", json!(u64::MAX)),
        ("aud", json!(42)),
        ("sub", json!({"a": 1})),
        ("iss", json!([ISSUER])),
    ] {
        let mut c = claims(ROUTE_A);
        c[name] = value;
        let _ = check(&token(&pair, &c), &keys);
    }
}

#[test]
fn error_descriptions_never_contain_the_token() {
    let (pair, keys) = setup();
    let t = token(&pair, &claims(ROUTE_B));
    let err = check(&t, &keys).unwrap_err();
    assert_eq!(err, TokenError::WrongAudience);
    for piece in t.split('.') {
        assert!(!err.to_string().contains(piece));
    }
    assert_eq!(
        TokenError::MissingClaim("exp").to_string(),
        "the access token lacks a required claim (exp)"
    );
}

/// Deterministic xorshift so the fuzz loops need no extra dependency and failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzz_random_inputs_never_panic() {
    let (_pair, keys) = setup();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let alphabet =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\":,\x00\xff";
    for _ in 0..20_000 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                }
            })
            .collect();
        let s = String::from_utf8_lossy(&bytes);
        let _ = verify(&s, &keys, &PARAMS, ROUTE_A, NOW);
        let _ = verify(&s, &keys, &PARAMS, ROUTE_A, rng.next());
    }
}

#[test]
fn fuzz_mutated_tokens_never_panic_and_never_verify() {
    let (pair, keys) = setup();
    let good = token(&pair, &claims(ROUTE_A));
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut accepted = 0;
    for _ in 0..3_000 {
        let mut bytes = good.clone().into_bytes();
        for _ in 0..=rng.below(4) {
            let i = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[i] = rng.next() as u8,
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, b"A._-"[rng.below(4)]),
            }
        }
        let s = String::from_utf8_lossy(&bytes);
        // Headers and payloads that decode to JSON but differ must never verify.
        if verify(&s, &keys, &PARAMS, ROUTE_A, NOW).is_ok() {
            accepted += 1;
            // Base64 has slack bits in its last character: only those may still verify.
            assert_eq!(s.len(), good.len());
        }
        let _ = peek_kid(&s, "EdDSA");
    }
    assert!(accepted < 50, "{accepted} mutated tokens verified");
}

#[test]
fn fuzz_random_claims_json_never_panics() {
    let (pair, keys) = setup();
    let mut rng = Rng(42);
    let values = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5e308),
        json!(""),
        json!("x"),
        json!([]),
        json!([1, "a"]),
        json!({}),
        json!(NOW),
        json!(ROUTE_A),
        json!(ISSUER),
    ];
    let names = [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "sid",
        "client_id",
        "email",
        "groups",
    ];
    for _ in 0..2_000 {
        let mut c = claims(ROUTE_A);
        for _ in 0..=rng.below(3) {
            c[names[rng.below(names.len())]] = values[rng.below(values.len())].clone();
        }
        let _ = check(&token(&pair, &c), &keys);
        let mut h = header("k1");
        if rng.below(2) == 0 {
            h[["alg", "kid", "typ", "crit"][rng.below(4)]] =
                values[rng.below(values.len())].clone();
        }
        let _ = check(&sign_raw(&pair, &h, &c), &keys);
    }
}
