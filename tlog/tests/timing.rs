//! Timings for issue 15's budgets (verify >= 200,000 events/s on 2 cores; proofs fast enough to
//! serve per request). Ignored by default; run in release:
//!
//!     cargo test -p tollgate-tlog --release --test timing -- --ignored --nocapture
//!
//! Each timing also checks its result, so a fast wrong answer fails.

use std::time::Instant;

use tollgate_tlog::merkle::{prove_inclusion, root_from_inclusion, verify_inclusion, Hasher, MemoryTree, RootBuilder};
use tollgate_tlog::note::{now_or_never, open_note, sign_note, Ed25519Signer, Verifiers};
use tollgate_tlog::{verify_proof, Checkpoint, TlogProof};

const EVENTS: u64 = 1_000_000;

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

    // Checkpoint signing and note verification (Ed25519), and a whole tlog-proof.
    let signer = Ed25519Signer::from_seed("tollgate.test/log", &[5; 32]).unwrap();
    let verifiers = Verifiers::new(vec![signer.verifier_key()]);
    let text = Checkpoint::new("tollgate.test/log", EVENTS, root).to_text();
    let m = 5_000u64;
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
