"""One config mechanism for every script: typed dataclasses, YAML files, dotted overrides.

A config is a tree of dataclasses. `load_config(Cls, "configs/x.yaml", ["optim.lr=1e-4"])` reads the
YAML, applies `--set` overrides, and builds the tree, checking every value against its field's type.
An unknown key anywhere is an error that lists the valid keys at that level, so a typo never
passes silently (the weak spot of config-by-exec).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, Union

import yaml

from clipgen.errors import one_line, read_text_file

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit the config's dataclasses."""


class FieldValueError(ConfigError):
    """Fields of one config dataclass whose values break its rules (`check_fields`). `from_dict`
    names them by their dotted path in the config: run.max_steps, sample.top_k."""

    def __init__(self, problems: list[tuple[str, str]], prefix: str = ""):
        self.problems = problems  # (field name, what is wrong)
        super().__init__("; ".join(f"{prefix}{name} {problem}" for name, problem in problems))


def check_fields(obj: Any, rules: Iterable[tuple[str, bool, str]]) -> None:
    """For a dataclass's __post_init__: rules are (field name, whether its value is fine, what it
    must be); raise FieldValueError naming every field that breaks its rule, and its value."""
    problems = [(name, f"must be {rule}, got {getattr(obj, name)!r}") for name, ok, rule in rules if not ok]
    if problems:
        raise FieldValueError(problems)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting where YAML is loose (ints for floats,
    "1e-4" strings that YAML 1.1 does not read as numbers, lists for tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err).removeprefix(f"{where}: "))
        raise ConfigError(f"{where}: {value!r} fits none of {tp} ({'; '.join(errors)})")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys are errors that list the valid ones."""
    types_by_name = _field_types(cls)
    unknown = sorted(set(data) - set(types_by_name))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' under ' + where if where else ''}: {', '.join(sorted(types_by_name))}"
        )
    kwargs = {
        name: _coerce(value, types_by_name[name], f"{where}.{name}" if where else name)
        for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except FieldValueError as err:
        if not where:
            raise
        raise FieldValueError(err.problems, f"{where}.") from None


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain YAML-safe values (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{where} is not valid YAML{at}: {getattr(err, 'problem', None) or one_line(err)}") from None


def _set_dotted(cls: type, tree: dict[str, Any], key: str, raw: str) -> None:
    """Put `raw` (parsed as YAML) at dotted `key`, checking each part names a real field."""
    parts = key.split(".")
    node, node_cls = tree, cls
    for depth, part in enumerate(parts):
        types_by_name = _field_types(node_cls)
        if part not in types_by_name:
            where = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(
                f"unknown config key {key!r}: no {part!r} at {where}; "
                f"valid keys there: {', '.join(sorted(types_by_name))}"
            )
        if depth == len(parts) - 1:
            node[part] = _parse_yaml(raw, f"override {key}={raw}") if raw.strip() else ""
            return
        child_type = types_by_name[part]
        if not dataclasses.is_dataclass(child_type):
            raise ConfigError(f"{'.'.join(parts[: depth + 1])} is a value, not a section")
        node = node.setdefault(part, {})
        node_cls = child_type


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """Read YAML `path` (or start from defaults), apply `key=value` overrides, build `cls`."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = read_text_file(path, "config file")
        except ValueError as err:  # not UTF-8
            raise ConfigError(str(err)) from None
        tree = _parse_yaml(text, str(path)) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        _set_dotted(cls, tree, key.strip(), raw)
    return from_dict(cls, tree)


def save_config(obj: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (what the run really used, defaults included)."""
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True), "utf-8")
