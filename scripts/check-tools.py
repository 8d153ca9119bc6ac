"""Checks that every Python tool tollgate uses is pinned and runs from its own environment.

    python3 -S scripts/check-tools.py               # the repository (part of .ci/run)
    TOLLGATE_PATH="$PATH" python3 -S scripts/check-tools.py --installed   # and the tools directory
    python3 -S scripts/check-tools.py --self-test   # each rule fails on a tree that breaks it

Run with -S: this file itself uses the standard library only. The rules:
  * tools/python/NAME.in pins one package with `==` and names its commands (`# commands:`);
    NAME.lock (scripts/lock-tools.sh) pins every package, that one included.
  * Nothing installs Python packages except the installers that install a lock into a virtual
    environment (scripts/prereqs.sh, scripts/lock-tools.sh), with --require-virtualenv.
  * Python in the scripts runs as `python3 -S` (standard library only) or through a tool's own
    interpreter (`tool_python NAME`); never a global site-packages.
  * A command that a Python package provides (a console script of the global environment or of
    a tool's) is used only if a pinned tool provides it; a shell script that uses one installs
    its tool first (`ensure_tool NAME`, or an ensure_*_tools function that does); Rust code
    starts one only through `tollgate_testkit::tool("command")`, never a bare name on PATH.
  * --installed: each tool's environment holds exactly its lock, its command wrappers point into
    that environment, and on PATH each of its commands is the wrapper, not another install.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INSTALLERS = {"scripts/prereqs.sh", "scripts/lock-tools.sh"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==([A-Za-z0-9.+!-]+)$")
# Words that may stand before a command in a shell line.
PREFIXES = {"exec", "env", "time", "!", "then", "do", "else", "elif", "if", "while", "until",
            "sudo", "as_root", "nohup", "command", "xargs", "-0"}


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


class Tools:
    """The pinned tools of a repository: name -> (package, version, commands, lock pins)."""

    def __init__(self, root, errors):
        self.tools = {}
        for spec in sorted((root / "tools/python").glob("*.in")):
            name = spec.stem
            lines = [l.strip() for l in spec.read_text().splitlines()]
            reqs = [l for l in lines if l and not l.startswith("#")]
            commands = [c for l in lines if l.startswith("# commands:") for c in l.split(":", 1)[1].split()]
            if len(reqs) != 1 or not PIN.match(reqs[0]):
                errors.append(f"{spec.relative_to(root)}: must pin exactly one package with == (has {reqs})")
                continue
            if not commands:
                errors.append(f"{spec.relative_to(root)}: no '# commands:' line")
            package, _, version = PIN.match(reqs[0]).groups()
            lock = spec.with_suffix(".lock")
            pins = {}
            if not lock.exists():
                errors.append(f"{lock.relative_to(root)}: missing (bash scripts/lock-tools.sh {name})")
            else:
                for l in lock.read_text().splitlines():
                    if not l.strip() or l.startswith("#"):
                        continue
                    m = PIN.match(l.strip())
                    if not m or m.group(2):
                        errors.append(f"{lock.relative_to(root)}: '{l}' is not pinned with ==")
                        continue
                    pins[norm(m.group(1))] = m.group(3)
                if pins.get(norm(package)) != version:
                    errors.append(f"{lock.relative_to(root)}: does not pin {package}=={version} of {spec.name}"
                                  f" (bash scripts/lock-tools.sh {name})")
            self.tools[name] = dict(package=package, version=version, commands=commands, pins=pins)
        self.command_tool = {c: n for n, t in self.tools.items() for c in t["commands"]}


def global_console_scripts():
    """Console scripts of the Python environment the scripts' `python3` would see, with site."""
    code = ("import importlib.metadata as m\n"
            "print('\\n'.join(sorted({e.name for e in m.entry_points(group='console_scripts')})))")
    try:
        out = subprocess.run(["python3", "-c", code], capture_output=True, text=True, timeout=60)
        return set(out.stdout.split())
    except (OSError, subprocess.TimeoutExpired):
        return set()


