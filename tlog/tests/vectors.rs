//! tollgate-tlog against independent test vectors (issue 15 acceptance: proofs and checkpoints
//! verify with an independent implementation of the C2SP specs). Every file under
//! `tests/vectors/` is named with its source in `tests/vectors/SOURCE.md`.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

use tollgate_tlog::merkle::{
    leaf_hash, prove_consistency, prove_inclusion, verify_consistency, verify_inclusion, Hash, MemoryTree, EMPTY_ROOT,
};
use tollgate_tlog::note::{now_or_never, open_note, parse_unverified, sign_note, Ed25519Signer, Verifiers};
use tollgate_tlog::tile::{new_tiles, Tile};
use tollgate_tlog::{Checkpoint, Error, TlogProof, VerifierKey};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn json(rel: &str) -> Value {
    let text = fs::read_to_string(vectors().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn text(rel: &str) -> String {
    fs::read_to_string(vectors().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hash32(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

fn hex_hash(s: &str) -> Hash {
    hash32(&hex(s)).unwrap()
}

fn b64_hash(s: &str) -> Option<Hash> {
    hash32(&B64.decode(s).ok()?)
}

/// A JSON array of strings (or null) decoded with `f`; `None` when any element is not a hash.
fn hashes(v: &Value, f: fn(&str) -> Option<Hash>) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(|x| f(x.as_str().unwrap())).collect(),
        _ => panic!("not a list: {v}"),
    }
}

/// The 8-leaf tree of the RFC 6962 vectors.
fn rfc6962_tree() -> (MemoryTree, Vec<Vec<u8>>, Value) {
    let v = json("rfc6962-verify-test.json");
    let leaves: Vec<Vec<u8>> = v["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| hex(l.as_str().unwrap()))
        .collect();
    let mut tree = MemoryTree::new();
    for l in &leaves {
        tree.append(l);
    }
    (tree, leaves, v)
}

#[test]
fn rfc6962_roots_and_proofs_are_reproduced_and_corruptions_rejected() {
    let (tree, leaves, v) = rfc6962_tree();
    let roots: Vec<Hash> = v["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| hex_hash(r.as_str().unwrap()))
        .collect();
    for (i, root) in roots.iter().enumerate() {
        assert_eq!(tree.root(i as u64 + 1).unwrap(), *root, "root of size {}", i + 1);
    }
    let some = hex_hash("abacaba000000000000000000000000000000000000000000060061e00123456");
    let mut checked = 0;
    for case in v["inclusion"].as_array().unwrap() {
        let index = case["leaf"].as_u64().unwrap() - 1;
        let size = case["size"].as_u64().unwrap();
        let proof = hashes(&case["proof"], |s| Some(hex_hash(s))).unwrap();
        let root = roots[size as usize - 1];
        let leaf = leaf_hash(&leaves[index as usize]);
        assert_eq!(
            prove_inclusion(index, size, &tree).unwrap(),
            proof,
            "PATH({index}, D[{size}])"
        );
        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
        // The corruptions of verify_test.go corruptInclusionProof: each must fail.
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (index.wrapping_sub(1), size, leaf, root, proof.clone()),
            (index + 1, size, leaf, root, proof.clone()),
            (index ^ 2, size, leaf, root, proof.clone()),
            (index, size * 2, leaf, root, proof.clone()),
            (index, size / 2, leaf, root, proof.clone()),
            (index, size, leaf_hash(b"WrongLeaf"), root, proof.clone()),
            (index, size, leaf, EMPTY_ROOT, proof.clone()),
            (index, size, leaf, some, proof.clone()),
            (index, size, leaf, root, [proof.clone(), vec![root]].concat()),
            (index, size, leaf, root, [vec![root], proof.clone()].concat()),
        ];
        for k in 0..proof.len() {
            let mut bad = proof.clone();
            bad[k][0] ^= 8;
            probes.push((index, size, leaf, root, bad));
        }
        if !proof.is_empty() {
            probes.push((index, size, leaf, root, proof[..proof.len() - 1].to_vec()));
        }
        if proof.len() > 1 {
            probes.push((
                index,
                size,
                leaf,
                root,
                [vec![proof[0], some], proof[1..].to_vec()].concat(),
            ));
        }
        for (i, s, l, r, p) in probes {
            assert!(
                verify_inclusion(&l, i, s, &p, &r).is_err(),
                "probe index {i} size {s} verified"
            );
            checked += 1;
        }
    }
    for case in v["consistency"].as_array().unwrap() {
        let (s1, s2) = (case["size1"].as_u64().unwrap(), case["size2"].as_u64().unwrap());
        let proof = hashes(&case["proof"], |s| Some(hex_hash(s))).unwrap();
        let (r1, r2) = (roots[s1 as usize - 1], roots[s2 as usize - 1]);
        assert_eq!(prove_consistency(s1, s2, &tree).unwrap(), proof, "PROOF({s1}, D[{s2}])");
        verify_consistency(s1, s2, &r1, &r2, &proof).unwrap();
        if proof.is_empty() {
            continue;
        }
        // corruptConsistencyProof.
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (s1 - 1, s2, r1, r2, proof.clone()),
            (s1 + 1, s2, r1, r2, proof.clone()),
            (s1 ^ 2, s2, r1, r2, proof.clone()),
            (s1, s2 * 2, r1, r2, proof.clone()),
            (s1, s2 / 2, r1, r2, proof.clone()),
            (s1, s2, leaf_hash(b"WrongRoot"), r2, proof.clone()),
            (s1, s2, r1, leaf_hash(b"WrongRoot"), proof.clone()),
            (s1, s2, r2, r1, proof.clone()),
            (s1, s2, r1, r2, Vec::new()),
            (s1, s2, r1, r2, [proof.clone(), vec![r1]].concat()),
            (s1, s2, r1, r2, [proof.clone(), vec![r2]].concat()),
            (s1, s2, r1, r2, [vec![r1], proof.clone()].concat()),
            (s1, s2, r1, r2, [vec![r2], proof.clone()].concat()),
            (s1, s2, r1, r2, [vec![proof[0]], proof.clone()].concat()),
            (s1, s2, r1, r2, proof[..proof.len() - 1].to_vec()),
        ];
        for k in 0..proof.len() {
            let mut bad = proof.clone();
            bad[k][0] ^= 16;
            probes.push((s1, s2, r1, r2, bad));
        }
        for (a, b, x, y, p) in probes {
            assert!(verify_consistency(a, b, &x, &y, &p).is_err(), "probe {a}->{b} verified");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} probes");
}

fn json_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in fs::read_dir(vectors().join(dir)).unwrap() {
        for f in fs::read_dir(sub.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn transparency_dev_inclusion_vectors() {
    let (tree, leaves, _) = rfc6962_tree();
    let files = json_files("transparency-dev-merkle/inclusion");
    assert_eq!(files.len(), 8);
    for f in files {
        let v: Value = serde_json::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
        let index = v["leafIdx"].as_u64().unwrap();
        let size = v["treeSize"].as_u64().unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        let result = match (
            b64_hash(v["root"].as_str().unwrap()),
            b64_hash(v["leafHash"].as_str().unwrap()),
            hashes(&v["proof"], b64_hash),
        ) {
            (Some(root), Some(leaf), Some(proof)) => {
                if !want_err {
                    // Ours generates the same proof from the same leaves.
                    assert_eq!(leaf, leaf_hash(&leaves[index as usize]), "{}", f.display());
                    assert_eq!(prove_inclusion(index, size, &tree).unwrap(), proof, "{}", f.display());
                }
                verify_inclusion(&leaf, index, size, &proof, &root)
            }
            _ => Err(Error::Malformed("vector hash")),
        };
        assert_eq!(result.is_err(), want_err, "{}: {result:?}", f.display());
    }
}

#[test]
fn transparency_dev_consistency_vectors() {
    let (tree, _, _) = rfc6962_tree();
    let files = json_files("transparency-dev-merkle/consistency");
    assert_eq!(files.len(), 9);
    for f in files {
        let v: Value = serde_json::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
        let (s1, s2) = (v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap());
        let want_err = v["wantErr"].as_bool().unwrap();
        let result = match (
            b64_hash(v["root1"].as_str().unwrap()),
            b64_hash(v["root2"].as_str().unwrap()),
            hashes(&v["proof"], b64_hash),
        ) {
            (Some(r1), Some(r2), Some(proof)) => {
                if !want_err {
                    assert_eq!(tree.root(s1).unwrap(), r1);
                    assert_eq!(tree.root(s2).unwrap(), r2);
                    assert_eq!(prove_consistency(s1, s2, &tree).unwrap(), proof, "{}", f.display());
                }
                verify_consistency(s1, s2, &r1, &r2, &proof)
            }
            _ => Err(Error::Malformed("vector hash")),
        };
        assert_eq!(result.is_err(), want_err, "{}: {result:?}", f.display());
    }
}

#[test]
fn certificate_transparency_argon2020_proofs_verify() {
    // Real responses of Google's Argon 2020 CT log, from golang.org/x/mod/sumdb/tlog testdata.
    let sth = json("argon2020/sth.json");
    let size = sth["tree_size"].as_u64().unwrap();
    let root = b64_hash(sth["sha256_root_hash"].as_str().unwrap()).unwrap();
    let entries = json("argon2020/entries.json");
    let leaf = B64
        .decode(entries["entries"][0]["leaf_input"].as_str().unwrap())
        .unwrap();
    let p = json("argon2020/proof.json");
    let index = p["leaf_index"].as_u64().unwrap();
    let path = hashes(&p["audit_path"], b64_hash).unwrap();
    verify_inclusion(&leaf_hash(&leaf), index, size, &path, &root).unwrap();
    assert!(verify_inclusion(&leaf_hash(&leaf[1..]), index, size, &path, &root).is_err());
    assert!(verify_inclusion(&leaf_hash(&leaf), index + 1, size, &path, &root).is_err());

    let t = json("sumdb-tlog.json");
    let old_size = t["argon2020_old_tree"]["size"].as_u64().unwrap();
    let old_root = b64_hash(t["argon2020_old_tree"]["root"].as_str().unwrap()).unwrap();
    let c = json("argon2020/consistency.json");
    let proof = hashes(&c["consistency"], b64_hash).unwrap();
    verify_consistency(old_size, size, &old_root, &root, &proof).unwrap();
    for k in 0..proof.len() {
        let mut bad = proof.clone();
        bad[k][5] ^= 1;
        assert!(
            verify_consistency(old_size, size, &old_root, &root, &bad).is_err(),
            "flipped hash {k}"
        );
    }
    assert!(verify_consistency(old_size + 1, size, &old_root, &root, &proof).is_err());
}

#[test]
fn sumdb_tile_paths_and_new_tiles() {
    let t = json("sumdb-tlog.json");
    for case in t["tile_paths"].as_array().unwrap() {
        let go_path = case["path"].as_str().unwrap();
        let h: u8 = go_path.split('/').nth(1).unwrap().parse().unwrap();
        // The C2SP path is the Go path without its height element.
        let c2sp = go_path.replacen(&format!("tile/{h}/"), "tile/", 1);
        if !case["valid"].as_bool().unwrap() {
            assert!(Tile::parse_path(&c2sp, h).is_err(), "{go_path} parsed");
            continue;
        }
        let n = case["n"].as_u64().unwrap();
        let width = case["w"].as_u64().unwrap() as u16;
        if case["l"].as_i64().unwrap() == -1 {
            // Go's data tiles are C2SP's entry bundles.
            let tile = Tile {
                height: h,
                level: 0,
                n,
                width,
            };
            assert_eq!(
                tile.entries_path(),
                go_path.replacen(&format!("tile/{h}/data/"), "tile/entries/", 1)
            );
            continue;
        }
        let tile = Tile {
            height: h,
            level: case["l"].as_u64().unwrap() as u8,
            n,
            width,
        };
        assert_eq!(tile.path(), c2sp, "{go_path}");
        assert_eq!(Tile::parse_path(&c2sp, h).unwrap(), tile, "{go_path}");
    }
    for case in t["new_tiles"].as_array().unwrap() {
        let (old, new) = (case["old"].as_u64().unwrap(), case["new"].as_u64().unwrap());
        assert_eq!(
            new_tiles(10, old, new).len() as u64,
            case["count"].as_u64().unwrap(),
            "{old}->{new}"
        );
    }
}

#[test]
fn sumdb_tree_note_format() {
    let t = &json("sumdb-tlog.json")["format_tree"];
    let size = t["size"].as_u64().unwrap();
    let root = leaf_hash(t["record"].as_str().unwrap().as_bytes());
    let golden = t["text"].as_str().unwrap();
    let cp = Checkpoint::new("go.sum database tree", size, root);
    assert_eq!(cp.to_text(), golden);
    assert_eq!(Checkpoint::parse(golden).unwrap(), cp);
    for bad in t["bad"].as_array().unwrap() {
        let parsed = Checkpoint::parse(bad.as_str().unwrap());
        assert!(
            parsed.map(|c| c.origin != "go.sum database tree").unwrap_or(true),
            "{bad}"
        );
    }
}

#[test]
fn sumdb_note_keys_signatures_and_open() {
    let v = json("sumdb-note.json");
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    let (peter_vkey, peter_skey, enoch_vkey) = (s("peter_vkey"), s("peter_skey"), s("enoch_vkey"));

    // TestNewVerifier / TestNewSigner: the keys parse, and no mangling of them does.
    let peter = VerifierKey::parse(&peter_vkey).unwrap();
    assert_eq!(format!("{:08x}", peter.key_hash()), s("peter_key_hash"));
    assert_eq!(peter.to_string(), peter_vkey);
    let signer = Ed25519Signer::parse(&peter_skey).unwrap();
    assert_eq!(signer.to_signer_key_string(), peter_skey);
    assert_eq!(signer.verifier_key().to_string(), peter_vkey);
    for (key, parse) in [
        (
            &peter_vkey,
            (|k: &str| VerifierKey::parse(k).is_ok()) as fn(&str) -> bool,
        ),
        (&peter_skey, |k: &str| Ed25519Signer::parse(k).is_ok()),
    ] {
        let b = key.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if (i, j) != (0, b.len()) {
                    assert!(!parse(&String::from_utf8_lossy(&b[i..j])), "{:?} parsed", &key[i..j]);
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            assert!(!parse(&String::from_utf8_lossy(&m)), "mangled byte {i} parsed");
        }
    }
    for bad in v["bad_vkeys"].as_array().unwrap() {
        assert!(VerifierKey::parse(bad.as_str().unwrap()).is_err(), "{bad}");
    }

    // TestSign: Ed25519 is deterministic, so ours must produce the exact same note.
    let text = s("text");
    let signed = now_or_never(sign_note(&text, &[&signer])).unwrap().unwrap();
    assert_eq!(signed, s("signed_by_peter"));

    // TestVerifierList and TestOpen.
    let enoch = VerifierKey::parse(&enoch_vkey).unwrap();
    let (peter_sig, enoch_sig) = (s("peter_sig_line"), s("enoch_sig_line"));
    let list = Verifiers::new(vec![peter.clone(), enoch.clone(), enoch.clone()]);
    assert_eq!(list.find("PeterNeumann", 0xc74f20a3).unwrap(), Some(&peter));
    assert_eq!(list.find("PeterNeumann", 0xc74f20a4).unwrap(), None);
    assert_eq!(list.find("PeterNeuman", 0xc74f20a3).unwrap(), None);
    assert_eq!(
        list.find("EnochRoot", 0xaf0cfe78),
        Err(Error::AmbiguousKey("EnochRoot+af0cfe78".into()))
    );

    let both = format!("{text}\n{peter_sig}{enoch_sig}");
    let only_peter = Verifiers::new(vec![peter.clone()]);
    let n = open_note(both.as_bytes(), &only_peter).unwrap();
    assert_eq!(n.text, text);
    assert_eq!((n.verified.len(), n.unverified.len()), (1, 1));
    assert_eq!(
        (n.verified[0].name.as_str(), n.unverified[0].name.as_str()),
        ("PeterNeumann", "EnochRoot")
    );
    let n = open_note(both.as_bytes(), &Verifiers::new(vec![peter.clone(), enoch.clone()])).unwrap();
    assert_eq!((n.verified.len(), n.unverified.len()), (2, 0));
    assert_eq!(
        open_note(both.as_bytes(), &Verifiers::default()),
        Err(Error::Unverified)
    );
    let dup = Verifiers::new(vec![enoch.clone(), peter.clone(), enoch.clone()]);
    assert!(matches!(
        open_note(format!("{text}\n{enoch_sig}").as_bytes(), &dup),
        Err(Error::AmbiguousKey(_))
    ));
    assert!(open_note(format!("{text}\n{peter_sig}").as_bytes(), &dup).is_ok());
    let many = format!("{text}\n{}", peter_sig.repeat(101));
    assert_eq!(open_note(many.as_bytes(), &only_peter), Err(Error::Malformed("note")));
    assert_eq!(
        open_note(many.as_bytes(), &Verifiers::default()),
        Err(Error::Malformed("note"))
    );
    let invalid = format!("{text}\n{}ABCD{}", &peter_sig[..60], &peter_sig[60..]);
    assert!(matches!(
        open_note(invalid.as_bytes(), &only_peter),
        Err(Error::BadSignature(_))
    ));
    let repeated = format!(
        "{text}\n{peter_sig}{peter_sig}{enoch_sig}{enoch_sig}{}ABCD{}",
        &enoch_sig[..60],
        &enoch_sig[60..]
    );
    let n = open_note(repeated.as_bytes(), &only_peter).unwrap();
    assert_eq!((n.verified.len(), n.unverified.len()), (1, 2));
    for bad in [
        text.clone(),
        format!("{text}\n"),
        format!("{text}\n{}", &peter_sig[..peter_sig.len() - 1]),
        format!("\x01{text}\n{peter_sig}"),
        format!("{text}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{text}\n{peter_sig}Unexpected line.\n"),
    ] {
        assert_eq!(open_note(bad.as_bytes(), &only_peter), Err(Error::Malformed("note")), "{bad:?}");
    }
    let mut invalid_utf8 = vec![0xff];
    invalid_utf8.extend_from_slice(format!("{text}\n{peter_sig}").as_bytes());
    assert_eq!(open_note(&invalid_utf8, &only_peter), Err(Error::Malformed("note")));
}

#[test]
fn c2sp_spec_examples_parse() {
    // signed-note: the text keeps its inner blank line; the signature is 4 + 64 bytes.
    let n = parse_unverified(text("c2sp/signed-note-example.txt").as_bytes()).unwrap();
    assert!(n.text.starts_with("Ognuno sta solo") && n.text.ends_with("ed è subito sera.\n"));
    assert!(n.text.contains(":\n\ned"));
    assert_eq!(n.unverified.len(), 1);
    assert_eq!(n.unverified[0].name, "quasimodo.example/salvatore");
    assert_eq!(B64.decode(&n.unverified[0].base64).unwrap().len(), 68);
    // Without the (unpublished) key it cannot verify, and must not be trusted.
    assert_eq!(
        open_note(text("c2sp/signed-note-example.txt").as_bytes(), &Verifiers::default()),
        Err(Error::Unverified)
    );

    // tlog-checkpoint.
    let n = parse_unverified(text("c2sp/tlog-checkpoint-example.txt").as_bytes()).unwrap();
    let cp = Checkpoint::parse(&n.text).unwrap();
    assert_eq!((cp.origin.as_str(), cp.size), ("example.com/behind-the-sofa", 20852163));
    assert_eq!(B64.encode(cp.root), "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
    assert_eq!(n.unverified[0].name, cp.origin);
    assert_eq!(cp.to_text(), n.text);

    // tlog-proof (its signatures are elided with "[...]" in the spec: the proof parses, the
    // checkpoint inside it does not verify).
    let example = text("c2sp/tlog-proof-example.tlog-proof");
    let p = TlogProof::parse(&example).unwrap();
    assert_eq!(p.index, 73894);
    assert_eq!(p.path.len(), 5);
    assert_eq!(p.extra.as_ref().map(Vec::len), Some(39));
    assert!(p
        .checkpoint
        .starts_with("example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n"));
    assert_eq!(p.encode(), example);
    assert!(tollgate_tlog::verify_proof(&example, b"", &Verifiers::default()).is_err());
}

#[test]
fn tlog_proof_signed_with_the_sumdb_test_key_verifies_end_to_end() {
    // Our tlog-proof over the RFC 6962 vector tree, signed with golang.org/x/mod's test key:
    // the checkpoint's signature is the one Go's note.Sign makes (Ed25519 is deterministic).
    let v = json("sumdb-note.json");
    let signer = Ed25519Signer::parse(v["peter_skey"].as_str().unwrap()).unwrap();
    let verifiers = Verifiers::parse(&[v["peter_vkey"].as_str().unwrap()]).unwrap();
    let (tree, leaves, _) = rfc6962_tree();
    let cp = Checkpoint::new("PeterNeumann", 8, tree.root(8).unwrap());
    let signed = now_or_never(sign_note(&cp.to_text(), &[&signer])).unwrap().unwrap();
    for (i, leaf) in leaves.iter().enumerate() {
        let proof = TlogProof {
            extra: None,
            index: i as u64,
            path: prove_inclusion(i as u64, 8, &tree).unwrap(),
            checkpoint: signed.clone(),
        };
        assert_eq!(
            tollgate_tlog::verify_proof(&proof.encode(), leaf, &verifiers).unwrap(),
            (i as u64, 8)
        );
    }
}

#[test]
fn production_sum_golang_org_checkpoint_and_cosignatures_verify() {
    let v = json("transparency-dev-formats-note.json");
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };

    // Key pairs of TestParseCheckpoint: each signer key derives its verifier key.
    for pair in v["keys"].as_array().unwrap() {
        let (vkey, skey) = (pair["vkey"].as_str().unwrap(), pair["skey"].as_str().unwrap());
        let signer = Ed25519Signer::parse(skey).unwrap();
        assert_eq!(signer.verifier_key().to_string(), vkey);
        assert_eq!(VerifierKey::parse(vkey).unwrap(), signer.verifier_key());
    }

    // A real signed tree head of the Go checksum database, signed by its production key.
    let sumdb = Verifiers::parse(&[s("sum_golang_org_vkey")]).unwrap();
    let note = s("sumdb_checkpoint");
    let cp = Checkpoint::parse(&open_note(note.as_bytes(), &sumdb).unwrap().text).unwrap();
    assert_eq!(
        (cp.origin.as_str(), cp.size),
        (v["sumdb_origin"].as_str().unwrap(), v["sumdb_size"].as_u64().unwrap())
    );
    assert_eq!(cp.to_text(), note.split("\n\n").next().unwrap().to_owned() + "\n");
    // Its origin is not its key name: Checkpoint::open wants the log's key named as the origin.
    assert_eq!(Checkpoint::open(note.as_bytes(), &sumdb), Err(Error::Unverified));
    // One changed digit of the size breaks the signature.
    let forged = note.replacen("6476701", "6476702", 1);
    assert!(matches!(
        open_note(forged.as_bytes(), &sumdb),
        Err(Error::BadSignature(_))
    ));

    // BenchmarkParse: cosignatures by three more keys over the same text all verify; lines under
    // names no verifier has (random1, random2: the witness's signature) are ignored.
    let cosigners = Verifiers::parse(&strings("cosigner_vkeys")).unwrap();
    let mut all = note.clone();
    for line in strings("cosignature_lines")
        .iter()
        .chain(&strings("unknown_name_lines"))
    {
        all.push_str(line);
        all.push('\n');
    }
    let n = open_note(all.as_bytes(), &cosigners).unwrap();
    let names: Vec<&str> = n.verified.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["monkeys", "bananas", "witness"]);
    let ignored: Vec<&str> = n.unverified.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(ignored, ["sum.golang.org", "random1", "random2"]);
    let mut every = strings("cosigner_vkeys");
    every.push(s("sum_golang_org_vkey"));
    assert_eq!(
        open_note(all.as_bytes(), &Verifiers::parse(&every).unwrap())
            .unwrap()
            .verified
            .len(),
        4
    );
}
