//! RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.
//!
//! Hashes live in the "stored hash" order of golang.org/x/mod/sumdb/tlog: leaf `n` is followed
//! by the interior nodes it completes, so a log of `n` leaves is an append-only array of
//! [`stored_hash_count`]`(n)` hashes, and [`stored_hash_index`] maps (level, index) to a position
//! in it. Proof generation reads only the O(log n) hashes it needs through a [`HashReader`], so
//! a tiled object store can serve it (see [`crate::tile::TileHashReader`]). Verification needs
//! nothing but the proof and is allocation-free.

use sha2::{Digest, Sha256};

use crate::Error;

/// Size in bytes of a SHA-256 Merkle tree hash.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 Merkle tree hash (RFC 6962 section 2.1).
pub type Hash = [u8; HASH_SIZE];

/// MTH({}) = SHA-256() of the empty string: the root of the empty tree (RFC 6962 section 2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The largest tree size the stored-hash arithmetic handles (2^62 leaves; beyond, positions
/// overflow a `u64`). Proof verification has no such limit.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

fn check_size(size: u64) -> Result<(), Error> {
    if size > MAX_TREE_SIZE {
        return Err(Error::Range(format!("tree size {size} > 2^62")));
    }
    Ok(())
}

/// Leaf hash: SHA-256(0x00 || data) (RFC 6962 section 2.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 || left || right) (RFC 6962 section 2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_SIZE];
    buf[0] = 1;
    buf[1..1 + HASH_SIZE].copy_from_slice(left);
    buf[1 + HASH_SIZE..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// A reusable SHA-256 state for hashing many leaves and nodes without re-initialising one per
/// hash (the hot path of tree building and verification over a whole log).
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaf hash SHA-256(0x00 || data) (RFC 6962 section 2.1).
    pub fn leaf(&mut self, data: &[u8]) -> Hash {
        self.inner.update([0u8]);
        self.inner.update(data);
        self.inner.finalize_reset().into()
    }

    /// Node hash SHA-256(0x01 || left || right) (RFC 6962 section 2.1).
    pub fn node(&mut self, left: &Hash, right: &Hash) -> Hash {
        self.inner.update([1u8]);
        self.inner.update(left);
        self.inner.update(right);
        self.inner.finalize_reset().into()
    }
}

/// The largest power of two <= n, for n >= 1.
fn pow2_le(n: u64) -> u64 {
    1 << (63 - n.leading_zeros())
}

/// The largest power of two < n, for n >= 2: the split point k of RFC 6962 section 2.1.
fn split(n: u64) -> u64 {
    pow2_le(n - 1)
}

/// The position of the hash at `level` (0 = leaves), `index` within that level, in the stored
/// hash order (golang.org/x/mod/sumdb/tlog `StoredHashIndex`).
pub fn stored_hash_index(level: u32, index: u64) -> u64 {
    // Level L's n-th hash is stored right after level L+1's (2n+1)-th leaf descendant's hashes:
    // walk down to the level-0 numbering, where leaf n sits at n + n/2 + n/4 + ...
    // Wrapping arithmetic: positions are meaningful for trees up to MAX_TREE_SIZE; past that
    // the result is garbage, never a panic.
    let mut n = index;
    for _ in 0..level.min(64) {
        n = n.wrapping_mul(2).wrapping_add(1);
    }
    let mut i = 0u64;
    let mut m = n;
    while m > 0 {
        i = i.wrapping_add(m);
        m >>= 1;
    }
    i.wrapping_add(u64::from(level))
}

/// The (level, index) of the hash at a stored position: the inverse of [`stored_hash_index`].
pub fn split_stored_hash_index(stored: u64) -> (u32, u64) {
    // stored_hash_index(0, n) < 2n, so the leaf that stored this hash is in [stored/2, ...).
    let mut n = stored / 2;
    let mut index_n = stored_hash_index(0, n);
    loop {
        // Leaf n+1 adds itself plus one hash per subtree it completes.
        let next = index_n + 1 + u64::from((n + 1).trailing_zeros());
        if next > stored {
            break;
        }
        n += 1;
        index_n = next;
    }
    let level = (stored - index_n) as u32;
    (level, n >> level)
}

/// How many hashes a tree of `size` leaves stores (golang.org/x/mod/sumdb/tlog `StoredHashCount`).
pub fn stored_hash_count(size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let mut count = stored_hash_index(0, size - 1) + 1;
    let mut i = size - 1;
    while i & 1 == 1 {
        count += 1;
        i >>= 1;
    }
    count
}

