//! The broker's checkpointer: the Ed25519 key made by `liaison pki init` signs the ledger's
//! tree head every `[ledger] checkpoint_interval` when the ledger grew.

use std::sync::Arc;

use liaison_core::checkpoint::CheckpointSigner;
use liaison_ledger::{Checkpointer, Ledger};

use crate::config::Config;
use crate::pki::{self, PkiLayout};

/// The signer for this deployment: the PKI's ledger key under the configured origin.
pub fn signer(config: &Config) -> Result<CheckpointSigner, String> {
    let layout = PkiLayout::new(config.tls_dir.clone());
    let key = pki::load_ledger_signing_key(&layout).map_err(|e| e.to_string())?;
    CheckpointSigner::new(config.ledger.origin.clone(), key).map_err(|e| e.to_string())
}

pub fn checkpointer(ledger: Ledger, signer: CheckpointSigner, config: &Config) -> Checkpointer {
    Checkpointer {
        ledger,
        signer: Arc::new(signer),
        interval: config.ledger.checkpoint_interval,
    }
}
