//! The harness of liaison's end-to-end tests: every test gets its own PostgreSQL database,
//! its own RabbitMQ virtual host and its own development PKI, and runs the real broker
//! against them over real mutual TLS. Nothing here is mocked; if a service is down the
//! test fails and says which one.

pub mod browser;
pub mod load;
pub mod process;
pub mod proofs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use liaison_bus::Bus;
use liaison_client::AgencyClient;
use liaison_core::{AgencyCode, Clock, Registry, SystemClock};
use liaison_ledger::Ledger;
use liaison_pki::{PkiLayout, PkiOptions};
use liaison_server::{Broker, Config};
use serde_json::{Value, json};
use time::{Date, Duration as Days, OffsetDateTime};
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

/// The catalogue's example `file` of `type_` (`*part*`: the first whose name contains
/// `part`) as a new message from `sender`: a fresh id, no case reference and no original
/// (the broker assigns the case of a message that opens one; answers inherit it), and the
/// dates it states (`reply_due`, `objection_due`) moved after `today` as a sender writing
/// today would state them, so that no window has closed before the test begins.
pub fn example(type_: &str, file: &str, sender: &str) -> Value {
    example_on(type_, file, sender, OffsetDateTime::now_utc().date())
}

/// [`example`] written on `today`.
pub fn example_on(type_: &str, file: &str, sender: &str, today: Date) -> Value {
    let dir = repo_root().join(format!("schemas/{type_}/valid"));
    let pattern = file.trim_matches('*');
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            if file.contains('*') {
                n.contains(pattern)
            } else {
                n == file
            }
        })
        .collect();
    names.sort();
    let path = dir.join(
        names
            .first()
            .unwrap_or_else(|| panic!("no example {file} of {type_}")),
    );
    let mut event: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    event["id"] = json!(Uuid::now_v7().to_string());
    event["source"] = json!(format!("urn:liaison:agency:{sender}"));
    let map = event.as_object_mut().expect("an event is an object");
    map.remove("caseref");
    map.remove("inreplyto");
    for (field, days) in [("reply_due", 60), ("objection_due", 30)] {
        if event["data"].get(field).is_some() {
            event["data"][field] = json!((today + Days::days(days)).to_string());
        }
    }
    event
}

/// `event` answering `original`.
pub fn answering(mut event: Value, original: &Value) -> Value {
    event["inreplyto"] = original["id"].clone();
    event
}

/// Asks `probe` until it answers `Some`, within `within`, and returns that answer; fails the
/// test naming `what` when time runs out. For conditions the test can only observe
/// (a delivery recorded, a checkpoint signed, a slot freed): it waits for the condition,
/// never for a fixed time, and backs off from 20 ms to 250 ms between looks.
pub async fn eventually<T>(
    what: &str,
    within: std::time::Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        if let Some(answer) = probe().await {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(250));
    }
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
        liaison_pki::init(pki_dir.path(), &registry, &PkiOptions::default())
            .expect("development PKI");

        let mut config = Config {
            database_url,
            amqp_url: format!("{}/{vhost}", base_amqp_url()),
            tls_dir: pki_dir.path().to_owned(),
            registry: Some(root.join("deploy/demo/agencies.toml")),
            policy: Some(root.join("deploy/demo/policy.toml")),
            lifecycle: Some(root.join("deploy/demo/lifecycle.toml")),
            schemas: Some(root.join("schemas")),
            // A test deployment: it signs under the demo origin, as `liaison_pki::init` named it.
            demo: true,
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

    /// A broker whose time is `clock`'s (a [`liaison_core::ManualClock`] the test moves).
    pub async fn start_with_clock(&self, clock: Arc<dyn Clock>) -> Broker {
        Broker::start_with_clock(self.config.clone(), clock)
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

/// Every snapshot file in the repository is asserted by some test: a renamed or removed
/// snapshot assertion must take its file with it, or this fails (as `cargo insta test
/// --unreferenced=reject` would). Snapshots are named explicitly
/// (`assert_snapshot!("name", …)`), so a file `<module>__<name>.snap` is referenced when
/// some source file under `crates/` or `tests/` names `"<name>"`.
#[cfg(test)]
mod snapshots {
    use std::path::{Path, PathBuf};

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path
                    .file_name()
                    .is_some_and(|n| n != "target" && n != ".git")
                {
                    files(&path, out);
                }
            } else {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_snapshot_is_referenced() {
        let root = crate::repo_root();
        let mut all = Vec::new();
        files(&root.join("crates"), &mut all);
        files(&root.join("tests"), &mut all);
        let sources: String = all
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        let snapshots: Vec<&PathBuf> = all
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "snap" || e == "new"))
            .collect();
        assert!(
            !snapshots.is_empty(),
            "no snapshot found: is the walk broken?"
        );
        for snapshot in snapshots {
            let name = snapshot.file_name().unwrap().to_string_lossy();
            assert!(
                !name.ends_with(".snap.new"),
                "{} is an unreviewed snapshot: accept or delete it",
                snapshot.display()
            );
            let asserted = name
                .trim_end_matches(".snap")
                .rsplit("__")
                .next()
                .unwrap()
                .to_owned();
            assert!(
                sources.contains(&format!("\"{asserted}\"")),
                "{} is referenced by no snapshot assertion: delete it",
                snapshot.display()
            );
        }
    }
}