/// A source of stored hashes: a database, a memory array, or tiles in an object store.
pub trait HashReader {
    /// The hashes at the given stored positions ([`stored_hash_index`]`(level, index)`), in the
    /// order asked. Callers here always ask in increasing order.
    fn read_hashes(&self, stored: &[u64]) -> Result<Vec<Hash>, Error>;

    /// The hash at (level, index): the Merkle Tree Hash of leaves
    /// `[index * 2^level, (index + 1) * 2^level)`.
    fn read_hash(&self, level: u32, index: u64) -> Result<Hash, Error> {
        let hashes = self.read_hashes(&[stored_hash_index(level, index)])?;
        hashes
            .first()
            .copied()
            .ok_or_else(|| Error::Storage("no hash returned".into()))
    }
}

/// Reads hashes from a complete in-memory stored-hash array (a test or benchmark store).
impl HashReader for [Hash] {
    fn read_hashes(&self, stored: &[u64]) -> Result<Vec<Hash>, Error> {
        stored
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or_else(|| Error::Range(format!("stored hash {i} not present")))
            })
            .collect()
    }
}

/// Reads hashes from a complete in-memory stored-hash array.
impl HashReader for Vec<Hash> {
    fn read_hashes(&self, stored: &[u64]) -> Result<Vec<Hash>, Error> {
        self.as_slice().read_hashes(stored)
    }
}

/// The hashes to append to storage when leaf `index` (hash `leaf`) is added to a tree of
/// `index` leaves: the leaf hash, then one node hash per subtree it completes.
pub fn stored_hashes_for_leaf(index: u64, leaf: Hash, reader: &(impl HashReader + ?Sized)) -> Result<Vec<Hash>, Error> {
    check_size(index)?;
    let m = (index + 1).trailing_zeros();
    // Left siblings at levels m-1 .. 0, asked for in increasing stored order.
    let stored: Vec<u64> = (0..m).rev().map(|l| stored_hash_index(l, (index >> l) - 1)).collect();
    let siblings = reader.read_hashes(&stored)?;
    if siblings.len() != stored.len() {
        return Err(Error::Storage("wrong number of hashes returned".into()));
    }
    let mut out = Vec::with_capacity(1 + m as usize);
    let mut h = leaf;
    out.push(h);
    for sibling in siblings.iter().rev() {
        h = node_hash(sibling, &h);
        out.push(h);
    }
    Ok(out)
}

/// An append-only in-memory log of stored hashes: builds the tree as leaves arrive, serves
/// proofs, and is what the benchmarks time. Storage adapters keep the same array elsewhere.
#[derive(Clone, Default)]
pub struct MemoryTree {
    hashes: Vec<Hash>,
    size: u64,
    hasher: Hasher,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty tree with room for `leaves` leaves without reallocating.
    pub fn with_capacity(leaves: usize) -> Self {
        Self {
            hashes: Vec::with_capacity(2 * leaves),
            ..Self::default()
        }
    }

    /// Appends a leaf with this data (hashed per RFC 6962 section 2.1); returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        let h = self.hasher.leaf(data);
        self.append_hash(h)
    }

    /// Appends a leaf by its leaf hash; returns its index.
    pub fn append_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.size;
        let mut h = leaf;
        self.hashes.push(h);
        for l in 0..(index + 1).trailing_zeros() {
            let sibling = self.hashes[stored_hash_index(l, (index >> l) - 1) as usize];
            h = self.hasher.node(&sibling, &h);
            self.hashes.push(h);
        }
        self.size += 1;
        index
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored hashes, in stored-hash order.
    pub fn stored(&self) -> &[Hash] {
        &self.hashes
    }

    /// The root hash of the tree's first `size` leaves (any earlier size, for consistency).
    pub fn root(&self, size: u64) -> Result<Hash, Error> {
        if size > self.size {
            return Err(Error::Range(format!("size {size} > tree size {}", self.size)));
        }
        tree_hash(size, self.hashes.as_slice())
    }
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, stored: &[u64]) -> Result<Vec<Hash>, Error> {
        self.hashes.as_slice().read_hashes(stored)
    }
}

/// A streaming Merkle Tree Hash over leaves as they come, in O(log n) memory: the root of every
/// prefix without storing the tree (what `tollgate verify` needs to recompute a log from its
/// events and compare it with each checkpoint). Allocation-free after the first leaf.
#[derive(Clone, Default)]
pub struct RootBuilder {
    /// Roots of the perfect subtrees covering the leaves so far, largest first.
    stack: Vec<Hash>,
    size: u64,
    hasher: Hasher,
}

