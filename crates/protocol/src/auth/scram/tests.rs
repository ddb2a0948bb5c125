//! Tests of SCRAM secrets, our server, our client, and interoperability with
//! postgres-protocol's client.

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use super::*;

/// Secret computed by PostgreSQL's algorithm (the value postgres-protocol tests against).
const KNOWN_SECRET: &str = "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=";

fn secret() -> ScramSecret {
    ScramSecret::from_password(b"secret", b"0123456789abcdef", 16)
}

#[test]
fn from_password_matches_a_postgres_generated_secret() {
    let salt: Vec<u8> = (1..=16).collect();
    let computed = ScramSecret::from_password(b"secret", &salt, 4096);
    assert_eq!(computed.to_string(), KNOWN_SECRET);
    assert_eq!(ScramSecret::parse(KNOWN_SECRET), Some(computed));
}

#[test]
fn parse_rejects_malformed_secrets() {
    for bad in [
        "",
        "md5abc",
        "SCRAM-SHA-256$0:AQID$AAAA:AAAA",
        "SCRAM-SHA-256$4096:AQID$AAAA:AAAA",
        "SCRAM-SHA-256$4096:$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=",
        "SCRAM-SHA-256$x:AQID$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=",
    ] {
        assert_eq!(ScramSecret::parse(bad), None, "{bad}");
    }
    assert_eq!(ScramSecret::parse(&"S".repeat(5000)), None);
}

fn login(secret: &ScramSecret, credentials: ScramCredentials) -> Result<ScramOutcome, ScramError> {
    let (mut client, first) = ScramClient::new(credentials, b"client-nonce-bytes");
    let (server, server_first) = ScramServer::new(secret.clone(), &first, b"server-random")?;
    let client_final = client.handle_server_first(&server_first)?;
    let outcome = server.finish(&client_final)?;
    client.verify_server_final(&outcome.server_final)?;
    Ok(outcome)
}

#[test]
fn our_client_logs_in_to_our_server_with_the_password() {
    let outcome = login(&secret(), ScramCredentials::Password(b"secret".to_vec())).unwrap();
    assert!(outcome.server_final.starts_with(b"v="));
}

#[test]
fn wrong_password_gives_invalid_proof() {
    assert_eq!(
        login(&secret(), ScramCredentials::Password(b"wrong".to_vec())),
        Err(ScramError::InvalidProof)
    );
}

#[test]
fn recovered_client_key_passes_through_to_a_server_with_the_same_secret() {
    let s = secret();
    let outcome = login(&s, ScramCredentials::Password(b"secret".to_vec())).unwrap();
    let keys = ScramCredentials::Keys {
        client_key: outcome.client_key,
        server_key: s.server_key,
    };
    login(&s, keys).unwrap();
}

#[test]
fn wrong_server_key_makes_the_client_reject_the_server() {
    let s = secret();
    let outcome = login(&s, ScramCredentials::Password(b"secret".to_vec())).unwrap();
    let keys = ScramCredentials::Keys {
        client_key: outcome.client_key,
        server_key: [0; 32],
    };
    assert_eq!(login(&s, keys), Err(ScramError::InvalidServerSignature));
}

#[test]
fn client_reports_server_params() {
    let (mut client, first) = ScramClient::new(ScramCredentials::Password(b"x".to_vec()), b"n");
    assert_eq!(client.server_params(), None);
    let (_, server_first) = ScramServer::new(secret(), &first, b"r").unwrap();
    client.handle_server_first(&server_first).unwrap();
    assert_eq!(client.server_params(), Some((&b"0123456789abcdef"[..], 16)));
}

#[test]
fn postgres_protocol_client_authenticates_against_our_server() {
    for binding in [ChannelBinding::unrequested(), ChannelBinding::unsupported()] {
        let mut client = ScramSha256::new(b"secret", binding);
        let (server, server_first) =
            ScramServer::new(secret(), client.message(), b"0123456789abcdefgh").unwrap();
        client.update(&server_first).unwrap();
        let outcome = server.finish(client.message()).unwrap();
        client.finish(&outcome.server_final).unwrap();
    }
}