/// No module of a crate imports one that imports it back: the module graph of each crate
/// (its `crate::` and `super::` paths outside tests and comments, each to the longest
/// module it names) has no pair of modules that name each other. A parent and its own
/// child may (a `mod.rs` re-exports what its children define).
#[cfg(test)]
mod module_imports {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    type Module = Vec<String>;

    fn modules(src: &Path, dir: &Path, out: &mut BTreeMap<Module, String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                modules(src, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).unwrap().with_extension("");
                let mut module: Module = relative
                    .iter()
                    .map(|part| part.to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    module.pop();
                }
                out.insert(module, std::fs::read_to_string(&path).unwrap());
            }
        }
    }

    /// The module paths `text` names after `prefix` (`crate::a::b::Item` → `[a, b, Item]`).
    fn paths_after<'a>(text: &'a str, prefix: &str) -> impl Iterator<Item = Vec<&'a str>> {
        text.match_indices(prefix).map(move |(at, _)| {
            let rest = &text[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            rest[..end].split("::").filter(|s| !s.is_empty()).collect()
        })
    }

    fn imports(module: &Module, source: &str, all: &BTreeMap<Module, String>) -> BTreeSet<Module> {
        let code: String = source
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        let parent = &module[..module.len().saturating_sub(1)];
        let named = paths_after(&code, "crate::")
            .map(|path| path.iter().map(|s| s.to_string()).collect::<Module>())
            .chain(paths_after(&code, "super::").map(|path| {
                let mut full = parent.to_vec();
                full.extend(path.iter().map(|s| s.to_string()));
                full
            }));
        let mut found = BTreeSet::new();
        for path in named {
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|prefix| all.contains_key(prefix));
            if let Some(target) = target {
                let related = target.starts_with(module) || module.starts_with(&target);
                if !related {
                    found.insert(target);
                }
            }
        }
        found
    }

    #[test]
    fn no_module_imports_one_that_imports_it_back() {
        let crates = crate::repo_root().join("crates");
        let mut checked = 0;
        let mut cycles = Vec::new();
        for entry in std::fs::read_dir(&crates).unwrap().flatten() {
            let src = entry.path().join("src");
            if !src.is_dir() {
                continue;
            }
            let mut all = BTreeMap::new();
            modules(&src, &src, &mut all);
            let graph: BTreeMap<&Module, BTreeSet<Module>> = all
                .iter()
                .map(|(module, source)| (module, imports(module, source, &all)))
                .collect();
            for (module, targets) in &graph {
                checked += 1;
                for target in targets {
                    if *module < target && graph.get(target).is_some_and(|t| t.contains(*module)) {
                        cycles.push(format!(
                            "{}: {} ↔ {}",
                            entry.file_name().to_string_lossy(),
                            module.join("::"),
                            target.join("::")
                        ));
                    }
                }
            }
        }
        assert!(
            checked > 100,
            "only {checked} modules found: is the walk broken?"
        );
        assert!(
            cycles.is_empty(),
            "modules that import each other: {cycles:#?}"
        );
    }

    #[test]
    fn a_pair_that_imports_each_other_is_found() {
        let all: BTreeMap<Module, String> = [
            (vec!["a".to_owned()], "use crate::b::Thing;\n".to_owned()),
            (
                vec!["b".to_owned()],
                "fn f() -> crate::a::Other { todo!() }\n".to_owned(),
            ),
            (vec!["c".to_owned()], "// see [a](crate::a)\n".to_owned()),
        ]
        .into_iter()
        .collect();
        let a = imports(&vec!["a".to_owned()], &all[&vec!["a".to_owned()]], &all);
        let b = imports(&vec!["b".to_owned()], &all[&vec!["b".to_owned()]], &all);
        let c = imports(&vec!["c".to_owned()], &all[&vec!["c".to_owned()]], &all);
        assert!(a.contains(&vec!["b".to_owned()]) && b.contains(&vec!["a".to_owned()]));
        assert!(c.is_empty(), "a doc link is not an import: {c:?}");
    }
}
