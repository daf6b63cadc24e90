"""The Python API surface of a TensorRT release, read from NVIDIA's pybind11 sources.

Reads ``../shared/third_party/tensorrt/<release>/python/src/**/*.cpp`` (and the package's ``__init__.py``) and
writes what ``import tensorrt`` exposes there: classes (with bases), methods and constructors with their argument
names, order and which have defaults (overloads kept apart), properties (read-write, read-only, write-only), enum
members (``export_values`` copies them into the enclosing class), module functions and attributes. The test
doubles (``trt_doubles.py``) are built from this, so a call that a release would refuse fails the tests.

A signature is ``{"args": [[name, has_default], ...]}``; without ``py::arg``/``"x"_a`` annotations pybind11 names
nothing (keywords are refused), and the surface records ``{"positional": N}`` (N from the lambda or ``py::init<>``)
or ``{"positional": null}`` (a C++ member function: its arity is not in these files).

Preprocessor: the full ``tensorrt`` package is built with ``EXPORT_ALL_BINDINGS`` on and
``ENABLE_INETWORK_SERIALIZE`` off, against pybind11 >= 2.6; any other ``#if`` stops the tool, so a new condition
is looked at rather than guessed.

Regenerate: ``python tests/trt_surface.py`` (writes ``tests/data/trt_surface/<release>.json``).
"""

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

SHARED_TRT = Path(__file__).resolve().parents[2] / "shared" / "third_party" / "tensorrt"
OUT_DIR = Path(__file__).resolve().parent / "data" / "trt_surface"
RELEASES = ("8.0.1", "8.2.1", "10.16.0", "11.1.0")

CONDITIONS = {"EXPORT_ALL_BINDINGS": True, "ENABLE_INETWORK_SERIALIZE": False,
              "PYBIND11_VERSION_MAJOR < 2 || PYBIND11_VERSION_MAJOR == 2 && PYBIND11_VERSION_MINOR < 6": False,
              "defined(_WIN32)": False, "!defined(WIN32_LEAN_AND_MEAN)": True}


def preprocess(text: str, where: str) -> str:
    """Drop the lines of inactive ``#if`` branches (known conditions only) and every other directive."""
    out = []
    stack: List[Tuple[bool, bool]] = []  # (this branch active, parent active)
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):  # continued directive (macros)
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i]
        stripped = line.strip()
        active = all(s[0] for s in stack)
        if stripped.startswith("#"):
            directive = stripped[1:].strip()
            if directive.startswith("if"):
                cond = directive[2:].split("//")[0].strip()
                if cond not in CONDITIONS:
                    raise ValueError("{}: unknown preprocessor condition {!r}".format(where, cond))
                stack.append((CONDITIONS[cond], active))
            elif directive.startswith("else"):
                stack[-1] = (not stack[-1][0], stack[-1][1])
            elif directive.startswith("endif"):
                stack.pop()
            out.append("")
        else:
            out.append(line if active else "")
        i += 1
    return "\n".join(out)


TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<raw>R"(?P<delim>[^(\s]*)\(.*?\)(?P=delim)")
  | (?P<str>"(?:\\.|[^"\\])*")
  | (?P<chr>'(?:\\.|[^'\\])*')
  | (?P<num>\.?\d[\w.]*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>::|->|[^\s\w])
