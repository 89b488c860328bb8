//! The real `downloader2` binary as a user runs it: tickets and history survive a SIGKILL, a restart removes the
//! verification evidence of finished tickets, start-up errors are one clear line and a non-zero exit, tokens are
//! generated (mode 0600) when none are configured, `check-config` redacts secrets.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::app::{sample_ticket, ADMIN_TOKEN, CATALOG_TOKEN};
use crate::support::service_process::{write_config, ServiceOptions, ServiceProcess, BINARY};

/// Runs the binary to completion and returns (success, stderr).
fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(BINARY).args(args).envs(envs.iter().copied()).stdin(Stdio::null()).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn tickets_and_history_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions::in_dir(dir.path());
    let client = reqwest::Client::new();

    let mut service = ServiceProcess::start(dir.path(), &options).await;
    for n in 0..3 {
        let ticket = sample_ticket(&format!("persist-{n}"), &service.media);
        let response =
            client.post(service.url("/api/v1/ticket")).bearer_auth(CATALOG_TOKEN).json(&ticket).send().await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let response =
        client.delete(service.url("/api/v1/ticket/persist-1")).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let before = service.get_json(&client, "/api/v1/ticket/persist-1", CATALOG_TOKEN).await;

    service.kill(); // SIGKILL: no graceful shutdown, no WAL checkpoint.

    let service = ServiceProcess::start(dir.path(), &options).await;
    let list = service.get_json(&client, "/api/v1/tickets", CATALOG_TOKEN).await;
    assert_eq!(list["total"], 3);
    let after = service.get_json(&client, "/api/v1/ticket/persist-1", CATALOG_TOKEN).await;
    assert_eq!(after, before, "ticket, state and history are identical after the restart");
    assert_eq!(after["history"].as_array().unwrap().len(), 2);
    assert_eq!(after["state"]["state"], "cancelled");
}

