"""The one typed configuration of a run, composed from what the stages declare.

This module holds no section of its own but ``ray``: each stage module declares the
sections it reads (``Stage.sections``), each section being a logic package's typed
parameters (the single place of each default) plus the stage's placement fields. The
composition follows ``pipeline.stage_order``; the YAML keys and ``--set`` paths are the
section keys.

A config is built from defaults, then an optional YAML file, then ``--set key=value``
overrides (dotted keys, YAML-typed values). Unknown keys and invalid values are refused
with a message naming the key.

``config_hash`` hashes only the fields that can change what a run writes (models,
thresholds, rates, precision): each section names its placement fields (resource sizing,
batch sizes, devices, threads, shard sizes), which are left out, as are the ray, fetch
and storage sections, so moving a job from a laptop to a cluster keeps its hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from manifests.params import Params
from manifests.storage import StorageConfig
from pipeline.stage_order import PIPELINE, PRE_GRAPH, SYNTHESIS
from sources.fetch import FetchConfig
from stages.base import Section
from synthesis.voices.library import VoiceLibraryParams


class RayConfig(Section):
    """Where the graph runs. Out of ``config_hash``: placement never changes what is written."""

    address: str | None = Field(None, description="attach to this cluster; None starts a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="local Ray only; None: the machine's CPUs. With fewer CPUs "
                                 "than the graph has actor pools, the pools reserve fractions of a CPU and share cores")
    object_store_memory_gb: float | None = Field(2.0, gt=0, description="local Ray only")
    preserve_order: bool = False
    log_to_driver: bool = False
    fuse_model_stages: Literal["auto", "always", "never"] = Field(
        "auto", description="run the consecutive CPU model stages in one actor (one per CPU); auto: when the "
        "cluster has fewer CPUs than those stages have pools plus one")
    block_size_mb: float = Field(0.0625, gt=0, description="Ray Data's target block size: a stage's output rows "
                                 "are passed on once a block reaches it (small: each recording streams on alone)")


def _stage_sections(stages: tuple = PRE_GRAPH + PIPELINE) -> dict[str, type[BaseModel]]:
    """Every section the stages declare, in pipeline order; one type per key."""
    out: dict[str, type[BaseModel]] = {}
    for stage in stages:
        for key, section in stage.sections.items():
            if out.setdefault(key, section) is not section:
                raise TypeError(f"config section {key!r} is declared as {out[key].__name__} and {section.__name__}")
    return out


class _PipelineBase(Params):
    # ---- persistence ------------------------------------------------------------------
    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    runtime_sections: ClassVar[frozenset[str]] = frozenset()

    def config_hash(self, inputs: dict[str, str] | None = None) -> str:
        """Stable 16-hex-digit hash of the output-changing part of the config, and of ``inputs``
        (content hashes of what the run reads besides its sources, e.g. a voice library)."""
        payload: dict[str, Any] = {key: getattr(self, key).hashed() for key in type(self).model_fields
                                   if key not in self.runtime_sections}
        if inputs:
            payload["_inputs"] = dict(sorted(inputs.items()))
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# Ray placement, what fetch downloads and where storage credentials come from never change
# what a run makes of its inputs.
RUNTIME_SECTIONS = frozenset({"ray", "fetch", "storage"})
_SECTIONS = {**_stage_sections(), "ray": RayConfig, "fetch": FetchConfig}
_SECTIONS["storage"] = _SECTIONS.pop("storage", StorageConfig)  # keep it last, as config files show it
PipelineConfig = create_model(
    "PipelineConfig", __base__=_PipelineBase,
    **{key: (section, Field(default_factory=section)) for key, section in _SECTIONS.items()},
)
PipelineConfig.__doc__ = "The composed config of a run: one section per key the stages declare, plus ray/fetch/storage."
PipelineConfig.runtime_sections = RUNTIME_SECTIONS


class VoicesSection(VoiceLibraryParams, Section):
    """`refinery synth voices build`: which segments become voice-library prompts."""


# `refinery synth run`: what a run synthesises never depends on where it runs, nor on how the
# voice library was selected (the library's content is hashed instead: ``config_hash(inputs=)``).
SYNTH_RUNTIME_SECTIONS = frozenset({"ray", "storage", "voices"})
_SYNTH_SECTIONS = {**_stage_sections(SYNTHESIS), "voices": VoicesSection, "ray": RayConfig}
_SYNTH_SECTIONS["storage"] = _SYNTH_SECTIONS.pop("storage", StorageConfig)
SynthConfig = create_model(
    "SynthConfig", __base__=_PipelineBase,
    **{key: (section, Field(default_factory=section)) for key, section in _SYNTH_SECTIONS.items()},
)
SynthConfig.__doc__ = "The composed config of a synthesis run: the synthesis stages' sections, voices, ray, storage."
SynthConfig.runtime_sections = SYNTH_RUNTIME_SECTIONS


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from None
    return key.split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown config key {'.'.join(path[: i + 1])!r}")
        node = node[part]
    if not isinstance(node, dict) or path[-1] not in node:
        raise ConfigError(f"unknown config key {'.'.join(path)!r}")
    node[path[-1]] = value


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(config)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key {key!r}")
        else:
            lines.append(_redact(f"{key}: {err['msg']} (got {err.get('input')!r})"))
    return "; ".join(lines)


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]*@")


def _redact(text: str) -> str:
    """No credentials of a URL (``scheme://user:password@host``) in a message."""
    return _USERINFO.sub(r"\1***@", text)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                model: type[_PipelineBase] | None = None) -> Any:
    """Defaults, then the YAML file at ``path``, then ``key=value`` overrides. ``model``:
    ``PipelineConfig`` (default, ``refinery run``) or ``SynthConfig`` (``refinery synth``)."""
    PipelineConfig_ = model or PipelineConfig
    tree = PipelineConfig_().model_dump(mode="json")
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        try:
            tree = PipelineConfig_.model_validate(_deep_merge(tree, loaded)).model_dump(mode="json")
        except ValidationError as exc:
            raise ConfigError(f"{path}: {_explain(exc)}") from None
    for item in overrides:
        keys, value = parse_override(item)
        _set_path(tree, keys, value)
    try:
        return PipelineConfig_.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
