//! Starting the app as an operator would: a bad flag or models file stops it at once, with the
//! flag or the field named, before it listens.

use std::process::Command;

fn chat(models: &std::path::Path, gateway: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mcpgate-chat"))
        .args(["--listen", "127.0.0.1:0", "--gateway", gateway])
        .args(["--app-url", "http://localhost:18080/chat", "--models"])
        .arg(models)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("runs")
}

fn models_file(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    let path = dir.join("models.yaml");
    std::fs::write(&path, yaml).expect("write");
    path
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpgate-chat-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[test]
fn a_gateway_that_is_not_an_http_url_is_refused() {
    let dir = scratch("gateway");
    let models = models_file(
        &dir,
        "models: [{id: m, label: M, api: responses, base_url: 'http://127.0.0.1:9/v1'}]\n",
    );
    let output = chat(&models, "localhost:18080");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--gateway"), "{stderr}");
}

#[test]
fn a_models_file_with_an_unknown_api_names_the_field() {
    let dir = scratch("api");
    let models = models_file(
        &dir,
        "models: [{id: m, label: M, api: completions, base_url: 'http://127.0.0.1:9/v1'}]\n",
    );
    let output = chat(&models, "http://localhost:18080");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("api"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn a_missing_models_file_is_named() {
    let dir = scratch("missing");
    let output = chat(&dir.join("absent.yaml"), "http://localhost:18080");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("absent.yaml"), "{stderr}");
}
