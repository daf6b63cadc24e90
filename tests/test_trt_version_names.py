"""Only ``backends/trt_compat.py`` names TensorRT attributes whose existence depends on the version.

Code is read token by token (comments and docstrings are prose, not uses); a name counts as used when it is an
identifier or a string literal (``getattr(x, "max_workspace_size")``). ``backends/onnx_network.py`` is exempt: it
is the CPU twin that *implements* the TensorRT API surface, so it must define those names.
"""

import ast
import io
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jetson_detect"
ALLOWED = {PACKAGE / "backends" / "trt_compat.py", PACKAGE / "backends" / "onnx_network.py"}

# Exact names, then prefixes (ending in "_"), that exist in some supported TensorRT versions only (TRT_COMPAT.md).
VERSION_SPECIFIC = (
    "execute_async", "execute_async_v2", "execute_async_v3", "max_workspace_size", "set_memory_pool_limit",
    "MemoryPoolType", "get_plugin_creator", "plugin_creator_list", "get_creator", "all_creators", "ResizeMode",
    "InterpolationMode", "EXPLICIT_BATCH", "STRONGLY_TYPED", "FP16", "INT8", "int8_calibrator",
    "IInt8EntropyCalibrator2", "IProgressMonitor", "progress_monitor", "num_bindings", "binding_is_input",
    "build_engine", "num_io_tensors", "set_tensor_address", "TensorIOMode", "platform_has_fast_fp16",
    "platform_has_fast_int8", "max_batch_size", "add_plugin_v2", "add_plugin_v3", "add_cast", "set_input_shape",
    "set_binding_shape", "create_execution_context_without_device_memory", "device_memory_size", "TensorRTPhase",
    "get_binding_", "get_tensor_",
)


def _docstring_lines(source: str) -> set:
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def _matches(word: str) -> bool:
    return any(word.startswith(n) if n.endswith("_") else word == n for n in VERSION_SPECIFIC)


def version_specific_uses(path: Path) -> list:
    """(line, name) for every version-specific name used in code in ``path``."""
    source = path.read_text(encoding="utf-8")
    docs = _docstring_lines(source)
    uses = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and _matches(tok.string):
            uses.append((tok.start[0], tok.string))
        elif tok.type == tokenize.STRING and tok.start[0] not in docs:
            value = ast.literal_eval(tok.string) if not tok.string.lstrip("rbuRBUfF").startswith(("f", "F")) else ""
            if isinstance(value, str) and _matches(value):
                uses.append((tok.start[0], value))
    return uses


def test_scanner_sees_identifiers_and_getattr_strings_but_not_prose(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('"""Mentions num_bindings in prose."""\n# and max_workspace_size in a comment\n'
                     'n = engine.num_bindings\nm = getattr(config, "max_workspace_size")\n'
                     'x = ctx.get_binding_shape(0)\n')
    assert version_specific_uses(probe) == [(3, "num_bindings"), (4, "max_workspace_size"), (5, "get_binding_shape")]


def test_version_specific_names_appear_only_in_trt_compat():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in ALLOWED:
            continue
        uses = version_specific_uses(path)
        if uses:
            offenders[str(path.relative_to(PACKAGE))] = uses
    assert offenders == {}


def test_trt_compat_does_use_them():
    names = {name for _, name in version_specific_uses(PACKAGE / "backends" / "trt_compat.py")}
    assert {"execute_async_v2", "max_workspace_size", "get_plugin_creator", "ResizeMode", "EXPLICIT_BATCH", "FP16",
            "int8_calibrator", "num_bindings", "IProgressMonitor"} <= names


def test_nothing_uses_trt_nptype():
    """TensorRT < 8.5.3's ``nptype`` names ``np.bool`` (gone in NumPy 1.24-1.26): ``trt_compat`` has its own table."""
    users = {str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
             if any(name == "nptype" for _, name in version_specific_uses_of(path, ("nptype",)))}
    assert users == set()


def version_specific_uses_of(path: Path, names: tuple) -> list:
    """(line, name) for every use of one of ``names`` in code in ``path``."""
    source = path.read_text(encoding="utf-8")
    return [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.NAME and tok.string in names]
