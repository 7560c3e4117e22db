//! Audit hashing as in RFC 9162 §2.1: domain-separated leaf and node hashes, so that a
//! leaf can never be passed off as an interior node.

use ring::digest::{Context, SHA256, digest};

pub type Hash = [u8; 32];

pub fn sha256(bytes: &[u8]) -> Hash {
    to_hash(digest(&SHA256, bytes).as_ref())
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(entry);
    to_hash(ctx.finish().as_ref())
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx.finish().as_ref())
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The empty-leaf and empty-string hashes are fixed by RFC 6962/9162 test vectors.
    #[test]
    fn leaf_hash_of_empty_entry_matches_rfc_vector() {
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex::encode(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn node_hash_differs_from_leaf_hash_of_concatenation() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_ne!(node_hash(&a, &b), leaf_hash(&joined));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }
}