/// A process killed between a ticket's terminal transition and the removal of its evidence leaves spectrograms
/// behind; the next start removes those of finished and unknown tickets and keeps a live ticket's.
#[tokio::test]
async fn verification_evidence_of_finished_or_unknown_tickets_is_removed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut service = ServiceProcess::start(dir.path(), &ServiceOptions::in_dir(dir.path())).await;
    for id in ["evidence-live", "evidence-cancelled"] {
        let ticket = sample_ticket(id, &service.media);
        let response =
            client.post(service.url("/api/v1/ticket")).bearer_auth(CATALOG_TOKEN).json(&ticket).send().await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let response = client
        .delete(service.url("/api/v1/ticket/evidence-cancelled"))
        .bearer_auth(CATALOG_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    service.kill();

    // `[converter] temp_dir` defaults to `<data dir>/work`; evidence lives in its `d2-evidence/<ticket id>/`.
    let evidence_root = dir.path().join("data/work/d2-evidence");
    for id in ["evidence-live", "evidence-cancelled", "evidence-unknown"] {
        std::fs::create_dir_all(evidence_root.join(id)).unwrap();
        std::fs::write(evidence_root.join(id).join("0123-0.png"), b"\x89PNG").unwrap();
    }
    let options = ServiceOptions { paused: false, ..ServiceOptions::in_dir(dir.path()) };
    let service = ServiceProcess::start(dir.path(), &options).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !service.log_text().contains("removed the verification evidence of finished tickets") {
        assert!(Instant::now() < deadline, "no start-up clean-up logged: {}", service.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!evidence_root.join("evidence-cancelled").exists(), "a cancelled ticket's evidence is removed");
    assert!(!evidence_root.join("evidence-unknown").exists(), "evidence of a ticket the database does not know");
    assert!(evidence_root.join("evidence-live/0123-0.png").is_file(), "a live ticket keeps its evidence");
}

#[tokio::test]
async fn tokens_are_generated_on_first_start_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions { with_tokens: false, ..ServiceOptions::in_dir(dir.path()) };
    let client = reqwest::Client::new();

    let mut service = ServiceProcess::start(dir.path(), &options).await;
    let token_file = dir.path().join("data/tokens.toml");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file must be private");
    let tokens: toml::Table = toml::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    let catalog = tokens["catalog"].as_str().unwrap().to_string();
    let admin = tokens["admin"].as_str().unwrap().to_string();
    assert!(catalog.len() >= 32 && admin.len() >= 32 && catalog != admin);

    let tickets = service.url("/api/v1/tickets");
    assert_eq!(client.get(&tickets).send().await.unwrap().status(), 401, "never starts open");
    assert_eq!(client.get(&tickets).bearer_auth(&catalog).send().await.unwrap().status(), 200);
    let config_url = service.url("/api/v1/config");
    assert_eq!(client.get(&config_url).bearer_auth(&catalog).send().await.unwrap().status(), 403);
    assert_eq!(client.get(&config_url).bearer_auth(&admin).send().await.unwrap().status(), 200);
    service.kill();

    let service = ServiceProcess::start(dir.path(), &options).await;
    let tickets = service.url("/api/v1/tickets");
    assert_eq!(client.get(&tickets).bearer_auth(&catalog).send().await.unwrap().status(), 200, "same tokens");
}

#[tokio::test]
async fn start_up_errors_are_one_clear_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (config, port, _) = write_config(dir.path(), &ServiceOptions::in_dir(dir.path()));
    // Port in use.
    let busy = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (ok, stderr) = run_to_exit(&["serve", "--config", config.to_str().unwrap()], &[("RUST_LOG", "off")]);
    assert!(!ok);
    assert!(stderr.contains("cannot listen on 127.0.0.1:"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // Database directory that cannot be created (its parent is a regular file).
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let db = blocker.join("sub/downloader2.db");
    let (ok, stderr) = run_to_exit(
        &["serve", "--config", config.to_str().unwrap()],
        &[("RUST_LOG", "off"), ("DOWNLOADER2_DATABASE_PATH", db.to_str().unwrap())],
    );
    assert!(!ok);
    assert!(stderr.contains("cannot open database") && stderr.contains("not-a-dir"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // Invalid configuration.
    let (ok, stderr) = run_to_exit(
        &["serve", "--config", config.to_str().unwrap()],
        &[("RUST_LOG", "off"), ("DOWNLOADER2_MATCHER_AUTO_APPROVE_THRESHOLD", "7")],
    );
    assert!(!ok);
    assert!(stderr.contains("matcher.auto_approve_threshold"), "{stderr}");
    let (ok, stderr) = run_to_exit(&["serve", "--config", "/nonexistent/downloader2.toml"], &[("RUST_LOG", "off")]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/downloader2.toml"), "{stderr}");
    drop(busy);
}

#[test]
fn check_config_prints_the_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let (config, port, _) = write_config(dir.path(), &ServiceOptions::in_dir(dir.path()));
    let output = Command::new(BINARY)
        .args(["check-config", "--config", config.to_str().unwrap()])
        .env("DOWNLOADER2_JACKETT_API_KEY", "super-secret-jackett-key")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    for secret in [CATALOG_TOKEN, ADMIN_TOKEN, "super-secret-jackett-key"] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    let printed: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(printed["server"]["port"].as_integer(), Some(i64::from(port)));
    assert_eq!(printed["jackett"]["api_key"].as_str(), Some("<redacted>"));
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_request_spans() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions {
        global_args: &["--log-format", "json"],
        envs: &[("RUST_LOG", "info,tower_http=debug")],
        ..ServiceOptions::in_dir(dir.path())
    };
    let client = reqwest::Client::new();
    let mut service = ServiceProcess::start(dir.path(), &options).await;
    let ticket = sample_ticket("log-1", &service.media);
    let response =
        client.post(service.url("/api/v1/ticket")).bearer_auth(CATALOG_TOKEN).json(&ticket).send().await.unwrap();
    assert_eq!(response.status(), 201);
    service.kill();
    let stderr = service.log_text();
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}")))
        .collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "downloader2 listening"), "{stderr}");
    let created = lines.iter().find(|l| l["fields"]["message"] == "ticket created").expect("a 'ticket created' line");
    assert_eq!(created["span"]["ticket_id"], "log-1", "the ticket's span carries its id: {created}");
    assert!(!stderr.contains(CATALOG_TOKEN), "tokens never logged");
}

#[tokio::test]
async fn managed_qbittorrent_starts_with_serve_and_stops_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // No [qbittorrent] url: serve must start its own qbittorrent-nox from nothing.
    let options = ServiceOptions {
        envs: &[("DOWNLOADER2_QBITTORRENT_URL", ""), ("DOWNLOADER2_QBITTORRENT_MANAGED_LOOPBACK_ONLY", "true")],
        ..ServiceOptions::in_dir(dir.path())
    };
    let client = reqwest::Client::new();
    let mut service = ServiceProcess::start(dir.path(), &options).await;
    let profile = dir.path().join("data/qbittorrent");
    let nox_pid = find_process_with_arg(&format!("--profile={}", profile.display()))
        .expect("a qbittorrent-nox with the service's private profile (apt-get install qbittorrent-nox)");
    let conf = std::fs::read_to_string(profile.join("qBittorrent/config/qBittorrent.conf")).unwrap();
    let webui_port: u16 = conf
        .lines()
        .find_map(|line| line.strip_prefix("WebUI\\Port="))
        .expect("WebUI port in the generated qBittorrent.conf")
        .trim()
        .parse()
        .unwrap();
    let answer = client.get(format!("http://127.0.0.1:{webui_port}/api/v2/app/version")).send().await.unwrap();
    assert_eq!(answer.status(), 403, "the managed WebUI answers and requires a login");

    // SIGTERM: the service shuts down and takes qbittorrent-nox with it.
    let pid = i32::try_from(service.pid()).unwrap();
    assert_eq!(send_signal(pid, 15), 0);
    let status = service.child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(nox_pid) {
        assert!(Instant::now() < deadline, "qbittorrent-nox {nox_pid} still running after the service stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pid of a running process one of whose arguments is exactly `wanted`.
fn find_process_with_arg(wanted: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        cmdline.split(|b| *b == 0).any(|arg| arg == wanted.as_bytes()).then_some(pid)
    })
}

/// Alive and not a zombie.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn send_signal(pid: i32, signal: i32) -> i32 {
    // The `kill` program: no unsafe code (the crate forbids it).
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    if status.success() {
        0
    } else {
        -1
    }
}

