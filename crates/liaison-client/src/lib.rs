//! An agency's HTTPS client for the liaison gateway, authenticated by the agency's
//! certificate from a PKI directory. Used by `liaison submit`, the demo and the tests.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use liaison_core::AgencyCode;
use liaison_pki::PkiLayout;
use liaison_server::tls;
use serde_json::Value;

pub struct AgencyClient {
    pub agency: AgencyCode,
    base: String,
    http: reqwest::Client,
}

/// An HTTP answer: status, content type and parsed JSON body (Null when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl AgencyClient {
    /// `base` is the gateway's URL, e.g. `https://localhost:8443`. Offers HTTP/2 and
    /// HTTP/1.1; the gateway picks HTTP/2, multiplexing requests on one connection.
    pub fn new(layout: &PkiLayout, agency: &AgencyCode, base: &str) -> anyhow::Result<Self> {
        Self::build(layout, agency, base, false)
    }

    /// Like [`AgencyClient::new`], but HTTP/1.1 only: one request at a time per keep-alive
    /// connection, so concurrent requests open connections of their own.
    pub fn new_http1(layout: &PkiLayout, agency: &AgencyCode, base: &str) -> anyhow::Result<Self> {
        Self::build(layout, agency, base, true)
    }

    /// A client presenting the certificate and key in `cert` and `key` (PEM files) and
    /// trusting the CA in `ca`: an auditor's identity (`urn:liaison:auditor:<name>`), or an
    /// agency's kept outside a PKI directory. `agency` is then the name the certificate
    /// gives, or `unknown`.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path, base: &str) -> anyhow::Result<Self> {
        tls::install_crypto_provider();
        let tls = tls::client_config(ca, cert, key)
            .with_context(|| format!("TLS client configuration from {}", cert.display()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTPS client")?;
        Ok(Self {
            agency: AgencyCode::new("unknown").expect("a valid code"),
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn build(
        layout: &PkiLayout,
        agency: &AgencyCode,
        base: &str,
        http1_only: bool,
    ) -> anyhow::Result<Self> {
        tls::install_crypto_provider();
        let mut tls = tls::agency_client_config(layout, agency)
            .with_context(|| format!("TLS client configuration for {agency}"))?;
        let mut builder = reqwest::Client::builder();
        if http1_only {
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            builder = builder.http1_only();
        }
        let http = builder
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTPS client")?;
        Ok(Self {
            agency: agency.clone(),
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// Posts raw CloudEvent bytes to `/v1/messages`.
    pub async fn submit_bytes(&self, bytes: Vec<u8>) -> anyhow::Result<Answer> {
        self.post_event(bytes, None).await
    }

    pub async fn submit(&self, event: &Value) -> anyhow::Result<Answer> {
        self.post_event(serde_json::to_vec(event)?, None).await
    }

    /// Posts `event` as part of the trace `traceparent` (W3C) names: the broker's spans and
    /// the deliveries' AMQP `traceparent` headers continue it.
    pub async fn submit_traced(&self, event: &Value, traceparent: &str) -> anyhow::Result<Answer> {
        self.post_event(serde_json::to_vec(event)?, Some(traceparent))
            .await
    }

    async fn post_event(
        &self,
        bytes: Vec<u8>,
        traceparent: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut request = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .header(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )
            .body(bytes);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        answer(request.send().await.context("POST /v1/messages")?).await
    }

    /// Asks `/v1/routes/preview` who would receive `event`; nothing is recorded.
    pub async fn preview(&self, event: &Value) -> anyhow::Result<Answer> {
        self.preview_bytes(serde_json::to_vec(event)?).await
    }

    /// [`AgencyClient::preview`] of raw CloudEvent bytes.
    pub async fn preview_bytes(&self, bytes: Vec<u8>) -> anyhow::Result<Answer> {
        let request = self
            .http
            .post(format!("{}/v1/routes/preview", self.base))
            .header("content-type", "application/cloudevents+json")
            .body(bytes);
        answer(request.send().await.context("POST /v1/routes/preview")?).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        answer(response).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        answer(response).await
    }

    pub async fn post_empty(&self, path: &str) -> anyhow::Result<Answer> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        answer(response).await
    }

    /// Long-polls the agency's inbox.
    pub async fn pull(&self, wait_secs: u64, max: usize) -> anyhow::Result<Answer> {
        self.get(&format!("/v1/inbox?wait={wait_secs}&max={max}"))
            .await
    }

    pub async fn ack(&self, delivery: i64) -> anyhow::Result<Answer> {
        self.post_empty(&format!("/v1/inbox/{delivery}/ack")).await
    }
}

async fn answer(response: reqwest::Response) -> anyhow::Result<Answer> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = response.bytes().await.context("reading the answer")?;
    let body = if bytes.is_empty() {
        Value::Null
    } else if content_type.starts_with("text/") {
        // The console's pages (HTML), as text.
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        serde_json::from_slice(&bytes).context("answer is not JSON")?
    };
    Ok(Answer {
        status,
        content_type,
        body,
    })
}
