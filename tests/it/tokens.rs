//! Tokens and private files on the real binary: `?token=` opens the WebSocket upgrade and nothing else; a
//! `tokens.toml` breaking the configuration's token rules (short, empty, identical) or readable by group/others is
//! refused at start-up with one clear line; the database and its `-wal`/`-shm` are created 0600, and an existing
//! world-readable database is made private.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::app::{sample_ticket, ADMIN_TOKEN, CATALOG_TOKEN};
use crate::support::service_process::{write_config, ServiceOptions, ServiceProcess, BINARY};

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn a_query_token_opens_the_websocket_upgrade_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let service = ServiceProcess::start(dir.path(), &ServiceOptions::in_dir(dir.path())).await;
    let client = reqwest::Client::new();
    for (path, token) in [
        ("/api/v1/tickets", CATALOG_TOKEN),
        ("/api/v1/stats", CATALOG_TOKEN),
        ("/api/v1/config", ADMIN_TOKEN),
        ("/metrics", ADMIN_TOKEN),
    ] {
        let response = client.get(service.url(&format!("{path}?token={token}"))).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} with ?token=");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("Authorization"), "{body}");
        let response = client.get(service.url(path)).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} with the header");
    }
    let ws = service.base.replace("http://", "ws://");
    let (_socket, response) =
        tokio_tungstenite::connect_async(format!("{ws}/api/v1/ws?token={CATALOG_TOKEN}")).await.unwrap();
    assert_eq!(response.status(), 101, "browsers' WebSocket authenticates with ?token=");
    let refused = tokio_tungstenite::connect_async(format!("{ws}/api/v1/ws?token=wrong-token-0123456789")).await;
    assert!(refused.is_err(), "a wrong query token is refused");
}

/// Starts `serve` with no tokens in the config (so `tokens.toml` is used) and returns (exited ok, stderr).
fn serve_with_token_file(dir: &Path, contents: &str, mode: u32) -> (bool, String) {
    let options = ServiceOptions { with_tokens: false, ..ServiceOptions::in_dir(dir) };
    let (config, _, _) = write_config(dir, &options);
    let token_file = dir.join("data/tokens.toml");
    std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    std::fs::write(&token_file, contents).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(mode)).unwrap();
    let output = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn token_files_that_break_the_rules_or_are_readable_by_others_are_refused_at_start_up() {
    let good_catalog = "c".repeat(40);
    let good_admin = "a".repeat(40);
    let cases = [
        (format!("catalog = \"x\"\nadmin = \"{good_admin}\"\n"), 0o600, "catalog must be at least 16 characters"),
        (format!("catalog = \"{good_catalog}\"\nadmin = \"\"\n"), 0o600, "admin is empty"),
        (
            format!("catalog = \"{good_catalog}\"\nadmin = \"{good_catalog}\"\n"),
            0o600,
            "admin must differ from catalog",
        ),
        (format!("catalog = \"{good_catalog}\"\nadmin = \"{good_admin}\"\n"), 0o644, "chmod 600"),
        (format!("catalog = \"{good_catalog}\"\nadmin = \"{good_admin}\"\n"), 0o640, "chmod 600"),
    ];
    for (contents, mode, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (ok, stderr) = serve_with_token_file(dir.path(), &contents, mode);
        assert!(!ok, "started with a bad token file ({expected})");
        assert!(stderr.contains("tokens.toml") && stderr.contains(expected), "{expected}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[tokio::test]
async fn the_database_and_its_wal_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions::in_dir(dir.path());
    let database = options.database.clone();
    let mut service = ServiceProcess::start(dir.path(), &options).await;
    let response = reqwest::Client::new()
        .post(service.url("/api/v1/ticket"))
        .bearer_auth(CATALOG_TOKEN)
        .json(&sample_ticket("private-1", &service.media))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", database.display());
        assert_eq!(mode_of(Path::new(&path)), 0o600, "{path}");
    }
    service.kill();

    // A database an older version left world-readable is made private at the next start.
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", database.display());
        if Path::new(&path).exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let _service = ServiceProcess::start(dir.path(), &options).await;
    assert_eq!(mode_of(&database), 0o600);
}