def code_lines(path):
    """Non-comment lines with their numbers (shell, YAML and Dockerfile), heredoc bodies left out."""
    heredoc = None
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        stripped = line.strip()
        if heredoc is not None:
            if stripped == heredoc:
                heredoc = None
            continue
        if stripped and not stripped.startswith("#"):
            yield n, line
            m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
            if m and path.suffix not in (".yml",) and path.name != "Dockerfile":
                heredoc = m.group(1)


def code_only(line):
    """The line without its quoted text (command substitutions inside double quotes kept) and
    without a trailing comment: what the shell runs as commands."""
    out, i, quote = [], 0, None
    while i < len(line):
        c = line[i]
        if quote == "'":
            quote = None if c == "'" else quote
        elif c == "$" and line[i + 1:i + 2] == "(":
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            out.append(" ; " + code_only(line[i + 2:j - 1]) + " ; ")
            i = j
            continue
        elif quote == '"':
            quote = None if c == '"' else quote
        elif c in "'\"":
            quote = c
            out.append(" ")
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        else:
            out.append(c)
        i += 1
    return "".join(out)


def shell_commands(line):
    """(command, its first argument) at each command position of one shell line."""
    for part in re.split(r"[;&|(){}`]", code_only(line)):
        words = part.split()
        while words and (words[0] in PREFIXES or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])
                         or (words[0] == "timeout" and len(words) > 1)):
            words = words[2:] if words[0] == "timeout" else words[1:]
        if words:
            if words[0] == "cargo" and len(words) > 1 and words[1] == "lambda":
                yield "cargo-lambda", words[2:3]
            else:
                yield os.path.basename(words[0]), words[1:3]


def ensured_tools(prereqs_text):
    """ensure_*_tools function name -> the tools it installs (from scripts/prereqs.sh)."""
    groups = {}
    for m in re.finditer(r"^(ensure_\w+)\(\) \{\n(.*?)^\}", prereqs_text, re.M | re.S):
        groups[m.group(1)] = {t for l in re.findall(r"ensure_tool ([^\n]+)", m.group(2)) for t in l.split()}
    return groups


def check_repo(root, globals_, errors):
    tools = Tools(root, errors)
    prereqs = root / "scripts/prereqs.sh"
    groups = ensured_tools(prereqs.read_text()) if prereqs.exists() else {}
    python_commands = set(globals_) | set(tools.command_tool)
    shell = sorted(root.glob("scripts/*.sh")) + sorted(root.glob("bench/*.sh")) + [root / ".ci/run"]
    other = sorted(root.glob(".github/workflows/*.yml")) + [root / "Dockerfile"]
    for path in [p for p in shell + other if p.exists()]:
        rel = str(path.relative_to(root))
        text = path.read_text(errors="replace")
        installed = {t for l in re.findall(r"^\s*ensure_tool ([^\n#]+)", text, re.M) for t in l.split()}
        for fn, ts in groups.items():
            if re.search(rf"^\s*{fn}\b", text, re.M) and fn != "ensure_tool":
                installed |= ts
        for n, line in code_lines(path):
            if re.search(r"\bpip3?\s+install\b|-m\s+pip\s+install\b", line):
                if rel not in INSTALLERS or "--require-virtualenv" not in text[text.find(line):][:600]:
                    errors.append(f"{rel}:{n}: installs Python packages outside the pinned tool environments: {line.strip()}")
            if path not in shell:
                continue
            for command, args in shell_commands(line):
                if command in ("python", "python3") and args[:1] != ["-S"] and args[:2] != ["-I", "-S"]:
                    errors.append(f"{rel}:{n}: python without -S sees the global site-packages"
                                  f" (use `python3 -S` or \"$(tool_python NAME)\"): {line.strip()}")
            for command, _ in shell_commands(line):
                if command not in python_commands:
                    continue
                tool = tools.command_tool.get(command)
                if tool is None:
                    errors.append(f"{rel}:{n}: uses {command}, a Python tool that no tools/python/*.in pins")
                elif tool not in installed:
                    errors.append(f"{rel}:{n}: uses {command} without installing its pinned tool first"
                                  f" (ensure_tool {tool})")
    for path in sorted(root.rglob("*.rs")):
        if "target" in path.relative_to(root).parts:
            continue
        rel = str(path.relative_to(root))
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for command in re.findall(r'Command::new\("([^"]+)"\)', line):
                if command in tools.command_tool:
                    errors.append(f"{rel}:{n}: starts {command} from PATH; use tollgate_testkit::tool(\"{command}\")")
                elif command in python_commands:
                    errors.append(f"{rel}:{n}: starts {command}, a Python tool that no tools/python/*.in pins")
    return tools


