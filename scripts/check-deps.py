#!/usr/bin/env python3
"""Every dependency a workspace crate declares is used by it (what `cargo machete` checks,
without a tool to install): a normal dependency must be named in the crate's src/ or build.rs, a
dev-dependency in its tests/, benches/, examples/ or src/ (unit tests). A name counts as used when
its Rust identifier (dashes as underscores, or the `package =` rename) appears as a path or a
`use`. Features forwarded to a dependency (`dep:x`, `x/feature`) keep it; `[package.metadata]`
may list deliberate exceptions under `tollgate-unused-ok = ["name"]` with a reason beside it.

    python3 -S scripts/check-deps.py             # the workspace
    python3 -S scripts/check-deps.py --self-test # the checker against a broken crate
"""
import os
import re
import sys
import tempfile
import tomllib


def rust_files(dirs):
    for d in dirs:
        if os.path.isfile(d) and d.endswith(".rs"):
            yield d
        for base, _, files in os.walk(d):
            for f in files:
                if f.endswith(".rs"):
                    yield os.path.join(base, f)


def used(ident, text):
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(ident) + r"(::|\s*;|\s*\{|\s+as\s|!|\s*,)", text) is not None


def check_crate(crate_dir):
    problems = []
    with open(os.path.join(crate_dir, "Cargo.toml"), "rb") as f:
        manifest = tomllib.load(f)
    pkg = manifest.get("package", {})
    ok = set(pkg.get("metadata", {}).get("tollgate-unused-ok", []))
    features = " ".join(" ".join(v) for v in manifest.get("features", {}).values())
    src = "".join(open(p, encoding="utf-8").read() for p in rust_files([os.path.join(crate_dir, "src"), os.path.join(crate_dir, "build.rs")]))
    extra = [os.path.join(crate_dir, d) for d in ("tests", "benches", "examples")]
    test_src = src + "".join(open(p, encoding="utf-8").read() for p in rust_files(extra))
    for section, text in (("dependencies", src), ("dev-dependencies", test_src)):
        for name, spec in manifest.get(section, {}).items():
            real = spec.get("package", name) if isinstance(spec, dict) else name
            ident = name.replace("-", "_")
            if name in ok or f"dep:{name}" in features or f"{name}/" in features:
                continue
            if not used(ident, text) and not used(real.replace("-", "_"), text):
                problems.append(f"{crate_dir}: [{section}] {name} is not used")
    return problems


def workspace_members(root):
    with open(os.path.join(root, "Cargo.toml"), "rb") as f:
        return [os.path.join(root, m) for m in tomllib.load(f)["workspace"]["members"]]


def self_test():
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "src"))
        os.makedirs(os.path.join(d, "tests"))
        with open(os.path.join(d, "Cargo.toml"), "w") as f:
            f.write('[package]\nname = "x"\n[dependencies]\nserde = "1"\nbytes = "1"\nhttp-body = "1"\n'
                    '[dev-dependencies]\nuuid = "1"\ntoml = "1"\n')
        with open(os.path.join(d, "src", "lib.rs"), "w") as f:
            f.write("use serde::Serialize;\npub fn f(b: http_body::SizeHint) {}\n")
        with open(os.path.join(d, "tests", "t.rs"), "w") as f:
            f.write("#[test] fn t() { let _ = uuid::Uuid::nil(); }\n")
        found = check_crate(d)
        expected = [f"{d}: [dependencies] bytes is not used", f"{d}: [dev-dependencies] toml is not used"]
        assert found == expected, found
    print("check-deps self-test: ok")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = [p for m in workspace_members(root) for p in check_crate(m)]
    # Every [workspace.dependencies] entry is taken by some member.
    with open(os.path.join(root, "Cargo.toml"), "rb") as f:
        declared = tomllib.load(f)["workspace"].get("dependencies", {})
    taken = set()
    for m in workspace_members(root):
        with open(os.path.join(m, "Cargo.toml"), "rb") as f:
            manifest = tomllib.load(f)
        for section in ("dependencies", "dev-dependencies", "build-dependencies"):
            taken.update(manifest.get(section, {}))
    problems += [f"Cargo.toml: [workspace.dependencies] {n} is used by no member" for n in declared if n not in taken]
    for p in problems:
        print(p.replace(root + "/", ""))
    if problems:
        print(f"check-deps: {len(problems)} unused dependencies (remove them, or list one under "
              "[package.metadata] tollgate-unused-ok with the reason)")
        return 1
    print(f"check-deps: every dependency of {len(workspace_members(root))} crates is used")
    return 0


if __name__ == "__main__":
    sys.exit(main())
