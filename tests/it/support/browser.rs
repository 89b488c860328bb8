//! A real headless Chromium driven over WebDriver: Debian's `chromedriver` started on a free loopback port, and a
//! `fantoccini` client on it. Chromium runs with a fresh profile and with its background networking off (this
//! machine has no internet; the page under test must need none). Dropping the browser kills chromedriver and the
//! Chromium it started (one process group).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use super::swarm::{free_port, require_program, wait_for};

/// How long a UI expectation may take to come true.
pub const UI_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a 1400x1000 window.
    pub async fn start() -> Browser {
        let chromium = require_program("chromium", "chromium");
        let chromedriver = require_program("chromedriver", "chromium-driver");
        let profile = tempfile::tempdir().unwrap();
        let log_path = profile.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver (apt-get install -y chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver to listen", Duration::from_secs(30), || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        })
        .await;
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-extensions".to_string(),
            "--window-size=1400,1000".to_string(),
            format!("--user-data-dir={}", profile.path().join("chromium").display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_string(), json!({ "binary": chromium, "args": args }));
        // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap_or_else(|err| panic!("no Chromium session from chromedriver: {err}"));
        Browser { client, driver, _profile: profile }
    }

    /// Waits until `css` matches an element.
    pub async fn element(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(UI_TIMEOUT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no element {css} within {UI_TIMEOUT:?}: {err}"))
    }

    /// Runs a script in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// Waits until `script` (an expression) is truthy in the page; returns its value.
    pub async fn wait_until(&self, what: &str, expression: &str) -> Value {
        let script = format!("return ({expression}) || null;");
        wait_for(what, UI_TIMEOUT, || async {
            let value = self.eval(&script).await;
            (!value.is_null()).then_some(value)
        })
        .await
    }

    /// The text of the first element matching `css` (empty when there is none).
    pub async fn text_of(&self, css: &str) -> String {
        let script = format!("const e = document.querySelector({}); return e ? e.textContent : '';", json!(css));
        self.eval(&script).await.as_str().unwrap_or_default().to_string()
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
