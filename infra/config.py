"""Stage configuration: one dataclass per stage, filled from params.yaml and ``--set``.

A stage's knobs live in one dataclass whose fields carry their help text in
``metadata["help"]`` (TRL style). Values come from the stage's section of
params.yaml, then from ``--set key=value`` overrides; an unknown key or a value
of the wrong type fails with a message naming the key and what is allowed. A knob declared
with ``inherit="section.key"`` that the stage's section leaves out takes that other value of
params.yaml (e.g. the evaluation sets every training stage is decontaminated against are
``evaluate.benchmarks``), so one setting has one home.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A params.yaml section or ``--set`` override that does not fit its stage's config."""


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's core schema: only ``true``/``false`` are booleans,
    ``017`` is 17 and ``1:30`` a string.

    PyYAML follows YAML 1.1, where ``no``, ``off``, ``yes``, ``on`` are booleans too, so
    ``language: no`` (Norwegian) would arrive as False. DVC reads params.yaml as YAML 1.2
    (ruamel) already; r1flow reads every YAML file it takes settings from (params.yaml,
    ``--set`` values, recipes, the launch file) with this loader, so both see the same value.
    A bool knob still accepts the YAML 1.1 words (:func:`_coerce`).
    """


# YAML 1.2 core schema: booleans, integers (no octal 017 = 15, no sexagesimal 1:30 = 90) and
# floats (1e-3 is a float without a dot, as in JSON).
_CORE_SCHEMA = {
    "tag:yaml.org,2002:bool": (r"true|True|TRUE|false|False|FALSE", "tTfF"),
    "tag:yaml.org,2002:int": (r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    "tag:yaml.org,2002:float": (r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", "-+.0123456789"),
}
YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE_SCHEMA]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, (_pattern, _first) in _CORE_SCHEMA.items():
    YamlLoader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), list(_first))


def _core_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """A YAML 1.2 integer: decimal unless it says 0o or 0x (PyYAML reads 017 as octal 15)."""
    text = loader.construct_scalar(node)
    return int(text, 0) if text.lstrip("+-")[:2].lower() in ("0o", "0x") else int(text, 10)


YamlLoader.add_constructor("tag:yaml.org,2002:int", _core_int)
YAML_11_BOOLEANS = {"yes": True, "on": True, "y": True, "no": False, "off": False, "n": False,
                    "true": True, "false": False}


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`YamlLoader` (YAML 1.2 core schema)."""
    return yaml.load(text, Loader=YamlLoader)


def knob(default: Any, help: str, *, inherit: str | None = None, **kwargs: Any) -> Any:
    """A dataclass field with its one-line help text (shown by ``r1flow stage NAME --help``).

    ``inherit="section.key"``: when the stage's section does not set the knob, it takes
    ``section.key`` of params.yaml if present (else ``default``); see :func:`load_stage_config`.
    """
    metadata = {"help": help, **({"inherit": inherit} if inherit else {})}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def variant_of(cls: type, section: str, name: str, module: str, **derive: Callable[[Any], Any]) -> type:
    """A config class like ``cls`` for a variant stage (an ablation) that runs with what
    ``section`` runs with: every knob starts from ``section``'s resolved value (its params.yaml
    section, else what it inherits, else ``cls``'s default; :func:`stage_values`), and each knob
    in ``derive`` is ``derive[knob](that value)``: the one thing the variant changes (e.g. the
    rewards without one of them). The variant's own section and ``--set`` still win over both.
    Returns a dataclass named ``name`` of ``module`` (the stage module's ``__name__``), a
    subclass of ``cls``; raises TypeError for a ``derive`` key that is not a knob of ``cls``."""
    unknown = set(derive) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{name}: {cls.__name__} has no knobs {sorted(unknown)}")
    # Built directly (no params.yaml), the variant's derived knobs are derived from cls's defaults.
    fields = {f.name: f for f in dataclasses.fields(cls)}
    derived = [(key, fields[key].type,
                dataclasses.field(default_factory=functools.partial(_derive_default, fn, fields[key]),
                                  metadata=fields[key].metadata))
               for key, fn in derive.items()]
    variant = dataclasses.make_dataclass(name, derived, bases=(cls,))
    variant.__module__ = module
    variant.variant_source = (section, cls, dict(derive))
    return variant


def _derive_default(fn: Callable[[Any], Any], f: dataclasses.Field) -> Any:
    return fn(_default(f))


