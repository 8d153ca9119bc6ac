//! Timings for issue 15's budgets (verify >= 200,000 events/s on 2 cores; proofs fast enough to
//! serve per request). Ignored by default; run in release:
//!
//!     cargo test -p tollgate-tlog --release --test timing -- --ignored --nocapture
//!
//! Each timing also checks its result, so a fast wrong answer fails.

use std::collections::HashMap;
use std::time::Instant;

use tollgate_tlog::merkle::{prove_inclusion, root_from_inclusion, verify_inclusion, Hasher, MemoryTree, RootBuilder};
use tollgate_tlog::note::{now_or_never, open_note, sign_note, Ed25519Signer, Verifiers};
use tollgate_tlog::tile::{new_tiles, read_tile_data, TILE_HEIGHT};
use tollgate_tlog::{verify_proof, Checkpoint, Error, Tile, TileHashReader, TileReader, TlogProof};

const EVENTS: u64 = 1_000_000;

/// C2SP tiles kept in memory, by (level, index); a partial tile's reader gets the widest data.
struct TileStore {
    tiles: HashMap<(u8, u64), Vec<u8>>,
}

impl TileReader for TileStore {
    fn height(&self) -> u8 {
        TILE_HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, Error> {
        tiles
            .iter()
            .map(|t| {
                self.tiles
                    .get(&(t.level, t.n))
                    .cloned()
                    .ok_or_else(|| Error::Storage(t.path()))
            })
            .collect()
    }
}

/// An audit-event-like NDJSON line of about 300 bytes.
fn event(i: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(
        format!(
            "{{\"v\":2,\"request_id\":\"01J{i:023}\",\"ts\":\"2026-12-03T08:00:00.{:06}Z\",\"route\":\"POST /v1/orders\",\"status\":200,\"principal\":{{\"kind\":\"api_key\",\"id\":\"k_{:08}\",\"scopes\":[\"orders:write\"]}},\"decision\":\"allow\",\"latency_ms\":{},\"bytes_in\":512,\"bytes_out\":1024}}",
            i % 1_000_000,
            i % 97,
            i % 250
        )
        .as_bytes(),
    );
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:.0}/s ({:.3} us each)", n as f64 / secs, secs * 1e6 / n as f64)
}