def check_installed(tools, tools_dir, errors):
    bin_dir = tools_dir / "bin"
    for name, t in tools.tools.items():
        venv = tools_dir / name
        python = venv / "bin/python"
        if not python.exists():
            errors.append(f"{name}: not installed in {venv} (source scripts/prereqs.sh; ensure_tool {name})")
            continue
        out = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                             capture_output=True, text=True)
        have = {}
        for l in out.stdout.splitlines():
            m = PIN.match(l.strip())
            if m:
                have[norm(m.group(1))] = m.group(3)
        if out.returncode != 0 or have != t["pins"]:
            extra = sorted(f"{k}=={v}" for k, v in have.items() if t["pins"].get(k) != v)
            missing = sorted(f"{k}=={v}" for k, v in t["pins"].items() if have.get(k) != v)
            errors.append(f"{name}: {venv} differs from its lock (has {extra}, lacks {missing})")
        for command in t["commands"]:
            wrapper = bin_dir / command
            if not wrapper.exists() or f'"{venv}/bin/{command}"' not in wrapper.read_text():
                errors.append(f"{name}: {wrapper} does not run {venv}/bin/{command}: installed outside its environment")
            # The caller's PATH: a pyenv shim puts its own bin directory first for python itself.
            found = shutil.which(command, path=os.environ.get("TOLLGATE_PATH") or os.environ.get("PATH"))
            if found is not None and Path(found) != wrapper:
                errors.append(f"{name}: on PATH, {command} is {found}, outside its environment {venv}")
    if bin_dir.is_dir():
        for entry in sorted(bin_dir.iterdir()):
            if entry.name not in tools.command_tool:
                errors.append(f"{entry}: a command of no pinned tool")


def run(root, tools_dir=None, globals_=None):
    errors = []
    tools = check_repo(root, global_console_scripts() if globals_ is None else globals_, errors)
    if tools_dir is not None:
        check_installed(tools, tools_dir, errors)
    return errors