def _variant_values(cls: type, params_path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The starting values of a :func:`variant_of` class: its source section's, derived."""
    section, parent, derive = cls.__dict__["variant_source"]
    values, sources = stage_values(parent, section, params_path)
    defaults = {f.name: _default(f) for f in dataclasses.fields(parent)}
    for key, fn in derive.items():
        values[key] = fn(values.get(key, defaults[key]))
        sources[key] = f"{sources.get(key, f'default of [{section}]')}, derived"
    return values, sources


def load_params(path: str | Path) -> dict[str, Any]:
    """Read params.yaml; a missing or non-mapping file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    data = load_yaml(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections, got {type(data).__name__}")
    return data


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["lr=1e-3", "rewards=[accuracy,format]"]`` into typed values (YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = load_yaml(raw) if raw.strip() else ""
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, bool) and str in args and bool not in args:
            return _coerce(value, str, where)
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if tp is bool and isinstance(value, str) and value.strip().lower() in YAML_11_BOOLEANS:
        return YAML_11_BOOLEANS[value.strip().lower()]
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is str and isinstance(value, bool):
        key = where.rpartition("key ")[2].strip("'") or "key"
        raise ConfigError(f"{where}: expected text, got the boolean {value!r} (YAML 1.1 and JSON read an "
                          f"unquoted yes/no/on/off/true/false as a boolean); quote the word to keep it text, "
                          f'e.g. {key}: "no"')
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def build_config(cls: type[T], values: dict[str, Any], *, where: str = "config") -> T:
    """Instantiate the dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}{hint}; allowed keys: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{where}: key {key!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where}: {err}") from err


def load_stage_config(
    cls: type[T], stage: str, params_path: str | Path = "params.yaml", overrides: list[str] | None = None
) -> T:
    """The stage's section of ``params_path`` with ``--set`` overrides applied on top."""
    values, _ = stage_values(cls, stage, params_path, overrides)
    return build_config(cls, values, where=f"{params_path} [{stage}]")


def stage_values(cls: type, stage: str, params_path: str | Path = "params.yaml",
                 overrides: list[str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """What a stage's config is built from: ``{key: value}`` (inherited knobs, then the stage's
    section of ``params_path``, then ``--set``, each winning over the one before) and
    ``{key: source}``, the source ``"<params_path> [<stage>]"``, ``"<params_path> <section.key>"``
    (an ``inherit=`` knob) or ``"--set"``. Keys in neither take their default.

    A missing ``params.yaml`` (the default path) reads as empty; a missing other file, a section
    that is not a mapping or a malformed ``--set`` is a ConfigError. Values are not checked
    here (:func:`build_config` does).
    """
    params = load_params(params_path) if Path(params_path).exists() or params_path != "params.yaml" else {}
    section = params.get(stage) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{params_path}: section {stage!r} must be a mapping")
    inherit = {f.name: f.metadata.get("inherit") for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if "variant_source" in cls.__dict__:
        values, sources = _variant_values(cls, params_path)
    else:
        for key, value in inherited(cls, params).items():
            values[key], sources[key] = value, f"{params_path} {inherit[key]}"
    for layer, source in ((section, f"{params_path} [{stage}]"), (parse_overrides(overrides or []), "--set")):
        for key, value in layer.items():
            values[key], sources[key] = value, source
    return values, sources


def inherited(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``{field: value}`` for each knob of ``cls`` declared with ``inherit="section.key"`` whose
    section and key exist in ``params`` (the whole params.yaml)."""
    out = {}
    for f in dataclasses.fields(cls):
        source = f.metadata.get("inherit")
        if source:
            section, _, key = source.partition(".")
            if isinstance(params.get(section), dict) and key in params[section]:
                out[f.name] = params[section][key]
    return out


def config_help(cls: type, stage: str = "", params_path: str | Path = "params.yaml",
                overrides: list[str] | None = None) -> str:
    """One line per knob: its name, the value the stage would run with, its type, where that
    value comes from and its help text, e.g.
    ``max_steps = 500  (int, params.yaml [student]; default 100)  Pretraining steps ...``.

    Sources are those of :func:`stage_values`, ``default``, or ``@<item>`` for a knob that a
    foreach item sets (a config's ``for_item()``, e.g. a student's size). Without ``stage``
    every knob shows its default. When the params or ``--set`` values do not build a config,
    the first line says why and the defaults follow, so ``--help`` still answers.
    """
    defaults = {f.name: _default(f) for f in dataclasses.fields(cls)}
    values, sources, note = dict(defaults), {}, ""
    if stage:
        try:
            given, sources = stage_values(cls, stage, params_path, overrides)
            cfg = build_config(cls, given, where=f"{params_path} [{stage}]")
            values = dataclasses.asdict(cfg)
            if getattr(cfg, "item", "") and hasattr(cfg, "for_item"):
                ran = dataclasses.asdict(cfg.for_item())
                sources.update({k: f"@{cfg.item}" for k in ran if ran[k] != values[k]})
                values = ran
        except ValueError as err:  # a ConfigError, or an item its for_item() refuses
            values, sources, note = defaults, {}, f"  ({err}; the defaults follow)\n"
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        source = sources.get(f.name, "default")
        if source != "default" and values[f.name] != defaults[f.name]:
            source += f"; default {defaults[f.name]!r}"
        elif f.metadata.get("inherit") and f.name not in sources:
            source += f"; params {f.metadata['inherit']} if set"
        lines.append(f"  {f.name} = {values[f.name]!r}  ({_type_name(hints[f.name])}, {source})  "
                     f"{f.metadata.get('help', '')}")
    return note + "\n".join(lines)


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as a plain dict (logged with the run)."""
    return dataclasses.asdict(cfg)
