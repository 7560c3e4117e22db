//! The broker's checkpointer: the Ed25519 key made by `liaison pki init` signs the ledger's
//! tree head every `[ledger] checkpoint_interval` when the ledger grew, under the
//! deployment's own origin — never the shared demo origin unless the configuration says it
//! is a demo — and only when the verifier key published beside it verifies what it signs.

use std::sync::Arc;

use liaison_core::checkpoint::CheckpointSigner;
use liaison_ledger::{Checkpointer, Ledger};

use crate::config::{Config, DEMO_ORIGIN};
use liaison_pki::PkiLayout;

/// Why the broker will not sign checkpoints with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointKeyError {
    #[error("ledger signing key: {0}")]
    SigningKey(String),
    #[error(
        "[ledger] origin is {0:?}, the demo origin that every deployment keeping the default shares: set [ledger] origin to this deployment's own name (LIAISON_LEDGER__ORIGIN, e.g. ledger.county.example/liaison) and give auditors the verifier key `liaison pki vkey` writes for it, or set demo = true (LIAISON_DEMO=true) for a demonstration or test"
    )]
    DemoOrigin(String),
    #[error(
        "the verifier key {path} is {published}, which does not verify the checkpoints this broker signs ({signing}, from [ledger] origin and ledger-signing.pk8): correct [ledger] origin, or rewrite the file with `liaison pki vkey --dir DIR --origin ORIGIN` and give auditors the new key"
    )]
    VerifierKey {
        path: std::path::PathBuf,
        published: String,
        signing: String,
    },
}

/// The signer for this deployment: the PKI's ledger key under the configured origin.
pub fn signer(config: &Config) -> Result<CheckpointSigner, String> {
    let layout = PkiLayout::new(config.tls_dir.clone());
    let key = liaison_pki::load_ledger_signing_key(&layout).map_err(|e| e.to_string())?;
    CheckpointSigner::new(config.ledger.origin.clone(), key).map_err(|e| e.to_string())
}

/// Refuses the demo origin outside a demo: checkpoints of two deployments under one origin
/// could be passed off as each other's, and a monitor could not tell their logs apart.
pub fn check_origin(config: &Config) -> Result<(), CheckpointKeyError> {
    if config.ledger.origin == DEMO_ORIGIN && !config.demo {
        return Err(CheckpointKeyError::DemoOrigin(config.ledger.origin.clone()));
    }
    Ok(())
}

/// Refuses to sign what the PKI's published verifier key (`ledger-signing.vkey`, the key
/// auditors were given) would not verify: another origin, or another key. A PKI made
/// before the verifier key existed has none, and nothing is checked.
pub fn check_published_key(
    config: &Config,
    signer: &CheckpointSigner,
) -> Result<(), CheckpointKeyError> {
    let layout = PkiLayout::new(config.tls_dir.clone());
    let published = liaison_pki::read_verifier_key(&layout)
        .map_err(|e| CheckpointKeyError::SigningKey(e.to_string()))?;
    match published {
        Some(published) if published != signer.verifier() => Err(CheckpointKeyError::VerifierKey {
            path: layout.ledger_verifier_key(),
            published: published.vkey(),
            signing: signer.verifier().vkey(),
        }),
        _ => Ok(()),
    }
}

pub fn checkpointer(ledger: Ledger, signer: CheckpointSigner, config: &Config) -> Checkpointer {
    Checkpointer {
        ledger,
        signer: Arc::new(signer),
        interval: config.ledger.checkpoint_interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liaison_pki::PkiOptions;

    fn config_with_pki(origin: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let registry = liaison_core::Registry::default();
        let options = PkiOptions {
            origin: origin.to_owned(),
            ..PkiOptions::default()
        };
        liaison_pki::init(dir.path(), &registry, &options).unwrap();
        let mut config = Config {
            tls_dir: dir.path().to_owned(),
            ..Config::default()
        };
        config.ledger.origin = origin.to_owned();
        (dir, config)
    }

    #[test]
    fn the_demo_origin_is_refused_unless_the_configuration_is_a_demo() {
        let mut config = Config::default();
        assert_eq!(config.ledger.origin, DEMO_ORIGIN);
        let refused = check_origin(&config).unwrap_err();
        assert!(matches!(refused, CheckpointKeyError::DemoOrigin(_)));
        let text = refused.to_string();
        assert!(
            text.contains("[ledger] origin") && text.contains("demo = true"),
            "{text}"
        );
        config.demo = true;
        check_origin(&config).unwrap();
        config.demo = false;
        config.ledger.origin = "ledger.county.example/liaison".into();
        check_origin(&config).unwrap();
    }

    #[test]
    fn the_published_verifier_key_must_verify_what_the_broker_signs() {
        let (_dir, mut config) = config_with_pki("ledger.county.example/liaison");
        let signer = signer(&config).unwrap();
        check_published_key(&config, &signer).unwrap();

        // The configuration names another origin than the key auditors were given.
        config.ledger.origin = "ledger.other.example/liaison".into();
        let signer = super::signer(&config).unwrap();
        let refused = check_published_key(&config, &signer).unwrap_err();
        assert!(
            refused.to_string().contains("liaison pki vkey"),
            "{refused}"
        );

        // Rewritten for the new origin, it is the key of what is signed again.
        let layout = PkiLayout::new(config.tls_dir.clone());
        liaison_pki::write_verifier_key(&layout, "ledger.other.example/liaison").unwrap();
        check_published_key(&config, &signer).unwrap();
        // A PKI without one (made before it existed): nothing to compare.
        std::fs::remove_file(layout.ledger_verifier_key()).unwrap();
        check_published_key(&config, &signer).unwrap();
    }
}
