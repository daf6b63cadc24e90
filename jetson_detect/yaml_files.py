"""Reading a YAML file a user hands us (a config, a model yaml) so that a hostile one fails fast on one line.

PyYAML shares aliased nodes, so a "billion laughs" file builds little, but anything that then walks or prints the
value (validation, an error message) expands it exponentially; deep nesting overflows the composer's recursion.
So the file's size is capped before it is parsed, and ``BoundedLoader`` counts, while it composes the node tree and
before any Python object is built, the nesting depth, the alias uses and the size each node would have with every
alias expanded.
"""

from typing import Any, Dict

import yaml

from .errors import JetsonDetectError

MAX_YAML_BYTES = 1 << 20  # our configs and model yamls are a few KB
MAX_DEPTH = 32  # a model yaml is 5 deep, a config 4
MAX_ALIASES = 1000
MAX_EXPANDED_NODES = 100000  # nodes of the whole document with every alias expanded


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with the depth, alias count and expanded size of the document bounded while it is
    composed."""

    def __init__(self, stream: Any, origin: str) -> None:
        super().__init__(stream)
        self.origin = origin
        self._depth = 0
        self._aliases = 0
        self._expanded: Dict[int, int] = {}  # id(node) → its node count with aliases expanded

    def _refuse(self, problem: str, mark: Any) -> JetsonDetectError:
        return JetsonDetectError("{}: {} at line {}; refusing to expand it (simplify the file)".format(
            self.origin, problem, mark.line + 1))

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise self._refuse("more than {} alias uses (*name)".format(MAX_ALIASES), mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._refuse("nested more than {} deep".format(MAX_DEPTH), mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        size = 1 + sum(self._expanded.get(id(child), 1) for child in children)
        if size > MAX_EXPANDED_NODES:
            raise self._refuse("with its aliases expanded it would hold more than {} values".format(
                MAX_EXPANDED_NODES), mark)
        self._expanded[id(node)] = size
        return node


def load_yaml_file(path: str, what: str, flag: str) -> Any:
    """The parsed content of a YAML file (``what`` names it in errors, e.g. "config file"; ``flag`` is the option
    that passed it): unreadable, oversized, non-UTF-8, malformed and hostile files give one-line errors."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
    except (IOError, OSError) as exc:
        raise JetsonDetectError("{}: cannot read the {} ({}); pass an existing YAML file to {}".format(
            path, what, exc.strerror or exc, flag)) from None
    if len(raw) > MAX_YAML_BYTES:
        raise JetsonDetectError("{}: larger than {} KiB, far more than any {} needs; pass the right file to {}".format(
            path, MAX_YAML_BYTES >> 10, what, flag))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JetsonDetectError("{}: not UTF-8 text (byte 0x{:02x} at offset {}); save the {} as UTF-8".format(
            path, raw[exc.start], exc.start, what)) from None
    loader = None
    try:
        loader = BoundedLoader(text, path)  # the reader refuses control characters already here
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " at line {}".format(mark.line + 1) if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise JetsonDetectError("{}: not valid YAML{} ({}); fix the syntax".format(path, where, problem)) from None
    finally:
        if loader is not None:
            loader.dispose()
