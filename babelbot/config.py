"""Typed configs from a YAML file plus `key=value` overrides; unknown keys are an error."""

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a YAML value or an override string into the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, options[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation in (int, float, str):
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}") from None
    if origin in (list, tuple):
        # "a,b" and YAML's "[a, b]" both read as a list on the command line.
        if isinstance(value, str):
            items = [item.strip() for item in value.strip().strip("[]").split(",") if item.strip()]
        else:
            items = list(value)
        (item_type, *_) = typing.get_args(annotation) or (str,)
        return origin(_coerce(item, item_type, key) for item in items)
    return value


def load_config(cls: type[ConfigT], path: str | Path | None = None, overrides: list[str] = ()) -> ConfigT:
    """Build `cls` from an optional YAML file, then apply `key=value` overrides in order."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config {path}: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of keys to values")
        values.update(loaded)
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must look like key=value")
        values[key.strip()] = value
    return _build(cls, values, prefix="")


def _build(cls: type[ConfigT], values: dict[str, Any], prefix: str) -> ConfigT:
    """Instantiate `cls`; keys like `generation.max_new_tokens` reach nested dataclass fields."""
    hints = typing.get_type_hints(cls)
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if isinstance(value, dict):
            nested.setdefault(head, {}).update(value)
        elif dot:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    unknown = sorted(set(flat) - set(hints)) + sorted(
        f"{key}.*" for key in nested if key not in hints or not dataclasses.is_dataclass(hints[key])
    )
    if unknown:
        raise ConfigError(f"unknown config keys {[prefix + key for key in unknown]}; known keys: {sorted(hints)}")
    kwargs = {key: _coerce(value, hints[key], prefix + key) for key, value in flat.items()}
    kwargs.update({key: _build(hints[key], sub, prefix + key + ".") for key, sub in nested.items()})
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(f"{prefix}{error}" if prefix else str(error)) from None
