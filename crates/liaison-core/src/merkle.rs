//! The RFC 9162 Merkle tree over ledger entries: tree heads, inclusion proofs and
//! consistency proofs (§2.1.3, §2.1.4), and a compact range for appending.
//!
//! The tree is addressed by complete subtrees: [`NodeId`] `{ level, index }` covers the
//! leaves `index·2^level .. (index+1)·2^level`; level 0 is a leaf hash. Every node the RFC
//! algorithms need is either such a complete subtree or is computed from a few of them, so
//! a store that keeps the complete-subtree hashes (about one per entry) answers any proof
//! with `O(log n)` lookups and no rescan. The algorithms read hashes through
//! [`HashSource`]; [`nodes_for_inclusion`] and friends list in advance which nodes a
//! computation will read, so that a database can fetch them all in one query.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::audit::{Hash, node_hash, sha256};

/// A complete subtree of the tree: leaves `index << level .. (index + 1) << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub fn leaf(index: u64) -> Self {
        Self { level: 0, index }
    }
}

/// Where the algorithms read complete-subtree hashes from.
pub trait HashSource {
    type Error;
    fn node(&self, id: NodeId) -> Result<Hash, Self::Error>;
}

/// Hashes held in a map, e.g. the ones a store fetched for [`nodes_for_inclusion`].
impl HashSource for HashMap<NodeId, Hash> {
    type Error = NodeId;
    fn node(&self, id: NodeId) -> Result<Hash, NodeId> {
        self.get(&id).copied().ok_or(id)
    }
}

/// All leaf hashes in memory (tests, small exports).
impl HashSource for [Hash] {
    type Error = NodeId;
    fn node(&self, id: NodeId) -> Result<Hash, NodeId> {
        let start = usize::try_from(id.index << id.level).map_err(|_| id)?;
        let len = 1usize << id.level;
        let leaves = self.get(start..start + len).ok_or(id)?;
        Ok(subtree_root(leaves))
    }
}

fn subtree_root(leaves: &[Hash]) -> Hash {
    let mut range = CompactRange::new();
    for leaf in leaves {
        range.push(*leaf, |_, _| {});
    }
    range.root()
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree sizes {old} → {new} admit no consistency proof (need 0 < old ≤ new)")]
    BadSizes { old: u64, new: u64 },
    #[error("reading a tree node: {0}")]
    Source(E),
}

/// Why a proof does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree sizes {old} → {new} admit no consistency proof")]
    BadSizes { old: u64, new: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof leads to another root hash")]
    RootMismatch,
}

/// The largest power of two strictly below `n` (n ≥ 2): where RFC 9162 splits a tree.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of the `size` leaves from `start`. Every range the RFC recursion visits starts at a
/// multiple of its own (rounded-up) size, so a power-of-two range is a complete subtree.
fn mth<S: HashSource + ?Sized>(source: &S, start: u64, size: u64) -> Result<Hash, S::Error> {
    if size.is_power_of_two() {
        let level = size.trailing_zeros() as u8;
        return source.node(NodeId {
            level,
            index: start >> level,
        });
    }
    let k = split(size);
    Ok(node_hash(
        &mth(source, start, k)?,
        &mth(source, start + k, size - k)?,
    ))
}

/// The root of the first `size` leaves; SHA-256 of nothing for the empty tree.
pub fn root<S: HashSource + ?Sized>(source: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(sha256(b""));
    }
    mth(source, 0, size)
}

/// RFC 9162 §2.1.3.1 `PATH(index, D[size])`, leaf to root.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut path = Vec::new();
    path_into(source, index, 0, size, &mut path).map_err(ProofError::Source)?;
    Ok(path)
}

