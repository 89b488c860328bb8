//! The packaging files checked with the real `docker-compose` (its `config` command renders and validates the compose
//! file without a Docker engine): the stack has its three services wired to each other, downloader2's environment is
//! a valid configuration, the downloads volume is shared at one path, and the Dockerfile runs unprivileged with a
//! health check and a locked build. Never builds an image or starts a container (no network, no engine).

use std::path::PathBuf;
use std::process::Command;

use downloader2::Config;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `docker-compose -f docker/docker-compose.yml config` with the documented variables set to distinct values.
fn rendered_compose(vars: &[(&str, &str)]) -> Yaml {
    let mut command = Command::new("docker-compose");
    command.current_dir(repo()).args(["-f", "docker/docker-compose.yml", "config"]);
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().unwrap_or_else(|err| {
        panic!("cannot run docker-compose ({err}): apt-get install docker-compose (scripts/install-deps.sh does)")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "docker-compose config rejected docker/docker-compose.yml ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut docs = YamlLoader::load_from_str(&stdout).unwrap();
    assert_eq!(docs.len(), 1, "one rendered document:\n{stdout}");
    docs.remove(0)
}

fn environment(service: &Yaml) -> Vec<(String, String)> {
    let env = service["environment"].as_hash().expect("environment as a mapping");
    env.iter()
        .map(|(k, v)| {
            let value = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                other => panic!("environment value {other:?}"),
            };
            (k.as_str().unwrap().to_string(), value)
        })
        .collect()
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{name} is not set"))
}

/// `(volume, container path)` of each `volume:/path[:mode]` mount.
fn mounts(service: &Yaml) -> Vec<(String, String)> {
    service["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .map(|entry| {
            let parts: Vec<&str> = entry.as_str().expect("short volume syntax").split(':').collect();
            (parts[0].to_string(), parts[1].to_string())
        })
        .collect()
}

/// Container ports a service publishes (long `target:` form or short `host:container[/proto]` form).
fn container_ports(service: &Yaml) -> Vec<u16> {
    service["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .map(|entry| match entry {
            Yaml::Hash(_) => u16::try_from(entry["target"].as_i64().unwrap()).unwrap(),
            Yaml::String(short) => {
                let last = short.rsplit(':').next().unwrap();
                last.split('/').next().unwrap().parse().unwrap()
            }
            other => panic!("port entry {other:?}"),
        })
        .collect()
}

/// `(host, port)` of an `http://host:port` URL.
fn host_port(url: &str) -> (String, u16) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("{url} is not http://"));
    let (host, port) = rest.trim_end_matches('/').split_once(':').unwrap_or_else(|| panic!("{url} has no port"));
    (host.to_string(), port.parse().unwrap())
}

