"""A YAML loader that remembers where every value came from.

The form definition is edited by people, so its errors must point at a line. PyYAML's node
graph carries positions; we convert it to plain Python values and keep a ``path → line`` map.
Only ``true``/``false`` are booleans here: YAML 1.1 would turn ``no`` or ``on`` into booleans,
which is a trap in a Vietnamese form ("No" is not a word we want reinterpreted).
Duplicate keys, which PyYAML silently collapses, are reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    pass


# Replace the YAML 1.1 bool resolver with a strict one.
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class Located:
    """Plain data plus the line of every path, and problems found while loading."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line(self, path: Path) -> int | None:
        """The line of ``path`` or of its nearest ancestor."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def load_yaml(text: str, source: str = "<yaml>") -> Located:
    """Parse YAML text into plain values with line numbers (1-based)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"dòng {mark.line + 1}, cột {mark.column + 1}" if mark else "không rõ vị trí"
        problem = getattr(err, "problem", None) or str(err)
        raise ValueError(f"{source}: lỗi cú pháp YAML ở {where}: {problem}") from err
    located = Located(data=None)
    if node is None:
        located.data = {}
        return located
    constructor = _Loader(text)
    located.data = _convert(node, (), located, constructor)
    return located


def _convert(node: yaml.Node, path: Path, located: Located, ctor: yaml.SafeLoader) -> Any:
    located.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            key = str(key)
            if key in result:
                located.problems.append(
                    f"dòng {key_node.start_mark.line + 1}: khoá '{key}' bị lặp lại trong cùng một mục"
                )
            child = (*path, key)
            located.lines[child] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, child, located, ctor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), located, ctor) for i, item in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)