""", re.S | re.X)


def tokenize(text: str) -> List[str]:
    tokens = []
    for match in TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "ws":
            continue
        tokens.append(match.group(0))
    return tokens


OPEN = {"(": ")", "[": "]", "{": "}"}


def group_end(tokens: List[str], start: int) -> int:
    """Index just past the bracket group opening at ``start``."""
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i] in OPEN:
            depth += 1
        elif tokens[i] in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unbalanced brackets")


def angle_end(tokens: List[str], start: int) -> int:
    """Index just past the template argument list opening with ``<`` at ``start``."""
    depth = 0
    i = start
    while i < len(tokens):
        if tokens[i] == "<":
            depth += 1
        elif tokens[i] == ">":
            depth -= 1
            if depth == 0:
                return i + 1
        elif tokens[i] in OPEN:
            i = group_end(tokens, i)
            continue
        i += 1
    raise ValueError("unbalanced template brackets")


def split_args(tokens: List[str]) -> List[List[str]]:
    """Split a bracket group's inside on top-level commas; ``<...>`` after a name is one template argument list."""
    parts: List[List[str]] = []
    current: List[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in OPEN:
            end = group_end(tokens, i)
            current.extend(tokens[i:end])
            i = end
            continue
        if tok == "<" and i > 0 and re.match(r"^\w+$", tokens[i - 1]) and not tokens[i - 1].isdigit():
            end = angle_end(tokens, i)
            current.extend(tokens[i:end])
            i = end
            continue
        if tok == ",":
            parts.append(current)
            current = []
        else:
            current.append(tok)
        i += 1
    if current:
        parts.append(current)
    return parts


def string_value(token: str) -> Optional[str]:
    if token.startswith('"'):
        return ast.literal_eval(token)
    return None


def lambda_arity(arg: List[str]) -> Optional[int]:
    """Number of parameters of a lambda ``[...](params) ...``, or None if ``arg`` is not one."""
    if not arg or arg[0] != "[":
        return None
    after = group_end(arg, 0)
    if after >= len(arg) or arg[after] != "(":
        return 0
    inner = arg[after + 1:group_end(arg, after) - 1]
    return len(split_args(inner))


def named_arg(arg: List[str]) -> Optional[Tuple[str, bool]]:
    """("x", has_default) for ``"x"_a``, ``"x"_a = v``, ``py::arg("x")``, ``py::arg("x") = v``; else None."""
    if len(arg) >= 2 and arg[0].startswith('"') and arg[1] == "_a":
        return string_value(arg[0]) or "", len(arg) > 2 and arg[2] == "="
    if arg[:4] == ["py", "::", "arg", "("] and len(arg) >= 6:
        end = group_end(arg, 3)
        return string_value(arg[4]) or "", len(arg) > end and arg[end] == "="
    return None


class Extractor(object):
    """Walks the token stream of every source file of one release."""

    def __init__(self) -> None:
        self.classes: Dict[str, Dict[str, Any]] = {}
        self.enums: Dict[str, Dict[str, Any]] = {}
        self.functions: Dict[str, List[Dict[str, Any]]] = {}
        self.attributes: List[str] = []
        self.cpp_to_python: Dict[str, str] = {}
        self.pending_bases: Dict[str, List[str]] = {}
        self.variables: Dict[str, Tuple[str, str]] = {}  # C++ variable → (kind, python name)
        self.lambdas: Dict[str, int] = {}

    # -- lambdas defined by name (``static auto const name = [](...)``), for arity of unannotated defs
    def collect_lambdas(self, tokens: List[str]) -> None:
        for i in range(len(tokens) - 2):
            if re.match(r"^[A-Za-z_]\w*$", tokens[i]) and tokens[i + 1] == "=" and tokens[i + 2] == "[":
                arity = lambda_arity(tokens[i + 2:i + 2 + self._lambda_len(tokens, i + 2)])
                if arity is not None:
                    self.lambdas[tokens[i]] = arity

    @staticmethod
    def _lambda_len(tokens: List[str], start: int) -> int:
        end = group_end(tokens, start)
        if end < len(tokens) and tokens[end] == "(":
            end = group_end(tokens, end)
        return end - start

    def callable_arity(self, arg: List[str]) -> Optional[int]:
        """Parameter count of the bound callable (lambda, named lambda, ``py::init<...>()``); None if unknown."""
        arity = lambda_arity(arg)
        if arity is not None:
            return arity
        if arg[:2] == ["lambdas", "::"] and len(arg) == 3:
            return self.lambdas.get(arg[2])
        if len(arg) == 1 and arg[0] in self.lambdas:
            return self.lambdas[arg[0]]
        return None

    def signature(self, args: List[List[str]], callable_arg: Optional[List[str]], method: bool) -> Dict[str, Any]:
        names = [n for n in (named_arg(a) for a in args) if n is not None]
        if names:
            return {"args": [[name, default] for name, default in names]}
        if callable_arg is None:
            return {"positional": None}
        if callable_arg[:3] == ["py", "::", "init"] and len(callable_arg) > 3 and callable_arg[3] == "<":
            inner = callable_arg[4:angle_end(callable_arg, 3) - 1]
            return {"positional": len(split_args(inner))}
        if callable_arg[:3] == ["py", "::", "init"] and len(callable_arg) > 3 and callable_arg[3] == "(":
            inner_args = split_args(callable_arg[4:group_end(callable_arg, 3) - 1])
            arity = self.callable_arity(inner_args[0]) if inner_args else None
            return {"positional": arity}
        arity = self.callable_arity(callable_arg)
        if arity is None:
            return {"positional": None}
        return {"positional": max(arity - (1 if method else 0), 0)}

    def new_class(self, name: str, cpp: List[str]) -> Dict[str, Any]:
        cls = self.classes.setdefault(name, {"bases": [], "methods": {}, "static_methods": {}, "properties": {},
                                             "init": [], "attributes": []})
        if cpp:
            self.cpp_to_python.setdefault(cpp[0], name)
            self.pending_bases.setdefault(name, []).extend(cpp[1:])
        return cls

    def scope_name(self, scope: List[str], name: str) -> str:
        if scope == ["m"]:
            return name
        if len(scope) == 1 and scope[0] in self.variables:
            return self.variables[scope[0]][1] + "." + name
        raise ValueError("unknown binding scope {}".format(" ".join(scope)))

    def run(self, tokens: List[str]) -> None:
        self.collect_lambdas(tokens)
        i = 0
        while i < len(tokens):
            if tokens[i:i + 3] in (["py", "::", "class_"], ["py", "::", "enum_"]) and tokens[i + 3] == "<":
                i = self.binding(tokens, i)
                continue
            if tokens[i:i + 4] == ["py", "::", "bind_vector", "<"]:
                end = angle_end(tokens, i + 3)
                args = split_args(tokens[end + 1:group_end(tokens, end) - 1])
                name = string_value(args[1][0]) or ""
                cls = self.new_class(self.scope_name(args[0], name), [])
                cls["vector"] = True
                i = group_end(tokens, end)
                continue
            if tokens[i] == "m" and i + 2 < len(tokens) and tokens[i + 1] == "." and tokens[i + 2] in ("def", "attr") \
                    and (i == 0 or tokens[i - 1] in (";", "{", "}")):
                end = group_end(tokens, i + 3)
                args = split_args(tokens[i + 4:end - 1])
                name = string_value(args[0][0]) or ""
                if tokens[i + 2] == "attr":
                    self.attributes.append(name)
                else:
                    self.functions.setdefault(name, []).append(self.signature(args[2:], args[1], method=False))
                i = end
                continue
            if tokens[i] in self.variables and i + 2 < len(tokens) and tokens[i + 1] == "." \
                    and (i == 0 or tokens[i - 1] in (";", "{", "}")):
                kind, name = self.variables[tokens[i]]
                i = self.chain(tokens, i + 1, kind, name)
                continue
            i += 1

    def binding(self, tokens: List[str], i: int) -> int:
        kind = "enum" if tokens[i + 2] == "enum_" else "class"
        end = angle_end(tokens, i + 3)
        template = [" ".join(t) for t in split_args(tokens[i + 4:end - 1])]
        variable = None
        if re.match(r"^[A-Za-z_]\w*$", tokens[end]) and tokens[end + 1] in ("{", "("):
            variable = tokens[end]
            end += 1
        close = group_end(tokens, end)
        args = split_args(tokens[end + 1:close - 1])
        name = self.scope_name(args[0], string_value(args[1][0]) or "")
        if kind == "enum":
            self.enums.setdefault(name, {"members": [], "export_values": False})
            self.cpp_to_python.setdefault(template[0], name)
        else:
            self.new_class(name, template)
        if variable:
            self.variables[variable] = (kind, name)
        return self.chain(tokens, close, kind, name)

    def chain(self, tokens: List[str], i: int, kind: str, name: str) -> int:
        """Read ``.def(...)``-style calls following a binding; returns the index after the chain."""
        while i + 2 < len(tokens) and tokens[i] == "." and tokens[i + 2] == "(":
            call = tokens[i + 1]
            end = group_end(tokens, i + 2)
            args = split_args(tokens[i + 3:end - 1])
            self.member(kind, name, call, args)
            i = end
        return i

    def member(self, kind: str, name: str, call: str, args: List[List[str]]) -> None:
        if kind == "enum":
            if call == "value":
                self.enums[name]["members"].append(string_value(args[0][0]))
            elif call == "export_values":
                self.enums[name]["export_values"] = True
            return
        cls = self.classes[name]
        label = string_value(args[0][0]) if args and args[0] else None
        if call in ("def", "def_static"):
            if label is None:  # .def(py::init...)
                cls["init"].append(self.signature(args[1:], args[0], method=False))
                return
            table = cls["methods"] if call == "def" else cls["static_methods"]
            table.setdefault(label, []).append(self.signature(args[2:], args[1] if len(args) > 1 else None,
                                                              method=call == "def"))
        elif call in ("def_property", "def_property_static"):
            writable = len(args) > 2 and args[2] != ["nullptr"]
            readable = args[1] != ["nullptr"]
            cls["properties"][label] = "rw" if readable and writable else ("wo" if writable else "ro")
        elif call in ("def_property_readonly", "def_readonly", "def_property_readonly_static", "def_readonly_static"):
            cls["properties"][label] = "ro"
        elif call in ("def_readwrite", "def_readwrite_static"):
            cls["properties"][label] = "rw"
        elif call == "attr":
            cls["attributes"].append(label)
        elif call == "def_buffer":
            cls["buffer"] = True  # supports memoryview()
        else:
            raise ValueError("unknown binding call .{}() on {}".format(call, name))

    def finish(self) -> None:
        for name, cpp_bases in self.pending_bases.items():
            bases = [self.cpp_to_python[b] for b in cpp_bases if b in self.cpp_to_python
                     and self.cpp_to_python[b] in self.classes and self.cpp_to_python[b] != name]
            self.classes[name]["bases"] = sorted(set(self.classes[name]["bases"]) | set(bases),
                                                 key=lambda b: bases.index(b) if b in bases else 0)


def python_names(init_py: Path) -> List[str]:
    """Top-level functions and names the package's ``__init__.py`` adds to the module."""
    # the packaging step fills in ##PLACEHOLDERS## (module name, versions)
    tree = ast.parse(re.sub(r"##\w+##", "placeholder", init_py.read_text(encoding="utf-8")))
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
    return sorted(set(n for n in names if not n.startswith("_") or n == "__version__"))


def header_version(release_dir: Path) -> str:
    text = (release_dir / "include" / "NvInferVersion.h").read_text(encoding="utf-8")
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH", "BUILD"):
        match = re.search(r"#define (?:NV_TENSORRT|TRT)_{}(?:_ENTERPRISE)? (\d+)".format(part), text)
        if match is None:
            raise ValueError("{}: no {} version".format(release_dir, part))
        parts.append(match.group(1))
    return ".".join(parts)


def extract(release: str, root: Path = SHARED_TRT) -> Dict[str, Any]:
    """The surface of ``release`` as a JSON-ready dict (sorted, so regenerating gives the same bytes)."""
    release_dir = root / release
    extractor = Extractor()
    sources = sorted((release_dir / "python" / "src").rglob("*.cpp"))
    for path in sources:
        if path.parent.name == "parsers":
            continue  # the ONNX/UFF/Caffe parsers are not used here
        text = preprocess(path.read_text(encoding="utf-8"), str(path))
        extractor.run(tokenize(text))
    extractor.finish()
    classes = {}
    for name, cls in sorted(extractor.classes.items()):
        classes[name] = {"bases": cls["bases"], "init": cls["init"],
                         "methods": dict(sorted(cls["methods"].items())),
                         "static_methods": dict(sorted(cls["static_methods"].items())),
                         "properties": dict(sorted(cls["properties"].items())),
                         "attributes": sorted(set(cls["attributes"]))}
        for flag in ("vector", "buffer"):
            if cls.get(flag):
                classes[name][flag] = True
    return {
        "release": release,
        "version": header_version(release_dir),
        "sources": [str(p.relative_to(release_dir)) for p in sources if p.parent.name != "parsers"],
        "classes": classes,
        "enums": {n: e for n, e in sorted(extractor.enums.items())},
        "functions": dict(sorted(extractor.functions.items())),
        "attributes": sorted(set(extractor.attributes)),
        "python": python_names(release_dir / "python" / "packaging" / "tensorrt" / "__init__.py"),
    }


def render(surface: Dict[str, Any]) -> str:
    return json.dumps(surface, indent=1, sort_keys=False) + "\n"


def load(release: str) -> Dict[str, Any]:
    """The committed surface of ``release``."""
    return json.loads((OUT_DIR / (release + ".json")).read_text(encoding="utf-8"))


def main(argv: List[str]) -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for release in argv or RELEASES:
        surface = extract(release)
        (OUT_DIR / (release + ".json")).write_text(render(surface), encoding="utf-8")
        print("{}: {} classes, {} enums, {} functions".format(release, len(surface["classes"]),
                                                               len(surface["enums"]), len(surface["functions"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