#[test]
fn match_command_prints_the_decision_and_rejects_bad_input() {
    let case =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/matching-dev/cases/001-portishead-dummy.json");
    assert!(case.exists(), "the shared matching cases must sit beside the repository: {}", case.display());
    let output = Command::new(BINARY).arg("match").arg(&case).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let input: Value = serde_json::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
    assert!(["auto_approve", "needs_approval", "no_candidates"].contains(&printed["decision"].as_str().unwrap()));
    let candidates = printed["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), input["candidates"].as_array().unwrap().len());
    for candidate in candidates {
        let idx = usize::try_from(candidate["idx"].as_u64().unwrap()).unwrap();
        let files: Vec<&str> = input["candidates"][idx]["files"]
            .as_array()
            .map(|files| files.iter().map(|f| f["path"].as_str().unwrap()).collect())
            .unwrap_or_default();
        for mapping in candidate["track_mapping"].as_array().unwrap() {
            let path = mapping["torrent_file_path"].as_str().unwrap();
            let image = path.rsplit_once('#').map(|(image, _)| image).unwrap_or(path);
            assert!(files.contains(&path) || files.contains(&image), "{path} is not a file of candidate {idx}");
        }
    }
    // --threshold 1.0 can only auto-approve a perfect score.
    let strict = Command::new(BINARY).args(["match", "--threshold", "1.0"]).arg(&case).output().unwrap();
    let strict: Value = serde_json::from_slice(&strict.stdout).unwrap();
    assert!(strict["decision"] != "auto_approve" || strict["confidence"].as_f64() == Some(1.0));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"ticket": 3, "candidates": []}"#).unwrap();
    let output = Command::new(BINARY).arg("match").arg(&bad).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ticket") && stderr.lines().count() == 1, "{stderr}");
}
