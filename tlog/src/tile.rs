//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): hash tiles, their paths, and entry bundles.
//!
//! A tile at level L holds up to 2^H consecutive hashes of tree level H*L (H = 8 for C2SP,
//! section "Merkle Tree": full tiles are 256 hashes wide). The stored-hash arithmetic is that
//! of golang.org/x/mod/sumdb/tlog, whose tiles are the same objects with a configurable height;
//! the height stays a parameter here so that its test vectors apply, but [`Tile::path`] is the
//! C2SP path, which has no height element.

use crate::merkle::{
    node_hash, split_stored_hash_index, stored_hash_index, Hash, HashReader, HASH_SIZE, MAX_TREE_SIZE,
};
use crate::Error;
use std::collections::HashMap;

/// The C2SP tile height: full tiles are 2^8 = 256 hashes (tlog-tiles "Merkle Tree").
pub const TILE_HEIGHT: u8 = 8;

/// The width of a full C2SP tile, in hashes.
pub const FULL_WIDTH: u16 = 1 << TILE_HEIGHT;

/// The largest tile height handled (a full tile's width must fit a `u16`); C2SP uses 8.
pub const MAX_HEIGHT: u8 = 15;

fn valid_height(height: u8) -> bool {
    (1..=MAX_HEIGHT).contains(&height)
}

/// One tile: `width` hashes of tree level `height * level`, starting at hash `n * 2^height`
/// of that level. A tile narrower than 2^height is partial (tlog-tiles "Partial Tiles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// Tile height H: a full tile is 2^H hashes wide (8 in C2SP).
    pub height: u8,
    /// Tile level L (0..=63): the tile's hashes are of tree level H*L.
    pub level: u8,
    /// Index of the tile within its level.
    pub n: u64,
    /// Number of hashes in the tile, 1..=2^H.
    pub width: u16,
}

/// The 3-digit path elements of a tile index, all but the last prefixed with `x`
/// (tlog-tiles "Merkle Tree": 1234067 is `x001/x234/067`).
fn index_path(n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    let mut m = n;
    while m >= 1000 {
        m /= 1000;
        s = format!("x{:03}/{s}", m % 1000);
    }
    s
}

/// A decimal with no leading zeroes (C2SP's "no additional leading zeroes").
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Parses `x001/x234/067` back to 1234067, accepting only the canonical encoding.
fn parse_index_path(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split('/').collect();
    let mut n: u64 = 0;
    for (i, part) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            part.strip_prefix('x')?
        } else {
            part
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(digits.parse::<u64>().ok()?)?;
    }
    (index_path(n) == s).then_some(n)
}

/// Splits `<N>[.p/<W>]` into the index part and the width (full width when absent).
fn parse_index_and_width(s: &str, full: u32) -> Option<(u64, u32)> {
    let (index, width) = match s.split_once(".p/") {
        Some((index, w)) => {
            let w = parse_decimal(w)?;
            if w == 0 || w >= u64::from(full) {
                return None;
            }
            (index, w as u32)
        }
        None => (s, full),
    };
    Some((parse_index_path(index)?, width))
}

impl Tile {
    /// Whether the tile is full (2^height hashes wide).
    pub fn is_full(&self) -> bool {
        1u32.checked_shl(u32::from(self.height)) == Some(u32::from(self.width))
    }

