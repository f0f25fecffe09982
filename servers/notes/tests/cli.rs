//! The binary's command line as an operator meets it: bad flags are refused with the flag named.

use std::process::Command;

fn notes() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcpgate-server-notes"));
    command
        .env_remove("NOTES_PROVIDER_API")
        .env_remove("NOTES_LISTEN")
        .env("NO_COLOR", "1");
    command
}

#[test]
fn the_provider_api_is_required() {
    let output = notes().output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--provider-api"), "{stderr}");
}

#[test]
fn a_listen_address_beyond_loopback_is_refused() {
    let output = notes()
        .args([
            "--listen",
            "0.0.0.0:0",
            "--provider-api",
            "http://127.0.0.1:9",
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("only loopback addresses are allowed"),
        "{stderr}"
    );
}

#[test]
fn an_issuer_without_a_route_url_is_refused() {
    let output = notes()
        .args([
            "--provider-api",
            "http://127.0.0.1:9",
            "--issuer",
            "http://localhost:18080",
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--route-url"), "{stderr}");
}
