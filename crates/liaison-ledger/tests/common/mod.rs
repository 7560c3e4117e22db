//! What the ledger's integration tests share: a database of their own on the local
//! PostgreSQL (LIAISON_TEST_DATABASE_URL points them elsewhere), dropped when the test
//! ends, even by a panic. Each test file uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use liaison_core::{
    AgencyCode, Channel, Clock, Envelope, Recipient, RecipientRole, Route, SystemClock,
};
use liaison_ledger::{Ledger, LedgerConfig, NewMessage};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

const DATABASE_ENV: &str = "LIAISON_TEST_DATABASE_URL";
const DEFAULT_DATABASE: &str = "postgres://postgres@127.0.0.1:5432";

/// The server part of the test URL: everything before the database path.
pub fn server_url() -> String {
    let url = std::env::var(DATABASE_ENV).unwrap_or_else(|_| DEFAULT_DATABASE.to_owned());
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find(['/', '?']) {
        Some(end) => url[..after_scheme + end].to_owned(),
        None => url,
    }
}

pub async fn admin_connection(server: &str) -> PgConnection {
    let url = format!("{server}/postgres");
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("cannot reach PostgreSQL at {url}: {e}. Start PostgreSQL or set {DATABASE_ENV} to its URL.")
    })
}

/// A fresh database, dropped (best effort) when the test ends, even by a panic.
pub struct TestDb {
    pub server: String,
    pub name: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let server = server_url();
        // Fail here, with the URL and the variable to set, rather than deep inside a test.
        drop(admin_connection(&server).await);
        let db = Self {
            server,
            name: format!("liaison_t_{}", Uuid::new_v4().simple()),
        };
        liaison_ledger::ensure_database(&db.url())
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {}: {e}", db.name));
        db
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub fn config(&self) -> LedgerConfig {
        LedgerConfig::new(self.url())
    }

    pub async fn open(&self) -> Ledger {
        self.open_with(Arc::new(SystemClock)).await
    }

    pub async fn open_with(&self, clock: Arc<dyn Clock>) -> Ledger {
        Ledger::open(self.config(), clock)
            .await
            .expect("open ledger")
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.url();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread
        // with a runtime of its own.
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let _ = runtime.block_on(liaison_ledger::drop_database(&url));
        });
        let _ = dropping.join();
    }
}

pub fn agency(code: &str) -> AgencyCode {
    AgencyCode::new(code).unwrap()
}

/// The route the policy would give: the first of `to` as addressee, the rest copied.
pub fn route(to: &[&str], rule: &str) -> Route {
    Route {
        recipients: to
            .iter()
            .enumerate()
            .map(|(i, code)| Recipient {
                agency: agency(code),
                role: if i == 0 {
                    RecipientRole::To
                } else {
                    RecipientRole::Cc
                },
                rule: rule.into(),
            })
            .collect(),
    }
}

/// A message as the gateway hands it to the ledger, for a test to adjust: a new
/// `pil.lead.v1` from `sender` over HTTPS, routed to `to` by `rule`, in no case, its body
/// `{"id": …}`.
pub fn message(sender: &str, to: &[&str], rule: &str) -> NewMessage {
    let id = Uuid::now_v7();
    NewMessage {
        envelope: Envelope {
            id,
            source: agency(sender).urn(),
            type_: "pil.lead.v1".into(),
            time: OffsetDateTime::now_utc(),
            subject: None,
            caseref: None,
            inreplyto: None,
            recipients: None,
            traceparent: None,
        },
        sender: agency(sender),
        channel: Channel::Https,
        bytes: Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
        received_at: OffsetDateTime::now_utc(),
        case: Default::default(),
        route: route(to, rule),
        trace_context: None,
    }
}