    /// The C2SP path `tile/<L>/<N>[.p/<W>]` (tlog-tiles "Merkle Tree").
    pub fn path(&self) -> String {
        let partial = if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        };
        format!("tile/{}/{}{partial}", self.level, index_path(self.n))
    }

    /// The path of the entry bundle beside this level-0 tile: `tile/entries/<N>[.p/<W>]`
    /// (tlog-tiles "Log entries").
    pub fn entries_path(&self) -> String {
        let partial = if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        };
        format!("tile/entries/{}{partial}", index_path(self.n))
    }

    /// Parses a tile path `tile/<L>/<N>[.p/<W>]` of tiles of this height; only the canonical
    /// encoding is accepted (L 0..=63 and W 1..2^H-1 without leading zeroes, `x` elements).
    pub fn parse_path(path: &str, height: u8) -> Result<Tile, Error> {
        let bad = || Error::Malformed("tile path");
        if !valid_height(height) {
            return Err(bad());
        }
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (level, rest) = rest.split_once('/').ok_or_else(bad)?;
        let level = parse_decimal(level).filter(|&l| l <= 63).ok_or_else(bad)?;
        let (n, width) = parse_index_and_width(rest, 1u32 << height).ok_or_else(bad)?;
        Ok(Tile {
            height,
            level: level as u8,
            n,
            width: width as u16,
        })
    }

    /// Parses an entry bundle path `tile/entries/<N>[.p/<W>]` to its level-0 tile.
    pub fn parse_entries_path(path: &str) -> Result<Tile, Error> {
        let rest = path
            .strip_prefix("tile/entries/")
            .ok_or(Error::Malformed("entry bundle path"))?;
        let (n, width) =
            parse_index_and_width(rest, u32::from(FULL_WIDTH)).ok_or(Error::Malformed("entry bundle path"))?;
        Ok(Tile {
            height: TILE_HEIGHT,
            level: 0,
            n,
            width: width as u16,
        })
    }

    /// The stored-hash positions ([`stored_hash_index`]) of the tile's hashes, in order: the
    /// hashes of tree level H*L, indexes `n * 2^H ..` (tlog-tiles "Merkle Tree"). The hashes of
    /// the H-1 levels above them are computed from these ([`hash_from_tile`]).
    /// Empty for a tile outside a tree of [`MAX_TREE_SIZE`] leaves or of an invalid height.
    pub fn stored_indexes(&self) -> impl Iterator<Item = u64> {
        let level = u32::from(self.height) * u32::from(self.level);
        let (start, _) = self.entry_range();
        let width = if self.in_range() { u64::from(self.width) } else { 0 };
        let start = start >> level.min(63);
        (0..width).map(move |i| stored_hash_index(level, start + i))
    }

    /// Whether the tile is valid (height 1..=[`MAX_HEIGHT`], level <= 63, width 1..=2^H) and
    /// within a tree of [`MAX_TREE_SIZE`] leaves.
    pub fn in_range(&self) -> bool {
        valid_height(self.height)
            && self.level <= 63
            && self.width >= 1
            && u32::from(self.width) <= 1u32 << self.height
            && self.entry_range().1 <= MAX_TREE_SIZE
    }

    /// The index range of entries `[start, end)` the full tile spans (tlog-tiles "start index").
    /// Saturates at `u64::MAX` for tiles beyond any tree.
    pub fn entry_range(&self) -> (u64, u64) {
        let shift = u32::from(self.height) * (u32::from(self.level) + 1);
        let at = |n: u64| -> u64 {
            match n {
                0 => 0,
                _ if shift >= 64 => u64::MAX,
                _ => u64::try_from(u128::from(n) << shift).unwrap_or(u64::MAX),
            }
        };
        (at(self.n), at(self.n.saturating_add(1)))
    }
}

/// The tiles to write when the tree grows from `old_size` to `new_size` leaves: every tile
/// that is new or wider, full tiles first at each level, then the partial one
/// (golang.org/x/mod/sumdb/tlog `NewTiles`; tlog-tiles "Partial Tiles"). None for a height
/// outside 1..=[`MAX_HEIGHT`].
pub fn new_tiles(height: u8, old_size: u64, new_size: u64) -> Vec<Tile> {
    let h = u32::from(height);
    let mut tiles = Vec::new();
    if !valid_height(height) {
        return tiles;
    }
    let mut level = 0u32;
    while level < 64 && h * level < 64 && new_size >> (h * level) > 0 {
        let old_n = old_size >> (h * level);
        let new_n = new_size >> (h * level);
        if old_n != new_n {
            for n in (old_n >> h)..(new_n >> h) {
                tiles.push(Tile {
                    height,
                    level: level as u8,
                    n,
                    width: 1 << h,
                });
            }
            let n = new_n >> h;
            let w = new_n - (n << h);
            if w > 0 {
                tiles.push(Tile {
                    height,
                    level: level as u8,
                    n,
                    width: w as u16,
                });
            }
        }
        level += 1;
    }
    tiles
}