fn path_into<S: HashSource + ?Sized>(
    source: &S,
    m: u64,
    start: u64,
    n: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path_into(source, m, start, k, out)?;
        out.push(mth(source, start + k, n - k)?);
    } else {
        path_into(source, m - k, start + k, n - k, out)?;
        out.push(mth(source, start, k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.1 `PROOF(old, D[new])`. Empty when `old == new`.
pub fn consistency_proof<S: HashSource + ?Sized>(
    source: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    let mut proof = Vec::new();
    if old < new {
        subproof_into(source, old, 0, new, true, &mut proof).map_err(ProofError::Source)?;
    }
    Ok(proof)
}

fn subproof_into<S: HashSource + ?Sized>(
    source: &S,
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == n {
        if !complete {
            out.push(mth(source, start, n)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof_into(source, m, start, k, complete, out)?;
        out.push(mth(source, start + k, n - k)?);
    } else {
        subproof_into(source, m - k, start + k, n - k, false, out)?;
        out.push(mth(source, start, k)?);
    }
    Ok(())
}

/// A source that answers zeros and remembers what was asked: the nodes an algorithm reads
/// depend only on the sizes, never on the hash values.
struct Recorder(RefCell<Vec<NodeId>>);

impl HashSource for Recorder {
    type Error = std::convert::Infallible;
    fn node(&self, id: NodeId) -> Result<Hash, Self::Error> {
        self.0.borrow_mut().push(id);
        Ok([0; 32])
    }
}

fn recorded(run: impl FnOnce(&Recorder)) -> Vec<NodeId> {
    let recorder = Recorder(RefCell::new(Vec::new()));
    run(&recorder);
    let mut ids = recorder.0.into_inner();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The complete subtrees [`root`] reads for a tree of `size`.
pub fn nodes_for_root(size: u64) -> Vec<NodeId> {
    recorded(|r| {
        let _ = root(r, size);
    })
}

/// The complete subtrees [`inclusion_proof`] reads (empty when out of range).
pub fn nodes_for_inclusion(index: u64, size: u64) -> Vec<NodeId> {
    recorded(|r| {
        let _ = inclusion_proof(r, index, size);
    })
}

/// The complete subtrees [`consistency_proof`] reads (empty for invalid sizes).
pub fn nodes_for_consistency(old: u64, new: u64) -> Vec<NodeId> {
    recorded(|r| {
        let _ = consistency_proof(r, old, new);
    })
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is leaf `index` of the tree of `size` with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if &r != root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `old` leaves with `old_root` is a prefix of
/// the tree of `new` leaves with `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old == 0 || old > new {
        return Err(VerifyError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(VerifyError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(VerifyError::WrongLength);
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a tree: the hashes of its maximal complete subtrees, largest (leftmost)
/// first. Enough to append leaves and to compute the root, in `O(log n)` memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }

    /// The complete subtrees that make up a tree of `size`, left to right: the ones
    /// [`CompactRange::from_parts`] needs.
    pub fn frontier(size: u64) -> Vec<NodeId> {
        (0..64u8)
            .rev()
            .filter(|level| size >> level & 1 == 1)
            .map(|level| NodeId {
                level,
                index: (size >> level) - 1,
            })
            .collect()
    }

    /// Rebuilds the range of a tree of `size` from the hashes of [`CompactRange::frontier`].
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(Self { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes of [`CompactRange::frontier`], left to right.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf hash; `completed` sees every interior node (level ≥ 1) this completes,
    /// bottom-up — the nodes a store keeps.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, Hash)) {
        let index = self.size;
        let mut hash = leaf;
        let mut level = 0u8;
        while index >> level & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            completed(
                NodeId {
                    level,
                    index: index >> level,
                },
                hash,
            );
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    /// The root hash of the tree so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return sha256(b"");
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::leaf_hash;
    use ct_merkle::mem_backed_tree::MemoryBackedTree;
    use sha2::Sha256;

    /// The leaves of the RFC 6962 test vectors (certificate-transparency / transparency-dev).
    fn vector_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect()
    }

    #[test]
    fn roots_match_the_published_rfc6962_vectors() {
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves: Vec<Hash> = vector_leaves().iter().map(|l| leaf_hash(l)).collect();
        let mut range = CompactRange::new();
        for (n, leaf) in leaves.iter().enumerate() {
            range.push(*leaf, |_, _| {});
            assert_eq!(hex::encode(range.root()), expected[n], "size {}", n + 1);
            assert_eq!(root(&leaves[..], n as u64 + 1).unwrap(), range.root());
        }
        assert_eq!(
            hex::encode(root(&leaves[..], 0).unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn ct_tree(n: usize) -> (MemoryBackedTree<Sha256, Vec<u8>>, Vec<Hash>) {
        let mut tree = MemoryBackedTree::<Sha256, Vec<u8>>::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let item = format!("entry {i}").into_bytes();
            leaves.push(leaf_hash(&item));
            tree.push(item);
        }
        (tree, leaves)
    }

    #[test]
    fn roots_and_inclusion_proofs_match_ct_merkle() {
        for n in 1..=40usize {
            let (tree, leaves) = ct_tree(n);
            let size = n as u64;
            let our_root = root(&leaves[..], size).unwrap();
            assert_eq!(&our_root[..], &tree.root().as_bytes()[..], "root of {n}");
            for i in 0..n {
                let proof = inclusion_proof(&leaves[..], i as u64, size).unwrap();
                let theirs = tree.prove_inclusion(i);
                assert_eq!(proof.concat(), theirs.as_bytes(), "path {i} of {n}");
                verify_inclusion(&leaves[i], i as u64, size, &proof, &our_root).unwrap();
                // Another leaf, or one bit flipped in the path: refused.
                let other = leaves[(i + 1) % n];
                if n > 1 {
                    assert!(verify_inclusion(&other, i as u64, size, &proof, &our_root).is_err());
                }
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(verify_inclusion(&leaves[i], i as u64, size, &bad, &our_root).is_err());
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_match_ct_merkle_and_verify() {
        for new in 1..=40u64 {
            let (tree, leaves) = ct_tree(new as usize);
            let new_root = root(&leaves[..], new).unwrap();
            for old in 1..=new {
                let old_root = root(&leaves[..], old).unwrap();
                let proof = consistency_proof(&leaves[..], old, new).unwrap();
                if old < new {
                    let theirs = tree.prove_consistency((new - old) as usize);
                    assert_eq!(proof.concat(), theirs.as_bytes(), "{old} → {new}");
                }
                verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
                let wrong = leaf_hash(b"not the old root");
                assert!(verify_consistency(old, new, &wrong, &new_root, &proof).is_err());
                if old < new {
                    assert!(
                        verify_consistency(old + 1, new, &old_root, &new_root, &proof).is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn compact_range_reports_every_complete_subtree_once() {
        let leaves: Vec<Hash> = (0..37u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::new();
        let mut stored: HashMap<NodeId, Hash> = HashMap::new();
        for (i, leaf) in leaves.iter().enumerate() {
            stored.insert(NodeId::leaf(i as u64), *leaf);
            range.push(*leaf, |id, hash| {
                assert!(stored.insert(id, hash).is_none(), "{id:?} reported twice");
            });
        }
        // n leaves have n − popcount(n) complete interior subtrees.
        assert_eq!(stored.len(), 37 + 37 - 3);
        for (id, hash) in &stored {
            assert_eq!(leaves[..].node(*id).unwrap(), *hash, "{id:?}");
        }
        // A range rebuilt from its frontier goes on exactly like the original.
        let frontier = CompactRange::frontier(37);
        let parts = frontier.iter().map(|id| stored[id]).collect();
        let rebuilt = CompactRange::from_parts(37, parts).unwrap();
        assert_eq!(rebuilt, range);
        assert_eq!(rebuilt.root(), root(&stored, 37).unwrap());
    }

    #[test]
    fn the_listed_nodes_are_exactly_the_ones_read() {
        let leaves: Vec<Hash> = (0..29u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::new();
        let mut stored = HashMap::new();
        for (i, leaf) in leaves.iter().enumerate() {
            stored.insert(NodeId::leaf(i as u64), *leaf);
            range.push(*leaf, |id, hash| {
                stored.insert(id, hash);
            });
        }
        let only = |ids: Vec<NodeId>| -> HashMap<NodeId, Hash> {
            ids.into_iter().map(|id| (id, stored[&id])).collect()
        };
        assert_eq!(root(&only(nodes_for_root(29)), 29).unwrap(), range.root());
        for i in 0..29 {
            assert_eq!(
                inclusion_proof(&only(nodes_for_inclusion(i, 29)), i, 29).unwrap(),
                inclusion_proof(&leaves[..], i, 29).unwrap()
            );
        }
        for old in 1..=29 {
            assert_eq!(
                consistency_proof(&only(nodes_for_consistency(old, 29)), old, 29).unwrap(),
                consistency_proof(&leaves[..], old, 29).unwrap()
            );
        }
        assert!(nodes_for_root(29).len() <= 5);
    }
}