#[test]
fn channel_binding_works_with_postgres_protocols_client_and_ours() {
    let end_point = [7u8; 32];
    // postgres-protocol's client, an independent implementation of RFC 5929 binding.
    let mut client = ScramSha256::new(
        b"secret",
        ChannelBinding::tls_server_end_point(end_point.to_vec()),
    );
    let (server, server_first) = ScramServer::with_channel_binding(
        secret(),
        client.message(),
        b"0123456789abcdefgh",
        Some((true, &end_point)),
    )
    .unwrap();
    client.update(&server_first).unwrap();
    let outcome = server.finish(client.message()).unwrap();
    client.finish(&outcome.server_final).unwrap();
    // Ours, and a client that bound a different certificate (a man in the middle).
    for (data, ok) in [(end_point, true), ([8u8; 32], false)] {
        let (mut client, first) = ScramClient::with_channel_binding(
            ScramCredentials::Password(b"secret".to_vec()),
            b"client-nonce",
            Some(&data),
        );
        let (server, server_first) =
            ScramServer::with_channel_binding(secret(), &first, b"r", Some((true, &end_point)))
                .unwrap();
        let last = client.handle_server_first(&server_first).unwrap();
        let r = server.finish(&last);
        if ok {
            client
                .verify_server_final(&r.unwrap().server_final)
                .unwrap();
        } else {
            assert_eq!(r.unwrap_err(), ScramError::InvalidChannelBinding);
        }
    }
}

#[test]
fn channel_binding_negotiation_errors_follow_postgres() {
    let data = [1u8; 32];
    let offer = |plus: bool, first: &[u8]| {
        ScramServer::with_channel_binding(secret(), first, b"r", Some((plus, &data)))
            .map(|_| ())
            .unwrap_err()
    };
    // "y": the client supports binding but did not see our offer.
    assert_eq!(
        offer(false, b"y,,n=,r=abc"),
        ScramError::ChannelBindingDowngrade
    );
    // -PLUS chosen without binding, binding without -PLUS, another binding type.
    assert_eq!(
        offer(true, b"n,,n=,r=abc"),
        ScramError::ChannelBindingMechanismMismatch
    );
    assert_eq!(
        offer(false, b"p=tls-server-end-point,,n=,r=abc"),
        ScramError::ChannelBindingMechanismMismatch
    );
    assert_eq!(
        offer(true, b"p=tls-unique,,n=,r=abc"),
        ScramError::ChannelBindingMechanismMismatch
    );
    // Plain SCRAM with "n" is fine when -PLUS was offered.
    assert!(ScramServer::with_channel_binding(
        secret(),
        b"n,,n=,r=abc",
        b"r",
        Some((false, &data))
    )
    .is_ok());
}

#[test]
fn postgres_protocol_client_with_wrong_password_is_rejected() {
    let mut client = ScramSha256::new(b"nope", ChannelBinding::unsupported());
    let (server, server_first) = ScramServer::new(secret(), client.message(), b"r").unwrap();
    client.update(&server_first).unwrap();
    assert_eq!(
        server.finish(client.message()),
        Err(ScramError::InvalidProof)
    );
}

fn first_error(client_first: &[u8]) -> ScramError {
    ScramServer::new(secret(), client_first, b"r").unwrap_err()
}

#[test]
fn server_rejects_bad_client_first_messages() {
    assert_eq!(
        first_error(b"p=tls-server-end-point,,n=,r=abc"),
        ScramError::ChannelBindingNotSupported
    );
    assert_eq!(
        first_error(b"n,a=bob,n=,r=abc"),
        ScramError::AuthzidNotSupported
    );
    assert_eq!(
        first_error(b"n,,m=ext,n=,r=abc"),
        ScramError::ExtensionsNotSupported
    );
    assert_eq!(
        first_error(b"n,,n=,r=abc,x=1"),
        ScramError::ExtensionsNotSupported
    );
    assert_eq!(first_error(b"n,,n=,r=a\x01c"), ScramError::InvalidNonce);
    assert_eq!(first_error(b"n,,n=,r="), ScramError::InvalidNonce);
    assert_eq!(
        first_error(b"n,,n="),
        ScramError::MissingAttribute { attr: 'r' }
    );
    assert_eq!(first_error(b"x,,n=,r=abc"), ScramError::InvalidGs2Header);
    assert_eq!(first_error(b""), ScramError::InvalidGs2Header);
    assert_eq!(first_error(b"n,,n=,r=\xff"), ScramError::InvalidUtf8);
    let long_nonce = format!("n,,n=,r={}", "a".repeat(600));
    assert_eq!(
        first_error(long_nonce.as_bytes()),
        ScramError::NonceTooLong { len: 600 }
    );
    assert_eq!(
        first_error(&[b'n'; 2000]),
        ScramError::MessageTooLong { len: 2000 }
    );
}