/// The tile holding the stored hash at `stored`, and the byte range in the tile data that the
/// hash is computed from (a level-(H*L+k) hash is the MTH of 2^k bottom-row hashes).
fn tile_for_index_range(height: u8, stored: u64) -> (Tile, usize, usize) {
    let h = u32::from(height);
    let (level, n) = split_stored_hash_index(stored);
    let tile_level = level / h;
    let within = level - tile_level * h;
    let tile_n = (n << within) >> h;
    let n_in = n - ((tile_n << h) >> within);
    let width = (n_in + 1) << within;
    let tile = Tile {
        height,
        level: tile_level as u8,
        n: tile_n,
        width: width as u16,
    };
    let start = ((n_in << within) as usize) * HASH_SIZE;
    let end = (((n_in + 1) << within) as usize) * HASH_SIZE;
    (tile, start, end)
}

/// The smallest tile that holds the stored hash at `stored` (its width reaches just that hash).
pub fn tile_for_index(height: u8, stored: u64) -> Tile {
    tile_for_index_range(height, stored).0
}

/// The Merkle hash of a run of bottom-row tile hashes (a power of two of them).
fn tile_hash(data: &[u8]) -> Hash {
    if data.len() == HASH_SIZE {
        let mut h = [0u8; HASH_SIZE];
        h.copy_from_slice(data);
        return h;
    }
    let half = data.len() / 2;
    node_hash(&tile_hash(&data[..half]), &tile_hash(&data[half..]))
}

/// The stored hash at `stored`, read from (or computed within) the data of tile `tile`.
pub fn hash_from_tile(tile: &Tile, data: &[u8], stored: u64) -> Result<Hash, Error> {
    if !valid_height(tile.height) || tile.level > 63 || tile.width == 0 || u32::from(tile.width) > 1u32 << tile.height {
        return Err(Error::Malformed("tile"));
    }
    if data.len() < usize::from(tile.width) * HASH_SIZE {
        return Err(Error::Malformed("tile data (too short for its width)"));
    }
    let (t, start, end) = tile_for_index_range(tile.height, stored);
    if t.level != tile.level || t.n != tile.n || t.width > tile.width {
        return Err(Error::Range(format!(
            "stored hash {stored} is in {} not {}",
            t.path(),
            tile.path()
        )));
    }
    Ok(tile_hash(&data[start..end]))
}

/// The bytes of tile `tile`: its hashes concatenated, read from a hash source
/// (golang.org/x/mod/sumdb/tlog `ReadTileData`). This is what a log writes at [`Tile::path`].
pub fn read_tile_data(tile: &Tile, reader: &(impl HashReader + ?Sized)) -> Result<Vec<u8>, Error> {
    if !tile.in_range() {
        return Err(Error::Range(format!("tile {} outside any tree", tile.path())));
    }
    let stored: Vec<u64> = tile.stored_indexes().collect();
    let hashes = reader.read_hashes(&stored)?;
    if hashes.len() != stored.len() {
        return Err(Error::Storage("wrong number of hashes returned".into()));
    }
    Ok(hashes.concat())
}

/// A source of tile data: an object store, a directory, an HTTP client.
pub trait TileReader {
    /// The tile height (8 for C2SP tiles).
    fn height(&self) -> u8;

    /// The data of each tile asked for, in order. A store may serve a wider tile's data (a
    /// full tile for a partial one): only the first `width` hashes are read.
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, Error>;

    /// Called with tiles that were read and authenticated against a tree hash (a cache hook).
    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

/// The `k`-th parent of `tile` in a tree of `size` leaves: the tile one level up (k = 1) that
/// holds its hash, trimmed to what the tree has; `None` when the tree has none.
fn tile_parent(tile: Tile, k: u32, size: u64) -> Option<Tile> {
    let h = u32::from(tile.height);
    let level = u32::from(tile.level) + k;
    let mut t = Tile {
        height: tile.height,
        level: level as u8,
        n: tile.n.checked_shr(k * h).unwrap_or(0),
        width: 1 << h,
    };
    let max = if level * h >= 64 { 0 } else { size >> (level * h) };
    if (t.n << h) + u64::from(t.width) >= max {
        if max <= t.n << h {
            return None;
        }
        t.width = (max - (t.n << h)) as u16;
    }
    Some(t)
}

/// A [`HashReader`] that reads hashes from tiles and authenticates every tile against a trusted
/// tree (size and root hash, e.g. from a verified checkpoint) before using it
/// (golang.org/x/mod/sumdb/tlog `TileHashReader`).
pub struct TileHashReader<'a, R: TileReader + ?Sized> {
    size: u64,
    root: Hash,
    tiles: &'a R,
}

