"""Chapters, profiles and parameter validation.

Every chapter of the book is a papermill-parametrized notebook. Its parameters and their
values per profile (``smoke``, ``default``, ``paper``) live in ``configs/chapters.yaml``, not
in the notebooks, so that the notebooks, the CLI and the tests read one source of truth.

A notebook's ``parameters`` cell declares ``profile``, ``seed`` and each chapter parameter
(value ``None`` = take the profile's). The next cell calls :func:`chapter_config`, which
rejects an unknown profile, an unknown name (a typo passed with ``papermill -p``), a wrong type
or an out-of-range value with one message naming the parameter and what is allowed, before any
heavy work starts.
"""

from __future__ import annotations

import functools
import os
import types
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping

import pandas as pd
import yaml

from .settings import PROFILE_ENV

PROFILES: tuple[str, ...] = ("smoke", "default", "paper")
COMMON_PARAMS: tuple[str, ...] = ("profile", "seed")
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool, "csv": str}
#: How a message names each type ("an int", not "a int").
TYPE_WORDS = {"int": "an int", "float": "a number", "str": "a string", "bool": "a bool",
              "csv": "a comma-separated list"}
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
# Names an IPython kernel defines by itself; never parameters.
_KERNEL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


class ParameterError(ValueError):
    """A chapter parameter (or profile) that is unknown, of the wrong type or out of range."""


