//! The harness of liaison's end-to-end tests: every test gets its own PostgreSQL database,
//! its own RabbitMQ virtual host and its own development PKI, and runs the real broker
//! against them over real mutual TLS. Nothing here is mocked; if a service is down the
//! test fails and says which one.

pub mod process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use liaison_bus::Bus;
use liaison_cli::client::AgencyClient;
use liaison_core::{AgencyCode, Registry, SystemClock};
use liaison_ledger::Ledger;
use liaison_server::pki::{self, PkiLayout, PkiOptions};
use liaison_server::{Broker, Config};
use uuid::Uuid;

/// The repository root (the data files of the demo county live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn base_database_url() -> String {
    std::env::var("LIAISON_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn base_amqp_url() -> String {
    std::env::var("LIAISON_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".into())
}

pub fn code(s: &str) -> AgencyCode {
    AgencyCode::new(s).expect("valid agency code")
}

/// Runs `rabbitmqctl`; panics with its output when it fails (the end-to-end tests need the
/// local RabbitMQ and its command line).
pub fn rabbitmqctl(args: &[&str]) {
    process::service_command("rabbitmqctl", args);
}

/// One isolated world for one test: database, virtual host, PKI, configuration. Dropped,
/// it removes its virtual host and database even when the test panicked before
/// [`World::cleanup`].
pub struct World {
    pub config: Config,
    pub vhost: String,
    pub database: String,
    _pki: tempfile::TempDir,
    cleaned: bool,
}

impl World {
    pub async fn new() -> World {
        liaison_server::tls::install_crypto_provider();
        let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let vhost = format!("liaison-test-{id}");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);

        let database = format!("liaison_test_{id}");
        let database_url = format!("{}/{database}", base_database_url());
        liaison_ledger::ensure_database(&database_url).await.unwrap_or_else(|e| {
            panic!("cannot create test database at {database_url} ({e}); is PostgreSQL running? (LIAISON_TEST_DATABASE_URL)")
        });

        let root = repo_root();
        let pki_dir = tempfile::tempdir().expect("temp dir");
        let registry =
            Registry::load(&root.join("deploy/demo/agencies.toml")).expect("demo registry");
        pki::init(pki_dir.path(), &registry, &PkiOptions::default()).expect("development PKI");

        let mut config = Config {
            database_url,
            amqp_url: format!("{}/{vhost}", base_amqp_url()),
            tls_dir: pki_dir.path().to_owned(),
            registry: Some(root.join("deploy/demo/agencies.toml")),
            policy: Some(root.join("deploy/demo/policy.toml")),
            lifecycle: Some(root.join("deploy/demo/lifecycle.toml")),
            schemas: Some(root.join("schemas")),
            ..Config::default()
        };
        config.listen.set_port(0);
        config.ops_listen.set_port(0);
        World {
            config,
            vhost,
            database,
            _pki: pki_dir,
            cleaned: false,
        }
    }

    /// Deletes an agency's queue in this world's virtual host, as for an agency removed
    /// from RabbitMQ: every delivery to it then comes back unroutable.
    pub fn delete_agency_queue(&self, agency: &str) {
        let queue = liaison_bus::agency_queue(&code(agency));
        rabbitmqctl(&["delete_queue", "-p", &self.vhost, &queue]);
    }

    pub fn layout(&self) -> PkiLayout {
        PkiLayout {
            dir: self.config.tls_dir.clone(),
        }
    }

    pub async fn start(&self) -> Broker {
        Broker::start(self.config.clone())
            .await
            .expect("broker starts against the local services")
    }

    pub fn client(&self, broker: &Broker, agency: &str) -> AgencyClient {
        AgencyClient::new(
            &self.layout(),
            &code(agency),
            &format!("https://localhost:{}", broker.https_addr.port()),
        )
        .expect("agency client")
    }

    pub async fn bus(&self) -> Bus {
        Bus::connect(self.config.bus_config())
            .await
            .expect("RabbitMQ connection to the test virtual host")
    }

    pub async fn ledger(&self) -> Ledger {
        Ledger::open(self.config.ledger_config(), Arc::new(SystemClock))
            .await
            .expect("ledger of the test database")
    }

    /// Removes the virtual host and the database (best effort).
    pub async fn cleanup(mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        let _ = liaison_ledger::drop_database(&self.config.database_url).await;
        self.cleaned = true;
    }
}

impl Drop for World {
    /// A test that panicked never reached `cleanup`: remove what it made all the same. The
    /// database is dropped from a thread with a runtime of its own, since this may run
    /// inside the test's runtime, which cannot be blocked on.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        let url = self.config.database_url.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(liaison_ledger::drop_database(&url)).ok()
        })
        .join();
    }
}