impl<'a, R: TileReader + ?Sized> TileHashReader<'a, R> {
    /// A reader for the tree of `size` leaves with root hash `root`.
    pub fn new(size: u64, root: Hash, tiles: &'a R) -> Self {
        Self { size, root, tiles }
    }
}

impl<R: TileReader + ?Sized> HashReader for TileHashReader<'_, R> {
    fn read_hashes(&self, stored: &[u64]) -> Result<Vec<Hash>, Error> {
        let h = self.tiles.height();
        let size = self.size;
        if !valid_height(h) {
            return Err(Error::Malformed("tile height"));
        }
        if size == 0 || size > MAX_TREE_SIZE {
            return Err(Error::Range(format!("no hashes in a tree of size {size}")));
        }
        // The tiles to read, parents before children, with their positions.
        let mut order: Vec<Tile> = Vec::new();
        let mut positions: HashMap<Tile, usize> = HashMap::new();

        // The tiles that hold the subtree hashes of the whole tree: if they fold into the
        // trusted root, they are authentic.
        let mut roots = Vec::new();
        let mut lo = 0u64;
        while lo < size {
            let k = 1u64 << (63 - (size - lo).leading_zeros());
            let level = k.trailing_zeros();
            roots.push(stored_hash_index(level, lo >> level));
            lo += k;
        }
        let mut root_tiles = Vec::with_capacity(roots.len());
        for &x in &roots {
            let tile =
                tile_parent(tile_for_index(h, x), 0, size).ok_or(Error::Range("tile outside the tree".into()))?;
            let j = *positions.entry(tile).or_insert_with(|| {
                order.push(tile);
                order.len() - 1
            });
            root_tiles.push(j);
        }
        let root_count = order.len();

        // The tiles of the hashes asked for, each with the chain of parents up to a tile
        // already planned (and so authenticated before it).
        let mut asked_tiles = Vec::with_capacity(stored.len());
        for &x in stored {
            if x >= stored_hash_index(0, size) {
                return Err(Error::Range(format!("stored hash {x} not in the tree of size {size}")));
            }
            let tile = tile_for_index(h, x);
            let mut k = 0;
            loop {
                let p = tile_parent(tile, k, size).ok_or(Error::Range("tile outside the tree".into()))?;
                if positions.contains_key(&p) {
                    break;
                }
                k += 1;
            }
            for k in (0..k).rev() {
                let p = tile_parent(tile, k, size).ok_or(Error::Range("tile outside the tree".into()))?;
                if !p.is_full() {
                    return Err(Error::InconsistentTile(format!(
                        "partial tile {} has a parent",
                        p.path()
                    )));
                }
                positions.insert(p, order.len());
                order.push(p);
            }
            let own = tile_parent(tile, 0, size).ok_or(Error::Range("tile outside the tree".into()))?;
            asked_tiles.push(*positions.get(&own).ok_or(Error::Range("tile not planned".into()))?);
        }

        let data = self.tiles.read_tiles(&order)?;
        if data.len() != order.len() {
            return Err(Error::Storage(format!(
                "asked {} tiles, got {}",
                order.len(),
                data.len()
            )));
        }

        // Authenticate the root tiles against the trusted tree hash.
        let mut th = hash_from_tile(
            &order[root_tiles[roots.len() - 1]],
            &data[root_tiles[roots.len() - 1]],
            roots[roots.len() - 1],
        )?;
        for i in (0..roots.len() - 1).rev() {
            let left = hash_from_tile(&order[root_tiles[i]], &data[root_tiles[i]], roots[i])?;
            th = node_hash(&left, &th);
        }
        if th != self.root {
            return Err(Error::InconsistentTile(format!(
                "tiles do not hash to the root of tree size {size}"
            )));
        }
        // Then every other (full) tile against its parent, which precedes it in `order`.
        for i in root_count..order.len() {
            let tile = order[i];
            let parent = tile_parent(tile, 1, size).ok_or(Error::Range("tile outside the tree".into()))?;
            let j = *positions
                .get(&parent)
                .ok_or(Error::InconsistentTile("lost a parent tile".into()))?;
            if j >= i {
                return Err(Error::InconsistentTile("parent tile planned after its child".into()));
            }
            let level = u32::from(parent.level) * u32::from(h);
            let expected = hash_from_tile(&parent, &data[j], stored_hash_index(level, tile.n))?;
            let width = usize::from(tile.width) * HASH_SIZE;
            if data[i].len() < width || tile_hash(&data[i][..width]) != expected {
                return Err(Error::InconsistentTile(format!(
                    "{} does not hash to its parent",
                    tile.path()
                )));
            }
        }
        self.tiles.save_tiles(&order, &data);

        stored
            .iter()
            .zip(&asked_tiles)
            .map(|(&x, &j)| hash_from_tile(&order[j], &data[j], x))
            .collect()
    }
}