def coerce(value: Any, kind: str) -> Any:
    """``value`` as a parameter of type ``kind``, whichever front door it came through: papermill
    passes ``-p per_channel false`` as the string ``'false'`` and ``-p lr 0.01`` as a number,
    ``spaceevo chapter`` and ``make chapter`` parse YAML scalars, a notebook cell holds Python
    values. Bools accept true/false, yes/no, 1/0 in any case; ints and floats accept numbers
    written as strings (an int also a float with no fractional part). Anything else is returned
    as it is, for :meth:`Param.check` to refuse with a message."""
    if kind == "bool":
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        return value
    if kind in ("int", "float") and isinstance(value, str):
        try:
            value = float(value.strip()) if kind == "float" else _int_text(value.strip())
        except ValueError:
            return value
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _int_text(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "32.0", "1e3"
        if not number.is_integer():
            raise
        return int(number)


@dataclass(frozen=True)
class Param:
    """One chapter parameter: its type, allowed values and value per profile."""

    name: str
    type: str
    help: str
    profiles: Mapping[str, Any]
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None

    def allowed(self) -> str:
        """Human-readable statement of the values this parameter accepts."""
        if self.type == "csv":
            return "'all' or a comma-separated list of " + ", ".join(self.choices or ())
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type == "bool":
            return "true or false (also yes/no, 1/0)"
        lo = "" if self.min is None else f" >= {self.min}"
        hi = "" if self.max is None else f" <= {self.max}"
        sep = " and" if lo and hi else ""
        return f"{TYPE_WORDS[self.type]}{lo}{sep}{hi}"

    def check(self, value: Any, chapter: str) -> Any:
        """Return ``value`` converted to this parameter's type, or raise ParameterError."""
        where = f"parameter {self.name!r} of chapter {chapter!r}"
        want = _TYPES[self.type]
        value = coerce(value, self.type)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ParameterError(
                f"{where} must be {self.allowed()} ({self.help}); "
                f"got {type(value).__name__} {value!r}"
            )
        if self.type == "csv":
            items = list(self.choices) if value == "all" else [v.strip() for v in value.split(",")]
            if not items or any(v not in self.choices for v in items):
                raise ParameterError(f"{where} must be {self.allowed()} ({self.help}); "
                                     f"got {value!r}")
            return ",".join(items)
        bad = (
            (self.choices is not None and value not in self.choices)
            or (self.min is not None and value < self.min)
            or (self.max is not None and value > self.max)
        )
        if bad:
            raise ParameterError(f"{where} must be {self.allowed()} ({self.help}); got {value!r}")
        return value


@dataclass(frozen=True)
class Chapter:
    """A chapter of the book: its notebook, title and parameters."""

    name: str
    notebook: str
    title: str
    params: Mapping[str, Param] = field(default_factory=dict)

    @property
    def allowed_names(self) -> tuple[str, ...]:
        return COMMON_PARAMS + tuple(self.params)

    def resolve(self, profile: str = "default", seed: int = 0, **given: Any) -> ChapterConfig:
        """Validate ``given`` overrides and fill the rest from ``profile``."""
        check_profile(profile)
        seed = coerce(seed, "int")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise ParameterError(
                f"parameter 'seed' of chapter {self.name!r} must be an int in [0, 2**32); "
                f"got {seed!r}"
            )
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ParameterError(
                f"unknown parameter {unknown[0]!r} for chapter {self.name!r}; "
                f"allowed: {', '.join(self.allowed_names)}"
            )
        values = {}
        for name, p in self.params.items():
            v = given.get(name)
            values[name] = p.check(p.profiles[profile] if v is None else v, self.name)
        return ChapterConfig(chapter=self.name, profile=profile, seed=seed, values=values)


@dataclass(frozen=True)
class ChapterConfig:
    """Validated parameter values of one chapter run; attribute access for each parameter."""

    chapter: str
    profile: str
    seed: int
    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        """All values, ``profile`` and ``seed`` included (what a run records and hashes)."""
        return {"profile": self.profile, "seed": self.seed, **self.values}


def check_profile(profile: Any) -> str:
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return profile


@functools.cache
def chapters() -> dict[str, Chapter]:
    """All chapters in reading order, from ``configs/chapters.yaml``."""
    text = resources.files("spaceevo_lib.configs").joinpath("chapters.yaml").read_text()
    out = {}
    for name, spec in yaml.safe_load(text).items():
        params = {}
        for pname, p in (spec.get("params") or {}).items():
            if set(p["profiles"]) != set(PROFILES):
                raise ValueError(f"chapters.yaml: {name}.{pname} needs a value for {PROFILES}")
            choices = tuple(p["choices"]) if "choices" in p else None
            params[pname] = Param(pname, p["type"], p["help"], p["profiles"], choices,
                                  p.get("min"), p.get("max"))
        out[name] = Chapter(name, spec["notebook"], spec["title"], params)
    return out


def get_chapter(name: str) -> Chapter:
    try:
        return chapters()[name]
    except KeyError:
        raise ParameterError(
            f"unknown chapter {name!r}; allowed: {', '.join(chapters())}"
        ) from None


def chapter_config(chapter: str, namespace: Mapping[str, Any] | None = None,
                   **given: Any) -> ChapterConfig:
    """Validate a chapter's parameters and fill the rest from its profile.

    In a notebook, pass ``globals()`` right after the parameters cell: every plain name defined
    so far (papermill's injected ones included) is taken as a parameter, so a misspelled
    ``-p`` name is caught instead of silently ignored. Modules, callables, classes and
    underscore names are skipped. Elsewhere pass keyword arguments.
    """
    ch = get_chapter(chapter)
    if namespace is not None:
        given = {**_parameters_in(namespace), **given}
    profile = given.pop("profile", "default")
    lab = os.environ.get(PROFILE_ENV)
    if lab and profile == "default":
        if lab not in PROFILES:
            raise ParameterError(f"{PROFILE_ENV}={lab!r} is not a profile; allowed: "
                                 f"{', '.join(PROFILES)}")
        profile = lab
    seed = given.pop("seed", 0)
    return ch.resolve(profile, seed, **given)


def _parameters_in(namespace: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in namespace.items()
        if not k.startswith("_") and k not in _KERNEL_NAMES
        and not isinstance(v, (types.ModuleType, type)) and not callable(v)
    }


def parse_cli_value(text: str) -> Any:
    """Parse a ``-p name value`` string the way papermill does (YAML scalars)."""
    value = yaml.safe_load(text)
    return text if value is None and text not in ("null", "None", "~") else value


def chapters_table():
    """The book's chapters with their notebooks and parameters (for the introduction)."""
    rows = [{"chapter": c.name, "title": c.title, "notebook": f"notebooks/{c.notebook}",
             "parameters": ", ".join(c.allowed_names)} for c in chapters().values()]
    return pd.DataFrame(rows)