#[test]
fn compose_stack_renders_wires_services_and_shares_downloads() {
    let jackett_key = "jackett-key-from-dot-env";
    let qbt_user = "qbt-user-from-dot-env";
    let qbt_password = "qbt-password-from-dot-env";
    let auth = "catalog-token-0123456789";
    let admin = "admin-token-0123456789ab";
    let doc = rendered_compose(&[
        ("JACKETT_API_KEY", jackett_key),
        ("QBITTORRENT_USERNAME", qbt_user),
        ("QBITTORRENT_PASSWORD", qbt_password),
        ("DOWNLOADER2_AUTH_TOKEN", auth),
        ("DOWNLOADER2_ADMIN_TOKEN", admin),
    ]);
    let services = doc["services"].as_hash().expect("services");
    let mut names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["downloader2", "jackett", "qbittorrent"]);
    let d2 = &doc["services"]["downloader2"];
    let jackett = &doc["services"]["jackett"];
    let qbt = &doc["services"]["qbittorrent"];
    assert!(jackett["image"].as_str().unwrap().starts_with("lscr.io/linuxserver/jackett"));
    assert!(qbt["image"].as_str().unwrap().starts_with("lscr.io/linuxserver/qbittorrent"));
    assert_eq!(d2["build"]["dockerfile"].as_str(), Some("docker/Dockerfile"));

    let env = environment(d2);
    // The secrets come from the variables documented in docker/example.env.
    assert_eq!(env_value(&env, "DOWNLOADER2_JACKETT_API_KEY"), jackett_key);
    assert_eq!(env_value(&env, "DOWNLOADER2_QBITTORRENT_USERNAME"), qbt_user);
    assert_eq!(env_value(&env, "DOWNLOADER2_QBITTORRENT_PASSWORD"), qbt_password);
    assert_eq!(env_value(&env, "DOWNLOADER2_SERVER_AUTH_TOKEN"), auth);
    assert_eq!(env_value(&env, "DOWNLOADER2_SERVER_ADMIN_TOKEN"), admin);

    // downloader2's environment alone is a configuration the service accepts (every name is a real key).
    let config = Config::load_with_env(None, &env)
        .unwrap_or_else(|err| panic!("downloader2's compose environment is not a valid configuration: {err}"));

    // Jackett and qBittorrent are reached by service name on the port their container listens on.
    let (host, port) = host_port(&config.jackett.url);
    assert_eq!(host, "jackett");
    assert!(container_ports(jackett).contains(&port), "Jackett does not publish container port {port}");
    let (host, port) = host_port(&config.qbittorrent.url);
    assert_eq!(host, "qbittorrent");
    assert_eq!(env_value(&environment(qbt), "WEBUI_PORT"), port.to_string(), "qBittorrent's WebUI port");

    // The health check and the published port reach the API: it listens on all interfaces of the container, on the
    // port the compose file publishes; the database is inside a volume.
    assert_eq!(config.server.host, "0.0.0.0");
    assert!(container_ports(d2).contains(&config.server.port), "downloader2's API port is not published");
    let d2_mounts = mounts(d2);
    let db = &config.database.path;
    assert!(
        d2_mounts.iter().any(|(_, target)| db.starts_with(target)),
        "database {} is not on a volume: {d2_mounts:?}",
        db.display()
    );

    // One downloads volume, at the same path in both containers, and that path is downloader2's download_path.
    let download_path = config.qbittorrent.download_path.to_str().unwrap().to_string();
    assert!(!download_path.is_empty(), "DOWNLOADER2_QBITTORRENT_DOWNLOAD_PATH must be set");
    let d2_volume = d2_mounts
        .iter()
        .find(|(_, target)| *target == download_path)
        .unwrap_or_else(|| panic!("downloader2 does not mount {download_path}: {d2_mounts:?}"));
    let qbt_mounts = mounts(qbt);
    assert!(
        qbt_mounts.contains(d2_volume),
        "qBittorrent must mount volume {} at {download_path}: {qbt_mounts:?}",
        d2_volume.0
    );
    assert!(doc["volumes"][d2_volume.0.as_str()].as_hash().is_some(), "{} is a named volume", d2_volume.0);

    // Every allowed root is a mount (the music library), distinct from the downloads.
    for root in &config.placer.allowed_roots {
        let root = root.to_str().unwrap();
        assert!(d2_mounts.iter().any(|(_, target)| target == root), "allowed root {root} is not mounted");
        assert_ne!(root, download_path);
    }

    // qBittorrent and Jackett write as the uid/gid downloader2 runs as in the image.
    let dockerfile = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let id_after = |flag: &str| {
        dockerfile
            .split_whitespace()
            .skip_while(|word| *word != flag)
            .nth(1)
            .unwrap_or_else(|| panic!("the Dockerfile creates its user and group with a fixed {flag}"))
            .to_string()
    };
    let (uid, gid) = (id_after("--uid"), id_after("--gid"));
    for service in [qbt, jackett] {
        let env = environment(service);
        assert_eq!(env_value(&env, "PUID"), uid);
        assert_eq!(env_value(&env, "PGID"), gid);
    }
}

#[test]
fn dockerfile_runs_unprivileged_with_health_check_and_locked_build() {
    let text = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let instructions: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let final_stage = instructions.iter().rposition(|l| l.starts_with("FROM ")).expect("a FROM instruction");
    assert!(final_stage > 0 && instructions.iter().filter(|l| l.starts_with("FROM ")).count() >= 2, "multi-stage");

    let build = instructions.iter().find(|l| l.contains("cargo build")).expect("a cargo build step");
    assert!(build.contains("--locked") && build.contains("--release"), "{build}");
    // CI builds the very same release binary (no container engine runs there).
    let cargo_build = &build[build.find("cargo build").unwrap()..];
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|line| line.trim() == cargo_build), ".ci/run does not run `{cargo_build}`");

    let users: Vec<&str> = instructions[final_stage..].iter().filter_map(|l| l.strip_prefix("USER ")).collect();
    let user = users.last().expect("the runtime stage sets USER").trim();
    assert!(!["root", "0", "0:0", "root:root"].contains(&user), "runs as {user}");

    let health = text.find("HEALTHCHECK").expect("a HEALTHCHECK");
    let health_text = &text[health..text[health..].find("\n\n").map_or(text.len(), |end| health + end)];
    assert!(health_text.contains("CMD"), "{health_text}");
    assert!(health_text.contains("/api/v1/health"), "{health_text}");
    // The program the check runs is installed in the runtime image.
    let checker = health_text.split("CMD").nth(1).unwrap().split_whitespace().next().unwrap();
    assert!(
        instructions[final_stage..]
            .iter()
            .any(|l| l.contains("apt-get install") && l.split_whitespace().any(|word| word == checker)),
        "{checker} is not installed in the runtime stage"
    );
    assert!(instructions.contains(&r#"ENTRYPOINT ["downloader2"]"#));
    assert!(instructions.iter().any(|l| l.starts_with("VOLUME") && l.contains("/data")));
}