def self_test():
    """A clean tree passes; each broken tree fails with its rule's message."""
    def tree(base, files):
        for rel, text in files.items():
            p = base / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            if rel.endswith("/bin/python"):
                p.chmod(0o755)

    clean = {
        "tools/python/foo.in": "# commands: foo\nfoo-tool==1.0\n",
        "tools/python/foo.lock": "# generated\nfoo-tool==1.0\nbar==2.0\n",
        "scripts/prereqs.sh": "ensure_test_tools() {\n    ensure_tool foo\n}\n",
        "scripts/use.sh": "source scripts/prereqs.sh\nensure_test_tools\nfoo --check\npython3 -S - <<'PY'\nPY\n",
        "x/tests/t.rs": 'let c = Command::new(tollgate_testkit::tool("foo"));\n',
        ".ci/run": "bash scripts/use.sh\n",
    }
    cases = [
        ({}, None),
        ({"tools/python/foo.in": "# commands: foo\nfoo-tool>=1.0\n"}, "must pin exactly one package"),
        ({"tools/python/foo.lock": "foo-tool==1.0\nbar>=2\n"}, "is not pinned"),
        ({"tools/python/foo.lock": "foo-tool==1.1\n"}, "does not pin foo-tool==1.0"),
        ({"scripts/use.sh": "pip install yamllint\n"}, "installs Python packages outside"),
        ({".ci/run": "python3 -m pip install --user foo\n"}, "installs Python packages outside"),
        ({"scripts/use.sh": "python3 - <<'PY'\nimport boto3\nPY\n"}, "python without -S"),
        ({"scripts/use.sh": "source scripts/prereqs.sh\nensure_test_tools\nyamllint .\n"}, "no tools/python/*.in pins"),
        ({"scripts/use.sh": "source scripts/prereqs.sh\nx=$(timeout 5 foo --version)\n"}, "without installing its pinned tool"),
        ({"x/tests/t.rs": 'let c = Command::new("foo");\n'}, "use tollgate_testkit::tool"),
        ({"x/tests/t.rs": 'let c = Command::new("yamllint");\n'}, "no tools/python/*.in pins"),
    ]
    failures = 0
    for overrides, expected in cases:
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            tree(root, {**clean, **overrides})
            errors = run(root, globals_={"yamllint", "foo"})
            ok = (not errors) if expected is None else any(expected in e for e in errors)
            failures += not ok
            print(f"   {'ok  ' if ok else 'FAIL'} {expected or 'a clean tree passes'}" + ("" if ok else f": {errors}"))
    # The tools directory: right, drifted, and a command installed outside its environment.
    for state, expected in [("right", None), ("drift", "differs from its lock"),
                            ("outside", "installed outside its environment"), ("shadow", "outside its environment")]:
        with tempfile.TemporaryDirectory() as d:
            root, tools_dir = Path(d) / "repo", Path(d) / "tools"
            tree(root, clean)
            freeze = "foo-tool==1.0\nbar==2.0" if state != "drift" else "foo-tool==1.0\nbar==2.1"
            tree(tools_dir, {"foo/bin/python": f"#!/bin/sh\necho '{freeze}'\n"})
            target = tools_dir / "foo" if state != "outside" else Path("/usr/local")
            tree(tools_dir, {"bin/foo": f'#!/bin/sh\nexec "{target}/bin/foo" "$@"\n'})
            (tools_dir / "bin/foo").chmod(0o755)
            saved = os.environ.get("TOLLGATE_PATH")
            path = os.environ.get("PATH", "")
            if state == "shadow":
                tree(tools_dir, {"global/foo": "#!/bin/sh\n"})
                (tools_dir / "global/foo").chmod(0o755)
                os.environ["TOLLGATE_PATH"] = f"{tools_dir / 'global'}:{tools_dir / 'bin'}:{path}"
            else:
                os.environ["TOLLGATE_PATH"] = f"{tools_dir / 'bin'}:{path}"
            try:
                errors = run(root, tools_dir, globals_={"foo"})
            finally:
                if saved is None:
                    os.environ.pop("TOLLGATE_PATH", None)
                else:
                    os.environ["TOLLGATE_PATH"] = saved
            ok = (not errors) if expected is None else any(expected in e for e in errors)
            failures += not ok
            print(f"   {'ok  ' if ok else 'FAIL'} installed: {expected or 'a right tools directory passes'}"
                  + ("" if ok else f": {errors}"))
    return failures


def main():
    root = Path(__file__).resolve().parent.parent
    if "--self-test" in sys.argv:
        failures = self_test()
        print(f"check-tools self-test: {'every rule holds' if not failures else f'{failures} rule(s) broken'}")
        return 1 if failures else 0
    tools_dir = None
    if "--installed" in sys.argv:
        default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tollgate/tools"
        tools_dir = Path(os.environ.get("TOLLGATE_TOOLS_DIR") or default)
    errors = run(root, tools_dir)
    for e in errors:
        print(f"   {e}")
    tools = Tools(root, [])
    print(f"check-tools: {len(tools.tools)} pinned tools"
          + (f", installed in {tools_dir}" if tools_dir else "")
          + (f": {len(errors)} problem(s)" if errors else ": every tool pinned and used from its own environment"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
