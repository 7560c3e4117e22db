//! The benchmark's private world: a RabbitMQ virtual host, a database and a PKI.

use std::process::Command;

use anyhow::{Context, bail};
use liaison_core::Registry;
use liaison_pki::PkiOptions;
use liaison_server::Config;
use uuid::Uuid;

pub struct BenchWorld {
    pub config: Config,
    pub vhost: String,
    _pki: tempfile::TempDir,
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("running rabbitmqctl (the benchmark needs the local RabbitMQ)")?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// `scheme://authority/path` → `scheme://authority/<path>` (the last path segment replaced).
fn with_path(url: &str, path: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}/{path}")
        }
        None => url.to_owned(),
    }
}

impl BenchWorld {
    /// With `extra_agencies`, the registry is the configured one plus that many synthetic
    /// agencies (`bench-0001`…), written next to the PKI: each costs a quorum queue and a
    /// certificate, which is what a county with hundreds of agencies pays.
    pub async fn create(base: &Config, extra_agencies: usize) -> anyhow::Result<Self> {
        let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
        let vhost = format!("liaison-bench-{id}");
        rabbitmqctl(&["add_vhost", &vhost])?;
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"])?;
        let database_url = with_path(&base.database_url, &format!("liaison_bench_{id}"));
        liaison_ledger::ensure_database(&database_url).await?;
        let pki_dir = tempfile::tempdir()?;
        let mut registry_text = match &base.registry {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
            None => liaison_server::defaults::REGISTRY.text.to_owned(),
        };
        for i in 1..=extra_agencies {
            registry_text.push_str(&format!(
                "\n[[agency]]\ncode = \"bench-{i:04}\"\nname_zh = \"基准测试单位{i}\"\nname_en = \"Benchmark agency {i}\"\n"
            ));
        }
        let registry_path = pki_dir.path().join("agencies.toml");
        std::fs::write(&registry_path, &registry_text)?;
        let registry = Registry::load(&registry_path)?;
        let options = PkiOptions {
            origin: base.ledger.origin.clone(),
            ..PkiOptions::default()
        };
        liaison_pki::init(pki_dir.path(), &registry, &options)?;
        let mut config = Config {
            database_url,
            amqp_url: with_path(&base.amqp_url, &vhost),
            tls_dir: pki_dir.path().to_owned(),
            registry: Some(registry_path),
            // A throwaway deployment of its own: the demo origin is fine here.
            demo: true,
            ..base.clone()
        };
        config.listen.set_port(0);
        config.ops_listen.set_port(0);
        // `--connections 1` has one agency post everything, faster than the per-agency
        // rate limit (2,000/s by default) allows: the benchmark measures the path, not the
        // limiter, so it is off here.
        config.limits.rate_per_second = 0;
        Ok(Self {
            config,
            vhost,
            _pki: pki_dir,
        })
    }

    pub async fn remove(&self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.vhost]);
        let _ = liaison_ledger::drop_database(&self.config.database_url).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_path_of_a_url() {
        assert_eq!(
            super::with_path("amqp://guest:guest@127.0.0.1:5672/%2f", "v"),
            "amqp://guest:guest@127.0.0.1:5672/v"
        );
        assert_eq!(
            super::with_path("postgres://postgres@127.0.0.1:5432", "db"),
            "postgres://postgres@127.0.0.1:5432/db"
        );
    }
}