#[test]
fn server_rejects_bad_client_final_messages() {
    let finish = |client_final: &str| {
        let (server, _) = ScramServer::new(secret(), b"n,,n=,r=abc", b"r").unwrap();
        server.finish(client_final.as_bytes()).unwrap_err()
    };
    let nonce = format!("abc{}", STANDARD.encode(b"r"));
    let proof = STANDARD.encode([0u8; 32]);
    assert_eq!(
        finish(&format!("c=eSws,r={nonce},p={proof}")),
        ScramError::InvalidChannelBinding
    );
    assert_eq!(
        finish(&format!("c=biws,r=abcX,p={proof}")),
        ScramError::NonceMismatch
    );
    assert_eq!(
        finish(&format!("c=biws,r={nonce}")),
        ScramError::MissingAttribute { attr: 'p' }
    );
    assert_eq!(
        finish(&format!("c=biws,r={nonce},p=!!")),
        ScramError::InvalidProof
    );
    assert_eq!(
        finish(&format!("c=biws,r={nonce},p={proof}")),
        ScramError::InvalidProof
    );
}

#[test]
fn client_rejects_bad_server_first_messages() {
    let handle = |server_first: &str| {
        let (mut client, _) = ScramClient::new(ScramCredentials::Password(vec![]), b"abc");
        client
            .handle_server_first(server_first.as_bytes())
            .unwrap_err()
    };
    // base64("abc") is "YWJj".
    assert_eq!(handle("r=XXXXzz,s=QQ==,i=1"), ScramError::NonceMismatch);
    assert_eq!(handle("r=YWJj,s=QQ==,i=1"), ScramError::NonceMismatch);
    assert_eq!(
        handle("r=YWJjzz,s=QQ==,i=0"),
        ScramError::IterationsOutOfRange { iterations: 0 }
    );
    assert_eq!(
        handle("r=YWJjzz,s=QQ==,i=20000000"),
        ScramError::IterationsOutOfRange {
            iterations: 20_000_000
        }
    );
    assert_eq!(
        handle("r=YWJjzz,s=QQ==,i=-1"),
        ScramError::InvalidAttribute { attr: 'i' }
    );
    assert_eq!(
        handle("r=YWJjzz,s=,i=1"),
        ScramError::InvalidAttribute { attr: 's' }
    );
    assert_eq!(
        handle("m=x,r=YWJjzz,s=QQ==,i=1"),
        ScramError::ExtensionsNotSupported
    );
    assert_eq!(
        handle("r=YWJjzz,s=QQ=="),
        ScramError::MissingAttribute { attr: 'i' }
    );
}

#[test]
fn client_reports_server_errors_and_out_of_order_messages() {
    let (mut client, first) =
        ScramClient::new(ScramCredentials::Password(b"secret".to_vec()), b"n");
    assert_eq!(
        client.verify_server_final(b"v=x"),
        Err(ScramError::UnexpectedMessage)
    );
    let (_, server_first) = ScramServer::new(secret(), &first, b"r").unwrap();
    client.handle_server_first(&server_first).unwrap();
    assert_eq!(
        client.handle_server_first(&server_first),
        Err(ScramError::UnexpectedMessage)
    );
    assert_eq!(
        client.verify_server_final(b"e=invalid-proof"),
        Err(ScramError::ServerError {
            message: "invalid-proof".into()
        })
    );
    assert_eq!(
        client.verify_server_final(b"v=AAAA"),
        Err(ScramError::InvalidAttribute { attr: 'v' })
    );
}

#[test]
fn non_utf8_and_saslprep_rejected_passwords_are_used_raw() {
    // Not UTF-8, and a prohibited character (U+0007): both hashed as given, like PostgreSQL.
    for password in [&b"\xff\xfe"[..], "a\u{7}b".as_bytes()] {
        let s = ScramSecret::from_password(password, b"salt", 2);
        login(&s, ScramCredentials::Password(password.to_vec())).unwrap();
    }
    // SASLprep maps U+00A0 (no-break space) to a space.
    let s = ScramSecret::from_password("a\u{a0}b".as_bytes(), b"salt", 2);
    assert_eq!(s, ScramSecret::from_password(b"a b", b"salt", 2));
}

#[test]
fn a_mock_secret_is_stable_per_user_and_admits_no_password() {
    let key = [7u8; 32];
    let a = ScramSecret::mock(&key, "alice", 4096);
    assert_eq!(a, ScramSecret::mock(&key, "alice", 4096));
    assert_eq!(a.iterations, 4096);
    assert_eq!(a.salt.len(), 16);
    let b = ScramSecret::mock(&key, "bob", 4096);
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.salt, ScramSecret::mock(&[8u8; 32], "alice", 4096).salt);
    for password in [&b""[..], b"alice", b"secret"] {
        assert!(login(&a, ScramCredentials::Password(password.to_vec())).is_err());
    }
}