#[test]
#[ignore]
fn timing_tree_building_proofs_and_verification() {
    let mut buf = Vec::with_capacity(512);

    // Leaf hashing alone, with one reusable hasher.
    let mut hasher = Hasher::new();
    let t = Instant::now();
    for i in 0..EVENTS {
        event(i, &mut buf);
        std::hint::black_box(hasher.leaf(&buf));
    }
    let format_and_hash = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..EVENTS {
        std::hint::black_box(hasher.leaf(&buf));
    }
    let hash_only = t.elapsed().as_secs_f64();
    println!(
        "leaf hash of a {}-byte event: {} (formatting included: {})",
        buf.len(),
        rate(EVENTS, hash_only),
        rate(EVENTS, format_and_hash)
    );

    // Streaming root over 1,000,000 events (what verify does), O(log n) memory.
    let mut builder = RootBuilder::new();
    let t = Instant::now();
    for i in 0..EVENTS {
        event(i, &mut buf);
        builder.push(&buf);
    }
    let streaming_root = builder.root();
    println!(
        "streaming root over {EVENTS} events: {}",
        rate(EVENTS, t.elapsed().as_secs_f64())
    );

    // Full stored tree (what the writer keeps, so proofs can be served).
    let mut tree = MemoryTree::with_capacity(EVENTS as usize);
    let t = Instant::now();
    for i in 0..EVENTS {
        event(i, &mut buf);
        tree.append(&buf);
    }
    let build = t.elapsed().as_secs_f64();
    let root = tree.root(EVENTS).unwrap();
    assert_eq!(root, streaming_root);
    println!(
        "stored tree over {EVENTS} events: {} ({} stored hashes, {} MiB)",
        rate(EVENTS, build),
        tree.stored().len(),
        tree.stored().len() * 32 / (1 << 20)
    );

    // Inclusion proof generation and verification.
    let n = 100_000u64;
    let step = EVENTS / n;
    let t = Instant::now();
    let proofs: Vec<Vec<[u8; 32]>> = (0..n)
        .map(|k| prove_inclusion(k * step, EVENTS, &tree).unwrap())
        .collect();
    println!(
        "inclusion proof generation (tree of 1M, in memory): {}",
        rate(n, t.elapsed().as_secs_f64())
    );
    let leaves: Vec<[u8; 32]> = (0..n)
        .map(|k| tree.stored()[tollgate_tlog::merkle::stored_hash_index(0, k * step) as usize])
        .collect();
    let t = Instant::now();
    for k in 0..n {
        verify_inclusion(&leaves[k as usize], k * step, EVENTS, &proofs[k as usize], &root).unwrap();
    }
    println!(
        "inclusion proof verification (20 hashes): {}",
        rate(n, t.elapsed().as_secs_f64())
    );
    assert!(root_from_inclusion(&leaves[1], 0, EVENTS, &proofs[0]).unwrap() != root);

    // Proofs served from C2SP tiles (what `tollgate prove` does against the object store, minus
    // the fetches): every tile read is authenticated against the checkpoint's root.
    let tiles = TileStore {
        tiles: new_tiles(TILE_HEIGHT, 0, EVENTS)
            .into_iter()
            .map(|t| ((t.level, t.n), read_tile_data(&t, &tree).unwrap()))
            .collect(),
    };
    let thr = TileHashReader::new(EVENTS, root, &tiles);
    let m = 2_000u64;
    let t = Instant::now();
    for k in 0..m {
        let index = (k * 7919) % EVENTS;
        let proof = prove_inclusion(index, EVENTS, &thr).unwrap();
        std::hint::black_box(proof);
    }
    println!(
        "inclusion proof from authenticated tiles (tree of 1M): {}",
        rate(m, t.elapsed().as_secs_f64())
    );
    for k in 0..50 {
        let index = (k * 7919 * 40) % EVENTS;
        assert_eq!(
            prove_inclusion(index, EVENTS, &thr).unwrap(),
            prove_inclusion(index, EVENTS, &tree).unwrap()
        );
    }

    // Receipts (issue 15 item 4): per group commit, a small tree over the commit's events, one
    // Ed25519 signature of its root, and each event's path in it.
    let signer = Ed25519Signer::from_seed("tollgate.test/receipts", &[6; 32]).unwrap();
    for batch in [16usize, 64, 256] {
        let commits = 2_000 / batch as u64 + 50;
        let t = Instant::now();
        for c in 0..commits {
            let mut small = MemoryTree::with_capacity(batch);
            for i in 0..batch as u64 {
                event(c * 1000 + i, &mut buf);
                small.append(&buf);
            }
            let size = small.size();
            let small_root = small.root(size).unwrap();
            let sig = signer.sign_now(&small_root);
            std::hint::black_box(sig);
            for i in 0..size {
                std::hint::black_box(prove_inclusion(i, size, &small).unwrap());
            }
        }
        println!(
            "receipts, group commits of {batch}: {} per request (hashing, tree, proof, 1 signature per commit)",
            rate(commits * batch as u64, t.elapsed().as_secs_f64())
        );
    }

    // Checkpoint signing and note verification (Ed25519), and a whole tlog-proof.
    let signer = Ed25519Signer::from_seed("tollgate.test/log", &[5; 32]).unwrap();
    let m = 5_000u64;
    let verifiers = Verifiers::new(vec![signer.verifier_key()]);
    let text = Checkpoint::new("tollgate.test/log", EVENTS, root).to_text();
    let t = Instant::now();
    let mut signed = String::new();
    for _ in 0..m {
        signed = now_or_never(sign_note(&text, &[&signer])).unwrap().unwrap();
    }
    println!("checkpoint signing: {}", rate(m, t.elapsed().as_secs_f64()));
    let t = Instant::now();
    for _ in 0..m {
        open_note(signed.as_bytes(), &verifiers).unwrap();
    }
    println!("checkpoint note verification: {}", rate(m, t.elapsed().as_secs_f64()));
    event(7 * step, &mut buf);
    let proof = TlogProof {
        extra: None,
        index: 7 * step,
        path: proofs[7].clone(),
        checkpoint: signed,
    }
    .encode();
    let t = Instant::now();
    for _ in 0..m {
        assert_eq!(verify_proof(&proof, &buf, &verifiers).unwrap(), (7 * step, EVENTS));
    }
    println!(
        "verify_proof (parse + Ed25519 + inclusion): {}",
        rate(m, t.elapsed().as_secs_f64())
    );
}
