//! Reading the gateway's proof bodies as an agency's or an auditor's own code would.

use liaison_core::audit::Hash;
use liaison_core::merkle;
use serde_json::Value;

/// A lowercase hex hash of a proof body.
pub fn hash(hex_text: &Value) -> Hash {
    let bytes = hex::decode(hex_text.as_str().expect("a hex string")).expect("hex");
    Hash::try_from(bytes.as_slice()).expect("32 bytes")
}

/// Checks an inclusion proof (`leaf_hash`, `leaf_index`, `audit_path`) against the root of
/// a tree of `size` leaves, naming the entry when it fails.
pub fn check_inclusion(proof: &Value, size: u64, root: &Hash) {
    let path: Vec<Hash> = proof["audit_path"]
        .as_array()
        .expect("audit_path")
        .iter()
        .map(hash)
        .collect();
    merkle::verify_inclusion(
        &hash(&proof["leaf_hash"]),
        proof["leaf_index"].as_u64().expect("leaf_index"),
        size,
        &path,
        root,
    )
    .unwrap_or_else(|e| panic!("entry {}: {e}", proof["seq"]));
}
