"""YAML read strictly: duplicate keys, deep nesting and alias blow-up are errors, not silent or fatal.

PyYAML's ``safe_load`` keeps the last of two equal keys (a section written twice silently loses the first), lets
a few hundred bytes of nested aliases ("billion laughs") describe a value of billions of items that any later copy
or message expands, and composes nesting recursively (100,000 ``[`` end in RecursionError). :func:`load_yaml`
refuses each with one :class:`StrictYAMLError` line that names the line of the document.
"""
from __future__ import annotations

import yaml

MAX_DEPTH = 64          # nesting levels of sequences and mappings (our configs nest 4)
MAX_EXPANDED = 100_000  # values in the document with every alias expanded (our configs have a few hundred)


class StrictYAMLError(ValueError):
    """Not valid YAML, or YAML outside this module's limits; the message is one line naming where."""


class YAMLSyntaxError(StrictYAMLError):
    """Not valid YAML (a command-line override that is not YAML is read as a plain string instead)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with a nesting limit while composing, an expanded-size limit on the composed document, and a
    duplicate-key check for mappings."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise StrictYAMLError(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_expanded_size(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise StrictYAMLError(f"line {key_node.start_mark.line + 1}: key '{_clip(key_node.value)}' "
                                              f"is given twice (first on line {seen[key]}); the first would be "
                                              "silently lost")
                    seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _children(node) -> list:
    if isinstance(node, yaml.ScalarNode):
        return []
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value)


def _check_expanded_size(root) -> None:
    """StrictYAMLError when the document, aliases expanded, holds more than MAX_EXPANDED values (counted without
    expanding: each node's size once, by identity, bottom-up), or when an alias refers to a node that contains it
    (a value that contains itself has no finite expansion)."""
    if root is None:
        return
    size: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path from the root
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for c in _children(node))
            if size[id(node)] > MAX_EXPANDED:
                raise StrictYAMLError(f"line {node.start_mark.line + 1}: its aliases expand to more than "
                                      f"{MAX_EXPANDED} values")
            continue
        if id(node) in size:
            continue
        if id(node) in open_nodes:
            raise StrictYAMLError(f"line {node.start_mark.line + 1}: an alias refers to a node that contains it (a "
                                  "value that contains itself)")
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def load_yaml(text: str | bytes):
    """The value of a YAML document; StrictYAMLError (one line) when it is not valid YAML, not UTF-8, repeats a
    key of a mapping, nests deeper than MAX_DEPTH or expands (aliases) past MAX_EXPANDED values."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise StrictYAMLError(f"not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r})") from None
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise YAMLSyntaxError(f"not valid YAML: {_clip(e, 300)}") from None
    except (ValueError, OverflowError) as e:  # e.g. an int of more than 4,300 digits
        if isinstance(e, StrictYAMLError):
            raise
        raise StrictYAMLError(f"a value YAML cannot hold: {_clip(e, 200)}") from None
    except RecursionError:
        raise StrictYAMLError("nested too deeply") from None
    finally:
        loader.dispose()