impl RootBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            stack: Vec::with_capacity(64),
            ..Self::default()
        }
    }

    /// Adds a leaf by its data (hashed per RFC 6962 section 2.1).
    pub fn push(&mut self, data: &[u8]) {
        let h = self.hasher.leaf(data);
        self.push_hash(h);
    }

    /// Adds a leaf by its leaf hash.
    pub fn push_hash(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        // Each trailing one bit of the old size is a perfect subtree this leaf completes.
        while n & 1 == 1 {
            if let Some(left) = self.stack.pop() {
                h = self.hasher.node(&left, &h);
            }
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// MTH of the leaves so far (RFC 6962 section 2.1: the subtrees fold right to left).
    pub fn root(&mut self) -> Hash {
        let Some((last, rest)) = self.stack.split_last() else {
            return EMPTY_ROOT;
        };
        let mut r = *last;
        for h in rest.iter().rev() {
            r = self.hasher.node(h, &r);
        }
        r
    }
}

/// Appends the stored positions of the maximal complete subtrees covering leaves [lo, hi),
/// left to right (their hashes fold right-to-left into MTH(D[lo:hi])).
fn subtree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let k = pow2_le(hi - lo);
        let level = k.trailing_zeros();
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// Folds the hashes that [`subtree_index`] asked for into MTH(D[lo:hi]), consuming them.
fn subtree_hash(mut lo: u64, hi: u64, hashes: &mut &[Hash]) -> Result<Hash, Error> {
    let mut count = 0;
    while lo < hi {
        lo += pow2_le(hi - lo);
        count += 1;
    }
    if count == 0 || hashes.len() < count {
        return Err(Error::Storage("too few hashes returned".into()));
    }
    let (mine, rest) = hashes.split_at(count);
    *hashes = rest;
    let mut th = mine[count - 1];
    for h in mine[..count - 1].iter().rev() {
        th = node_hash(h, &th);
    }
    Ok(th)
}

fn read_exact(reader: &(impl HashReader + ?Sized), stored: &[u64]) -> Result<Vec<Hash>, Error> {
    let hashes = reader.read_hashes(stored)?;
    if hashes.len() != stored.len() {
        return Err(Error::Storage(format!(
            "asked {} hashes, got {}",
            stored.len(),
            hashes.len()
        )));
    }
    Ok(hashes)
}

/// The Merkle Tree Hash of the first `size` leaves (RFC 6962 section 2.1), read from stored
/// hashes: at most log2(size) + 1 of them.
pub fn tree_hash(size: u64, reader: &(impl HashReader + ?Sized)) -> Result<Hash, Error> {
    check_size(size)?;
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let mut need = Vec::new();
    subtree_index(0, size, &mut need);
    let hashes = read_exact(reader, &need)?;
    subtree_hash(0, size, &mut hashes.as_slice())
}

/// RFC 6962 section 2.1.1 PATH(m, D[lo:hi]): the stored positions it needs, in proof order
/// reversed (deepest last), collected left to right.
fn inclusion_index(lo: u64, hi: u64, m: u64, need: &mut Vec<u64>) {
    if lo + 1 == hi {
        return;
    }
    let k = split(hi - lo);
    if m < lo + k {
        inclusion_index(lo, lo + k, m, need);
        subtree_index(lo + k, hi, need);
    } else {
        subtree_index(lo, lo + k, need);
        inclusion_index(lo + k, hi, m, need);
    }
}

fn inclusion_fold(lo: u64, hi: u64, m: u64, hashes: &mut &[Hash], proof: &mut Vec<Hash>) -> Result<(), Error> {
    if lo + 1 == hi {
        return Ok(());
    }
    let k = split(hi - lo);
    let sibling;
    if m < lo + k {
        inclusion_fold(lo, lo + k, m, hashes, proof)?;
        sibling = subtree_hash(lo + k, hi, hashes)?;
    } else {
        sibling = subtree_hash(lo, lo + k, hashes)?;
        inclusion_fold(lo + k, hi, m, hashes, proof)?;
    }
    proof.push(sibling);
    Ok(())
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `size` leaves
/// (RFC 6962 section 2.1.1), from the leaf's sibling up to the root's child.
pub fn prove_inclusion(index: u64, size: u64, reader: &(impl HashReader + ?Sized)) -> Result<Vec<Hash>, Error> {
    check_size(size)?;
    if index >= size {
        return Err(Error::Range(format!("leaf index {index} >= tree size {size}")));
    }
    let mut need = Vec::new();
    inclusion_index(0, size, index, &mut need);
    if need.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = read_exact(reader, &need)?;
    let mut cursor = hashes.as_slice();
    let mut proof = Vec::with_capacity(64);
    inclusion_fold(0, size, index, &mut cursor, &mut proof)?;
    Ok(proof)
}

/// RFC 6962 section 2.1.2 SUBPROOF(m, D[lo:hi], b): the stored positions it needs.
fn consistency_index(lo: u64, hi: u64, m: u64, need: &mut Vec<u64>) {
    if m == hi {
        if lo != 0 {
            subtree_index(lo, hi, need);
        }
        return;
    }
    let k = split(hi - lo);
    if m <= lo + k {
        consistency_index(lo, lo + k, m, need);
        subtree_index(lo + k, hi, need);
    } else {
        subtree_index(lo, lo + k, need);
        consistency_index(lo + k, hi, m, need);
    }
}

fn consistency_fold(lo: u64, hi: u64, m: u64, hashes: &mut &[Hash], proof: &mut Vec<Hash>) -> Result<(), Error> {
    if m == hi {
        // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}.
        if lo != 0 {
            proof.push(subtree_hash(lo, hi, hashes)?);
        }
        return Ok(());
    }
    let k = split(hi - lo);
    let other;
    if m <= lo + k {
        consistency_fold(lo, lo + k, m, hashes, proof)?;
        other = subtree_hash(lo + k, hi, hashes)?;
    } else {
        other = subtree_hash(lo, lo + k, hashes)?;
        consistency_fold(lo + k, hi, m, hashes, proof)?;
    }
    proof.push(other);
    Ok(())
}

/// The consistency proof between the trees of `old_size` and `new_size` leaves
/// (RFC 6962 section 2.1.2). Empty when `old_size` is 0 or equals `new_size`.
pub fn prove_consistency(
    old_size: u64,
    new_size: u64,
    reader: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, Error> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(Error::Range(format!("old size {old_size} > new size {new_size}")));
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let mut need = Vec::new();
    consistency_index(0, new_size, old_size, &mut need);
    let hashes = read_exact(reader, &need)?;
    let mut cursor = hashes.as_slice();
    let mut proof = Vec::with_capacity(64);
    consistency_fold(0, new_size, old_size, &mut cursor, &mut proof)?;
    Ok(proof)
}

/// The root an inclusion proof leads to from leaf hash `leaf` at `index` in a tree of `size`
/// leaves: RFC 9162 section 2.1.3.2 without the final comparison. Allocation-free.
pub fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Result<Hash, Error> {
    // Step 1: the leaf must be in the tree.
    if index >= size {
        return Err(Error::Range(format!("leaf index {index} >= tree size {size}")));
    }
    // Step 2-3.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    let mut hasher = Hasher::new();
    // Step 4.
    for p in proof {
        if sn == 0 {
            return Err(Error::Proof("inclusion proof too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = hasher.node(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = hasher.node(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5: sn must have reached 0 (the proof is not too short).
    if sn != 0 {
        return Err(Error::Proof("inclusion proof too short"));
    }
    Ok(r)
}

/// Verifies that leaf hash `leaf` is at `index` in the tree of `size` leaves with root `root`
/// (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), Error> {
    if root_from_inclusion(leaf, index, size, proof)? != *root {
        return Err(Error::Proof("inclusion proof does not lead to the root"));
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 section 2.1.4.2). Between equal sizes
/// the proof must be empty and the roots equal; from the empty tree, the proof must be empty
/// and `old_root` the empty-tree hash.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    if old_size > new_size {
        return Err(Error::Range(format!("old size {old_size} > new size {new_size}")));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(Error::Proof("consistency proof between equal sizes must be empty"));
        }
        if old_root != new_root {
            return Err(Error::Proof("equal sizes with different roots"));
        }
        return Ok(());
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(Error::Proof("consistency proof from the empty tree must be empty"));
        }
        if *old_root != EMPTY_ROOT {
            return Err(Error::Proof("root of the empty tree is not SHA-256()"));
        }
        return Ok(());
    }
    // Step 1.
    if proof.is_empty() {
        return Err(Error::Proof("empty consistency proof"));
    }
    // Step 2: if first is a power of two, the path starts with first_hash itself.
    let prepend = old_size.is_power_of_two();
    let mut items = proof.iter();
    let first = if prepend {
        old_root
    } else {
        items.next().ok_or(Error::Proof("empty consistency proof"))?
    };
    // Step 3-4.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*first, *first);
    let mut hasher = Hasher::new();
    // Step 6.
    for c in items {
        if sn == 0 {
            return Err(Error::Proof("consistency proof too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = hasher.node(c, &fr);
            sr = hasher.node(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = hasher.node(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(Error::Proof("consistency proof too short"));
    }
    if fr != *old_root {
        return Err(Error::Proof("consistency proof does not lead to the old root"));
    }
    if sr != *new_root {
        return Err(Error::Proof("consistency proof does not lead to the new root"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH straight from the recursive definition of RFC 6962 section 2.1, for cross-checks.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn stored_hash_index_round_trips_and_counts() {
        for level in 0..10 {
            for n in 0..100 {
                let x = stored_hash_index(level, n);
                assert_eq!(split_stored_hash_index(x), (level, n), "level {level} n {n}");
            }
        }
        let mut tree = MemoryTree::new();
        for i in 0..300u64 {
            tree.append(format!("leaf {i}").as_bytes());
            assert_eq!(stored_hash_count(i + 1), tree.stored().len() as u64);
            // The stored hashes a storage adapter appends for leaf i are the tree's.
            let start = stored_hash_index(0, i) as usize;
            let added = stored_hashes_for_leaf(i, leaf_hash(format!("leaf {i}").as_bytes()), &tree.stored()[..start]);
            assert_eq!(added.unwrap().as_slice(), &tree.stored()[start..]);
        }
    }

    #[test]
    fn tree_hash_matches_the_recursive_definition_and_proofs_verify() {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        let mut roots = vec![EMPTY_ROOT];
        for i in 0..70u64 {
            let data = format!("leaf {i}").into_bytes();
            tree.append(&data);
            leaves.push(data);
            let root = tree.root(i + 1).unwrap();
            assert_eq!(root, mth(&leaves), "size {}", i + 1);
            roots.push(root);
        }
        for size in 1..=70u64 {
            for index in 0..size {
                let proof = prove_inclusion(index, size, &tree).unwrap();
                let leaf = leaf_hash(&leaves[index as usize]);
                verify_inclusion(&leaf, index, size, &proof, &roots[size as usize]).unwrap();
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k][0] ^= 1;
                    assert!(verify_inclusion(&leaf, index, size, &bad, &roots[size as usize]).is_err());
                }
            }
            for old in 0..=size {
                let proof = prove_consistency(old, size, &tree).unwrap();
                verify_consistency(old, size, &roots[old as usize], &roots[size as usize], &proof).unwrap();
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k][31] ^= 0x80;
                    assert!(verify_consistency(old, size, &roots[old as usize], &roots[size as usize], &bad).is_err());
                }
            }
        }
    }

    #[test]
    fn root_builder_agrees_with_the_stored_tree_at_every_size() {
        let mut tree = MemoryTree::new();
        let mut builder = RootBuilder::new();
        assert_eq!(builder.root(), EMPTY_ROOT);
        for i in 0..1100u64 {
            let data = i.to_be_bytes();
            tree.append(&data);
            builder.push(&data);
            assert_eq!(builder.root(), tree.root(i + 1).unwrap(), "size {}", i + 1);
        }
        assert_eq!(builder.size(), 1100);
    }

    #[test]
    fn out_of_range_inputs_are_errors_not_panics() {
        let tree = MemoryTree::new();
        assert!(prove_inclusion(0, 0, &tree).is_err());
        assert!(prove_consistency(2, 1, &tree).is_err());
        assert!(root_from_inclusion(&EMPTY_ROOT, 5, 5, &[]).is_err());
        assert!(verify_consistency(3, 2, &EMPTY_ROOT, &EMPTY_ROOT, &[]).is_err());
        assert!(verify_consistency(0, 5, &[1; 32], &EMPTY_ROOT, &[]).is_err());
        assert!(verify_inclusion(&EMPTY_ROOT, 0, u64::MAX, &[EMPTY_ROOT; 70], &EMPTY_ROOT).is_err());
        assert!(prove_inclusion(0, u64::MAX, &tree).is_err());
        assert!(tree_hash(u64::MAX, &tree).is_err());
        // A reader that is missing hashes fails cleanly.
        let empty: Vec<Hash> = Vec::new();
        assert!(tree_hash(3, &empty).is_err());
    }
}
