//! A headless Chromium driven over W3C WebDriver (Debian's `chromium` and
//! `chromium-driver`), presenting an agency's client certificate to the gateway.
//!
//! Chromium reads client certificates from the NSS database in `$HOME/.pki/nssdb`, so
//! each browser gets a home of its own holding the agency's PKCS#12 bundle (imported with
//! `pk12util`) and the development CA as a trusted root (`certutil`). Headless Chromium
//! cannot ask which certificate to send: a managed policy `AutoSelectCertificateForUrls`
//! for the gateway's origin makes it choose the one there is. The policy file is removed
//! when the browser is dropped. The WebDriver protocol is a handful of JSON requests,
//! spoken here with reqwest rather than through another client crate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use liaison_core::AgencyCode;
use liaison_pki::PkiLayout;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const POLICY_DIR: &str = "/etc/chromium/policies/managed";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Fails with what to install when the browser or its tools are missing: a browser test
/// never skips silently.
pub fn require_tools() {
    for (tool, package) in [
        (CHROMEDRIVER, "chromium-driver"),
        (CHROMIUM, "chromium"),
        ("/usr/bin/pk12util", "libnss3-tools"),
        ("/usr/bin/certutil", "libnss3-tools"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the console's browser tests need Debian's `{package}` \
             (scripts/test installs it: apt-get install -y chromium chromium-driver libnss3-tools)"
        );
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One headless Chromium with one agency's certificate.
pub struct Browser {
    http: reqwest::Client,
    driver: Child,
    base: String,
    session: String,
    policy: PathBuf,
    _home: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser session whose client certificate is `agency`'s,
    /// for pages of `origin` (e.g. `https://127.0.0.1:8443`).
    pub async fn start(layout: &PkiLayout, agency: &AgencyCode, origin: &str) -> Browser {
        require_tools();
        let home = tempfile::tempdir().expect("browser home");
        let nssdb = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).expect("NSS directory");
        let db = format!("sql:{}", nssdb.display());
        run(Command::new("certutil").args(["-N", "-d", &db, "--empty-password"]));
        let password = "console-test";
        let bundle = home.path().join(format!("{agency}.p12"));
        std::fs::write(
            &bundle,
            liaison_pki::agency_pkcs12(layout, agency, password).expect("PKCS#12 bundle"),
        )
        .expect("write the bundle");
        run(Command::new("pk12util")
            .args(["-i"])
            .arg(&bundle)
            .args(["-d", &db, "-W", password]));
        run(Command::new("certutil")
            .args(["-A", "-d", &db, "-n", "liaison-ca", "-t", "C,,", "-i"])
            .arg(layout.ca_cert()));

        std::fs::create_dir_all(POLICY_DIR).unwrap_or_else(|e| {
            panic!("cannot create {POLICY_DIR} ({e}): the browser tests write a managed policy there, as root")
        });
        let port = free_port();
        let policy = Path::new(POLICY_DIR).join(format!("liaison-console-test-{port}.json"));
        let rule = json!({"pattern": origin, "filter": {}}).to_string();
        std::fs::write(
            &policy,
            json!({"AutoSelectCertificateForUrls": [rule]}).to_string(),
        )
        .unwrap_or_else(|e| panic!("cannot write {} ({e})", policy.display()));

        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        crate::eventually("chromedriver ready", Duration::from_secs(20), async || {
            let status = http.get(format!("{base}/status")).send().await.ok()?;
            let body: Value = status.json().await.ok()?;
            (body["value"]["ready"] == json!(true)).then_some(())
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session JSON");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            http,
            driver,
            base,
            session,
            policy,
            _home: home,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let value: Value = response.json().await.expect("WebDriver JSON");
        value["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        let answer = self.post("/url", json!({"url": url})).await;
        assert!(answer.is_null(), "navigating to {url}: {answer}");
    }

    pub async fn source(&self) -> String {
        self.get("/source")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element `css` selects, once it is there (waits up to 20 s).
    pub async fn find(&self, css: &str) -> String {
        crate::eventually(
            &format!("element {css}"),
            Duration::from_secs(20),
            async || {
                let found = self
                    .post("/element", json!({"using": "css selector", "value": css}))
                    .await;
                found[ELEMENT].as_str().map(str::to_owned)
            },
        )
        .await
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.get(&format!("/element/{element}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the text of `css` holds `wanted`.
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        crate::eventually(
            &format!("{css} showing {wanted:?}"),
            Duration::from_secs(20),
            async || {
                let text = self.text(css).await;
                text.contains(wanted).then_some(text)
            },
        )
        .await
    }

    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let element = self.find(css).await;
        self.get(&format!("/element/{element}/attribute/{name}"))
            .await
            .as_str()
            .map(str::to_owned)
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        let answer = self
            .post(&format!("/element/{element}/click"), json!({}))
            .await;
        assert!(answer.is_null(), "clicking {css}: {answer}");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await;
        let answer = self
            .post(&format!("/element/{element}/value"), json!({"text": text}))
            .await;
        assert!(answer.is_null(), "typing into {css}: {answer}");
    }

    /// Accepts the confirmation dialog the page opened.
    pub async fn accept_dialog(&self) {
        crate::eventually("a dialog to accept", Duration::from_secs(10), async || {
            self.post("/alert/accept", json!({}))
                .await
                .is_null()
                .then_some(())
        })
        .await;
    }

    /// Saves a PNG of the viewport as `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("screenshot base64"))
            .expect("screenshot PNG");
        std::fs::create_dir_all(dir).expect("screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }

    /// Resizes the window so that the whole page fits a screenshot.
    pub async fn fit_page(&self) {
        let height = self
            .post(
                "/execute/sync",
                json!({"script": "return document.documentElement.scrollHeight;", "args": []}),
            )
            .await
            .as_i64()
            .unwrap_or(1000)
            .clamp(600, 4000);
        self.post(
            "/window/rect",
            json!({"width": 1400, "height": height + 140}),
        )
        .await;
    }

    pub async fn close(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_file(&self.policy);
        self.session.clear();
    }
}

impl Drop for Browser {
    /// A test that failed never reached `close`: end the session (which quits Chromium)
    /// with a plain blocking request, then stop the driver.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            use std::io::{Read, Write};
            let address = self.base.trim_start_matches("http://").to_owned();
            if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_file(&self.policy);
    }
}

/// Where the console's screenshots go: `target/console-screenshots/` of the build
/// (`CARGO_TARGET_DIR` when set).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"));
    target.join("console-screenshots")
}
