//! The real `downloader2` binary as a user runs it: tickets and history survive a SIGKILL, start-up errors are one
//! clear line and a non-zero exit, tokens are generated (mode 0600) when none are configured, `check-config`
//! redacts secrets.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::app::{sample_ticket, ADMIN_TOKEN, CATALOG_TOKEN, UNUSED_QBITTORRENT_URL};

const BINARY: &str = env!("CARGO_BIN_EXE_downloader2");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_config(dir: &Path, port: u16, with_tokens: bool) -> std::path::PathBuf {
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    let tokens = if with_tokens {
        format!("auth_token = \"{CATALOG_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n")
    } else {
        String::new()
    };
    let text = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = {port}\n{tokens}\n[database]\npath = \"{}\"\n\n[placer]\nallowed_roots = [\"{}\"]\n\n[qbittorrent]\nurl = \"{UNUSED_QBITTORRENT_URL}\"\n\n[processing]\npaused = true\n",
        dir.join("data/downloader2.db").display(),
        media.display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_serve(config: &Path) -> Child {
    Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/api/v1/health")).send().await {
            if response.status() == 200 {
                return;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("downloader2 exited early ({status}): {stderr}");
        }
        assert!(Instant::now() < deadline, "downloader2 did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the binary to completion and returns (success, stderr).
fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(BINARY).args(args).envs(envs.iter().copied()).stdin(Stdio::null()).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn tickets_and_history_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, true);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let mut child = spawn_serve(&config);
    wait_healthy(&client, &base, &mut child).await;
    for n in 0..3 {
        let ticket = sample_ticket(&format!("persist-{n}"), &dir.path().join("media"));
        let response =
            client.post(format!("{base}/api/v1/ticket")).bearer_auth(CATALOG_TOKEN).json(&ticket).send().await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let response =
        client.delete(format!("{base}/api/v1/ticket/persist-1")).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let before: Value = client
        .get(format!("{base}/api/v1/ticket/persist-1"))
        .bearer_auth(CATALOG_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    child.kill().unwrap(); // SIGKILL: no graceful shutdown, no WAL checkpoint.
    child.wait().unwrap();

    let mut child = spawn_serve(&config);
    wait_healthy(&client, &base, &mut child).await;
    let list: Value = client
        .get(format!("{base}/api/v1/tickets"))
        .bearer_auth(CATALOG_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 3);
    let after: Value = client
        .get(format!("{base}/api/v1/ticket/persist-1"))
        .bearer_auth(CATALOG_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after, before, "ticket, state and history are identical after the restart");
    assert_eq!(after["history"].as_array().unwrap().len(), 2);
    assert_eq!(after["state"]["state"], "cancelled");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn tokens_are_generated_on_first_start_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, false);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let mut child = spawn_serve(&config);
    wait_healthy(&client, &base, &mut child).await;
    let token_file = dir.path().join("data/tokens.toml");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file must be private");
    let tokens: toml::Table = toml::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    let catalog = tokens["catalog"].as_str().unwrap().to_string();
    let admin = tokens["admin"].as_str().unwrap().to_string();
    assert!(catalog.len() >= 32 && admin.len() >= 32 && catalog != admin);

    let tickets = format!("{base}/api/v1/tickets");
    assert_eq!(client.get(&tickets).send().await.unwrap().status(), 401, "never starts open");
    assert_eq!(client.get(&tickets).bearer_auth(&catalog).send().await.unwrap().status(), 200);
    let config_url = format!("{base}/api/v1/config");
    assert_eq!(client.get(&config_url).bearer_auth(&catalog).send().await.unwrap().status(), 403);
    assert_eq!(client.get(&config_url).bearer_auth(&admin).send().await.unwrap().status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();

    let mut child = spawn_serve(&config);
    wait_healthy(&client, &base, &mut child).await;
    assert_eq!(client.get(&tickets).bearer_auth(&catalog).send().await.unwrap().status(), 200, "same tokens");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn start_up_errors_are_one_clear_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    // Port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let config = write_config(dir.path(), port, true);
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
    let config = write_config(dir.path(), 8181, true);
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
    assert_eq!(printed["server"]["port"].as_integer(), Some(8181));
    assert_eq!(printed["jackett"]["api_key"].as_str(), Some("<redacted>"));
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_request_spans() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, true);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = Command::new(BINARY)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info,tower_http=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(&client, &base, &mut child).await;
    let ticket = sample_ticket("log-1", &dir.path().join("media"));
    let response =
        client.post(format!("{base}/api/v1/ticket")).bearer_auth(CATALOG_TOKEN).json(&ticket).send().await.unwrap();
    assert_eq!(response.status(), 201);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
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
    let port = free_port();
    let config = write_config(dir.path(), port, true);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // No [qbittorrent] url: serve must start its own qbittorrent-nox from nothing.
    let mut child = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env("DOWNLOADER2_QBITTORRENT_URL", "")
        .env("DOWNLOADER2_QBITTORRENT_MANAGED_LOOPBACK_ONLY", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(&client, &base, &mut child).await;
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
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(send_signal(pid, 15), 0);
    let status = child.wait().unwrap();
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
