//! Untrusted input never panics: every parser and verifier gets truncations, byte mutations and
//! random sizes of valid inputs, and must answer with a value or an error.

use tollgate_tlog::merkle::{root_from_inclusion, verify_consistency, Hash, MemoryTree, EMPTY_ROOT};
use tollgate_tlog::note::{now_or_never, open_note, parse_unverified, sign_note, Ed25519Signer, Verifiers};
use tollgate_tlog::tile::{hash_from_tile, parse_entry_bundle, Tile};
use tollgate_tlog::{verify_proof, Checkpoint, Error, TileHashReader, TileReader, TlogProof, VerifierKey};

/// xorshift64*: a small deterministic generator, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Truncations at every position, and `rounds` random single-byte changes, insertions and
/// deletions of `valid`.
fn mutations(valid: &[u8], rng: &mut Rng, rounds: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..valid.len()).map(|i| valid[..i].to_vec()).collect();
    for _ in 0..rounds {
        let mut m = valid.to_vec();
        let at = rng.below(m.len() as u64) as usize;
        match rng.below(3) {
            0 => m[at] = rng.next() as u8,
            1 => m.insert(
                at,
                [b'\n', b' ', b'+', b'/', b'=', 0xe2, 0, b'0'][rng.below(8) as usize],
            ),
            _ => {
                m.remove(at);
            }
        }
        out.push(m);
    }
    out
}

fn signed_fixture() -> (String, String, Verifiers, Vec<u8>) {
    let signer = Ed25519Signer::from_seed("example.com/log", &[4; 32]).unwrap();
    let verifiers = Verifiers::new(vec![signer.verifier_key()]);
    let mut tree = MemoryTree::new();
    for i in 0..11u8 {
        tree.append(&[i]);
    }
    let cp = Checkpoint::new("example.com/log", 11, tree.root(11).unwrap());
    let note = now_or_never(sign_note(&cp.to_text(), &[&signer])).unwrap().unwrap();
    let proof = TlogProof {
        extra: Some(b"x".to_vec()),
        index: 3,
        path: tollgate_tlog::merkle::prove_inclusion(3, 11, &tree).unwrap(),
        checkpoint: note.clone(),
    };
    assert_eq!(verify_proof(&proof.encode(), &[3], &verifiers).unwrap(), (3, 11));
    (
        note,
        proof.encode(),
        verifiers,
        signer.verifier_key().to_string().into_bytes(),
    )
}

#[test]
fn parsers_never_panic_on_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (note, proof, verifiers, vkey) = signed_fixture();
    let mut accepted = 0;
    for m in mutations(proof.as_bytes(), &mut rng, 300) {
        let text = String::from_utf8_lossy(&m);
        let _ = TlogProof::parse(&text);
        if verify_proof(&text, &[3], &verifiers).is_ok() {
            accepted += 1;
        }
    }
    // Only mutations that leave the proof's meaning intact may verify (e.g. none at all).
    assert!(accepted < 20, "{accepted} mutated proofs verified");
    for m in mutations(note.as_bytes(), &mut rng, 300) {
        let _ = parse_unverified(&m);
        if let Ok(n) = open_note(&m, &verifiers) {
            // A note that still verifies has the signed text.
            assert_eq!(n.text, note.split("\n\n").next().unwrap().to_owned() + "\n");
        }
        let _ = Checkpoint::parse(&String::from_utf8_lossy(&m));
    }
    for m in mutations(&vkey, &mut rng, 2000) {
        let _ = VerifierKey::parse(&String::from_utf8_lossy(&m));
    }
    for m in mutations(b"tile/3/x001/x234/067.p/17", &mut rng, 2000) {
        let text = String::from_utf8_lossy(&m);
        for h in [0, 1, 8, 15, 16, 255] {
            let _ = Tile::parse_path(&text, h);
        }
        let _ = Tile::parse_entries_path(&text);
    }
    for m in mutations(&[0, 3, b'a', b'b', b'c', 0, 0, 1, 0xff], &mut rng, 2000) {
        let _ = parse_entry_bundle(&m);
    }
}

#[test]
fn verifiers_never_panic_on_random_sizes_and_proofs() {
    let mut rng = Rng(42);
    let interesting = [
        0,
        1,
        2,
        3,
        255,
        256,
        257,
        1 << 32,
        (1 << 62) + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    for _ in 0..5_000 {
        let pick = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                interesting[rng.below(interesting.len() as u64) as usize]
            } else {
                let bits = rng.below(64);
                rng.below(1 << bits)
            }
        };
        let (a, b) = (pick(&mut rng), pick(&mut rng));
        let proof: Vec<Hash> = (0..rng.below(70)).map(|i| [i as u8; 32]).collect();
        let _ = root_from_inclusion(&EMPTY_ROOT, a, b, &proof);
        let _ = verify_consistency(a, b, &EMPTY_ROOT, &[1; 32], &proof);
        let tile = Tile {
            height: rng.below(20) as u8,
            level: rng.below(70) as u8,
            n: pick(&mut rng),
            width: rng.below(300) as u16,
        };
        let data = vec![0u8; (rng.below(10) * 32) as usize];
        let _ = hash_from_tile(&tile, &data, pick(&mut rng) % (1 << 60));
        let _ = tile.path();
        let _ = (
            tile.entry_range(),
            tile.stored_indexes().count(),
            tile.in_range(),
            tile.entries_path(),
        );
        let _ = tollgate_tlog::tile::read_tile_data(&tile, &[[0u8; 32]; 4][..]);
    }
}

/// Tiles that are short, empty, or of the wrong height are errors, not panics.
struct Hostile(u8, usize);

impl TileReader for Hostile {
    fn height(&self) -> u8 {
        self.0
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, Error> {
        Ok(tiles.iter().map(|_| vec![7u8; self.1]).collect())
    }
}

#[test]
fn tile_hash_reader_survives_hostile_tiles() {
    for height in [0u8, 1, 2, 8, 16] {
        for len in [0usize, 31, 32, 64, 8192] {
            for size in [1u64, 2, 255, 256, 257, 70_000] {
                let store = Hostile(height, len);
                let thr = TileHashReader::new(size, [9; 32], &store);
                assert!(tollgate_tlog::merkle::tree_hash(size, &thr).is_err());
                assert!(tollgate_tlog::merkle::prove_inclusion(0, size, &thr).is_err() || size == 1);
            }
        }
    }
}