/// Encodes log entries as an entry bundle: big-endian uint16 length-prefixed entries
/// (tlog-tiles "Log entries"). Entries longer than 65,535 bytes cannot be bundled.
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| 2 + e.as_ref().len()).sum());
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| Error::Range(format!("entry of {} bytes > 65535", e.len())))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an entry bundle back into its entries (tlog-tiles "Log entries").
pub fn parse_entry_bundle(mut data: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 2 {
            return Err(Error::Malformed("entry bundle (truncated length)"));
        }
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        if rest.len() < len {
            return Err(Error::Malformed("entry bundle (truncated entry)"));
        }
        out.push(&rest[..len]);
        data = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{
        leaf_hash, prove_consistency, prove_inclusion, tree_hash, verify_consistency, verify_inclusion, MemoryTree,
    };
    use std::cell::RefCell;

    /// A tile store built from a tree's stored hashes, recording what was read.
    struct Store {
        height: u8,
        tiles: HashMap<(u8, u64), Vec<u8>>,
        reads: RefCell<usize>,
        corrupt: Option<(u8, u64)>,
    }

    impl TileReader for Store {
        fn height(&self) -> u8 {
            self.height
        }
        fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, Error> {
            *self.reads.borrow_mut() += tiles.len();
            tiles
                .iter()
                .map(|t| {
                    let mut d = self
                        .tiles
                        .get(&(t.level, t.n))
                        .cloned()
                        .ok_or(Error::Storage(format!("no {}", t.path())))?;
                    if self.corrupt == Some((t.level, t.n)) {
                        d[0] ^= 1;
                    }
                    Ok(d)
                })
                .collect()
        }
    }

    #[test]
    fn paths_round_trip_and_reject_non_canonical_forms() {
        let t = Tile {
            height: 8,
            level: 0,
            n: 1234067,
            width: 256,
        };
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        assert_eq!(Tile::parse_path("tile/0/x001/x234/067", 8).unwrap(), t);
        // Level 1, tile 2, 3 hashes wide: MTHs of leaves [(512+i)*256, (513+i)*256), stored at
        // level 8, indexes 512..515.
        let t1 = Tile {
            height: 8,
            level: 1,
            n: 2,
            width: 3,
        };
        let want: Vec<u64> = (512..515).map(|i| stored_hash_index(8, i)).collect();
        assert_eq!(t1.stored_indexes().collect::<Vec<_>>(), want);
        let split: Vec<(u32, u64)> = want.iter().map(|&x| split_stored_hash_index(x)).collect();
        assert_eq!(split, vec![(8, 512), (8, 513), (8, 514)]);
        assert_eq!(tile_for_index(8, want[2]), t1);
        let p = Tile {
            height: 8,
            level: 2,
            n: 0,
            width: 1,
        };
        assert_eq!(p.path(), "tile/2/000.p/1");
        assert_eq!(p.entries_path(), "tile/entries/000.p/1");
        assert_eq!(Tile::parse_entries_path("tile/entries/x001/002.p/17").unwrap().n, 1002);
        for bad in [
            "tile/0/x000/001",
            "tile/0/01",
            "tile/00/001",
            "tile/64/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/05",
            "tile/0/1001",
            "tile/0/x1/001",
            "tile/0/",
            "tile/entries/001",
            "tiles/0/001",
            "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert!(Tile::parse_path(bad, 8).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_example_tree_of_70000_has_the_tiles_it_lists() {
        // tlog-tiles "Partial Tiles": 273 full level-0 tiles, a partial one of width 112, one full
        // level-1 tile, a partial level-1 tile of width 17, a partial level-2 tile of width 1.
        let tiles = new_tiles(8, 0, 70_000);
        let full0 = tiles.iter().filter(|t| t.level == 0 && t.is_full()).count();
        assert_eq!(full0, 273);
        let partial: Vec<(u8, u16)> = tiles
            .iter()
            .filter(|t| !t.is_full())
            .map(|t| (t.level, t.width))
            .collect();
        assert_eq!(partial, vec![(0, 112), (1, 17), (2, 1)]);
        assert_eq!(tiles.iter().filter(|t| t.level == 1 && t.is_full()).count(), 1);
        // And a tree of 256: one full level-0 tile and a partial level-1 tile of width 1.
        let tiles = new_tiles(8, 0, 256);
        assert_eq!(
            tiles,
            vec![
                Tile {
                    height: 8,
                    level: 0,
                    n: 0,
                    width: 256
                },
                Tile {
                    height: 8,
                    level: 1,
                    n: 0,
                    width: 1
                }
            ]
        );
    }

    #[test]
    fn tile_hash_reader_serves_proofs_and_rejects_tampered_tiles() {
        for height in [2u8, 8] {
            let mut tree = MemoryTree::new();
            let mut store = Store {
                height,
                tiles: HashMap::new(),
                reads: RefCell::new(0),
                corrupt: None,
            };
            for i in 0..300u64 {
                tree.append(format!("leaf {i}").as_bytes());
                for t in new_tiles(height, i, i + 1) {
                    let data = read_tile_data(&t, &tree).unwrap();
                    if let Some(old) = store.tiles.get(&(t.level, t.n)) {
                        assert_eq!(
                            &data[..old.len()],
                            &old[..],
                            "tile {} not extending the earlier one",
                            t.path()
                        );
                    }
                    store.tiles.insert((t.level, t.n), data);
                }
                let size = i + 1;
                if size % 37 != 0 && size != 300 && size != 256 {
                    continue;
                }
                let root = tree.root(size).unwrap();
                let thr = TileHashReader::new(size, root, &store);
                assert_eq!(tree_hash(size, &thr).unwrap(), root);
                for index in (0..size).step_by(7) {
                    let proof = prove_inclusion(index, size, &thr).unwrap();
                    verify_inclusion(
                        &leaf_hash(format!("leaf {index}").as_bytes()),
                        index,
                        size,
                        &proof,
                        &root,
                    )
                    .unwrap();
                }
                for old in (1..size).step_by(11) {
                    let proof = prove_consistency(old, size, &thr).unwrap();
                    verify_consistency(old, size, &tree.root(old).unwrap(), &root, &proof).unwrap();
                }
                // A wrong root, or one flipped bit in any tile used, is caught.
                let bad = TileHashReader::new(size, [7; 32], &store);
                assert!(matches!(tree_hash(size, &bad), Err(Error::InconsistentTile(_))));
            }
            let size = 300;
            let root = tree.root(size).unwrap();
            let keys: Vec<(u8, u64)> = store.tiles.keys().copied().collect();
            for key in keys {
                store.corrupt = Some(key);
                let thr = TileHashReader::new(size, root, &store);
                let all: Vec<u64> = (0..crate::merkle::stored_hash_count(size))
                    .filter(|&x| x < stored_hash_index(0, size))
                    .collect();
                // Reading every hash of the tree touches every tile: each tampered one is caught.
                assert!(
                    matches!(thr.read_hashes(&all), Err(Error::InconsistentTile(_))),
                    "{key:?}"
                );
                // Hashes read one by one are never wrong: right, or an error.
                for &x in all.iter().step_by(23) {
                    if let Ok(hashes) = thr.read_hashes(&[x]) {
                        assert_eq!(hashes[0], tree.stored()[x as usize]);
                    }
                }
            }
        }
    }

    #[test]
    fn entry_bundles_round_trip_and_reject_truncation() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[0xff; 300]];
        let bundle = encode_entry_bundle(&entries).unwrap();
        assert_eq!(&bundle[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(parse_entry_bundle(&bundle).unwrap(), entries);
        assert!(parse_entry_bundle(&bundle[..bundle.len() - 1]).is_err());
        assert!(parse_entry_bundle(&[0]).is_err());
        assert!(encode_entry_bundle(&[vec![0u8; 65536]]).is_err());
    }
}
