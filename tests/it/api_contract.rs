//! The API contract, checked from outside: schemathesis (`--checks all`: server errors, status codes, content
//! types, response schemas, negative data rejected, positive data accepted, auth enforced, unsupported methods...)
//! against the OpenAPI document the real binary serves, with bounded examples, on loopback. Any finding fails the
//! test with schemathesis' report. The one declared exception is in `tests/it/schemathesis.toml`.

use std::path::Path;
use std::process::Command;

use crate::support::app::{ADMIN_TOKEN, CATALOG_TOKEN};
use crate::support::service_process::{ServiceOptions, ServiceProcess};

/// The pinned version `scripts/install-deps.sh --for-tests` installs.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Test cases per operation and phase: enough to find contract gaps, bounded for CI.
const MAX_EXAMPLES: &str = "30";

#[tokio::test]
async fn schemathesis_with_all_checks_finds_nothing_in_the_served_openapi_document() {
    let version = Command::new("schemathesis").arg("--version").output().unwrap_or_else(|err| {
        panic!(
            "schemathesis not found ({err}): run scripts/install-deps.sh --for-tests \
             (pip install schemathesis=={SCHEMATHESIS_VERSION})"
        )
    });
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(version.contains(SCHEMATHESIS_VERSION), "schemathesis {SCHEMATHESIS_VERSION} expected, found {version}");

    let dir = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(dir.path(), &ServiceOptions::in_dir(dir.path())).await;
    // The tickets tests/it/schemathesis.toml names, so the ticket routes are exercised past 404.
    let client = reqwest::Client::new();
    for n in 1..=3 {
        let ticket = crate::support::app::sample_ticket(&format!("contract-{n}"), &service.media);
        let response =
            client.post(service.url("/api/v1/ticket")).bearer_auth(CATALOG_TOKEN).json(&ticket).send().await.unwrap();
        assert_eq!(response.status(), 201);
    }

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/schemathesis.toml");
    let report = dir.path().join("schemathesis");
    let output = tokio::process::Command::new("schemathesis")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        // One worker: CPython 3.11's AST code that hypothesis calls is not thread-safe ("AST constructor recursion
        // depth mismatch", a tool error, not a finding, seen with two workers).
        .args(["--checks", "all", "--max-examples", MAX_EXAMPLES, "--workers", "1"])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--url", &service.base])
        .arg("--report-dir")
        .arg(&report)
        .arg(service.url("/api/v1/openapi.json"))
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Vec<&str> = stdout.lines().rev().take(12).collect();
    println!("schemathesis: {}", summary.into_iter().rev().collect::<Vec<_>>().join("\n"));
    assert!(output.status.success(), "schemathesis found problems:\n{stdout}\n{stderr}");
    assert!(stdout.contains("passed"), "schemathesis ran no test case:\n{stdout}");
    assert!(!service.log_text().contains("panicked"), "the service panicked:\n{}", service.log_text());
}
