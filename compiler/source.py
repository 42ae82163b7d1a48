"""Find the source model's config.json and read its structure on the meta device.

Looked up, in order: a local directory (relative to the spec file), the local
Hugging Face cache (never the network), then the spec's `config_card`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shearc.canonical import sha256_of
from shearc.errors import Problem, UserError

from .families import FamilyAdapter, Shape, adapter_for

Origin = Literal["local", "hf-cache", "card"]
# Config values that decide shapes or numerics: the plan records them, and the runtime
# compares them with the model it loads.
FINGERPRINT_KEYS = (
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "tie_word_embeddings", "attention_bias",
    "mlp_bias", "hidden_act", "rms_norm_eps", "max_position_embeddings",
)

if TYPE_CHECKING:  # the runtime introspects configs too, and never loads the spec models
    from .spec import SourceSpec


@dataclass(frozen=True)
class SourceModel:
    config: dict[str, Any]  # config.json as found
    origin: Origin
    config_path: Path
    adapter: FamilyAdapter
    shape: Shape
    vocab: int
    tied: bool
    block_params: dict[str, tuple[str, ...]]  # present block parameters -> axis symbols
    outer_params: dict[str, tuple[str, ...]]
    fingerprint_fields: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return sha256_of(self.fingerprint_fields)

    def parameter_count(self, extents: dict[str, Any], layers: Any) -> Any:
        """The adapter's count over the tensors this model has (FamilyAdapter.parameter_count)."""
        return self.adapter.parameter_count(self.block_params, self.outer_params, {**extents, "vocab": self.vocab},
                                            layers)


def locate_config(source: SourceSpec, spec_dir: Path) -> tuple[Path, Origin]:
    tried: list[str] = []
    local = (spec_dir / source.model).expanduser()
    if (local / "config.json").is_file():
        return local / "config.json", "local"
    tried.append(f"no config.json in local directory {local}")
    cached = _hf_cache_lookup(source.model, source.revision)
    if cached is not None:
        return cached, "hf-cache"
    tried.append(f"{source.model!r} is not in the local Hugging Face cache")
    if source.config_card is not None:
        card = spec_dir / source.config_card
        if card.is_file():
            return card, "card"
        tried.append(f"config_card {card} does not exist")
    else:
        tried.append("no source.config_card given")
    raise UserError([Problem("cannot find the source model's config: " + "; ".join(tried), "source.model")],
                    title="source model not found")


def _hf_cache_lookup(model: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # not a valid repo id, unreadable cache, ...: simply not cached
        return None
    return Path(found) if isinstance(found, str) else None


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable config.json ({exc})", title="bad source config") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise UserError(f"{path}: config.json needs a `model_type`", title="bad source config")
    return config


def hf_config(config: dict[str, Any]) -> Any:
    """The transformers config object of a config.json dict."""
    from transformers import AutoConfig

    values = {k: v for k, v in config.items() if k != "model_type"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoConfig.for_model(config["model_type"], **values)


def meta_model(config: dict[str, Any]) -> Any:
    """Instantiate the architecture on torch's meta device: shapes only, no memory, no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_config(hf_config(config))


def introspect(config: dict[str, Any], origin: Origin, config_path: Path) -> SourceModel:
    """Check the adapter's description against one real block built on meta."""
    adapter = adapter_for(config)
    try:
        transformers_config = hf_config(config)
        shape = adapter.shape_of(transformers_config)
        one_block = meta_model(adapter.config_for(config, replace(shape, layers=1)))
    except Exception as exc:
        raise UserError(f"{config_path}: transformers cannot build this config: {exc}",
                        title="bad source config") from None
    vocab = transformers_config.vocab_size
    tied = bool(getattr(transformers_config, "tie_word_embeddings", False))
    params = dict(one_block.named_parameters())
    prefix = f"{adapter.layer_prefix}.0."
    block = {name[len(prefix):]: tuple(p.shape) for name, p in params.items() if name.startswith(prefix)}
    outer = {name: tuple(p.shape) for name, p in params.items() if not name.startswith(adapter.layer_prefix)}
    problems = []
    block = _fused_as_parts(block, adapter, shape, problems)
    block_axes = _describe(block, adapter.block, shape, vocab, "block parameter", problems)
    outer_axes = _describe(outer, adapter.outer, shape, vocab, "parameter", problems)
    if problems:
        raise UserError(problems, title=f"{adapter.architecture}: model layout differs from shearc's adapter")
    fields = {key: getattr(transformers_config, key, None) for key in FINGERPRINT_KEYS}
    fields["head_dim"] = shape.head_dim
    fields["num_key_value_heads"] = shape.kv_heads
    fields["tie_word_embeddings"] = tied
    return SourceModel(config, origin, config_path, adapter, shape, vocab, tied, block_axes, outer_axes,
                       json_safe(fields))


def _fused_as_parts(found: dict[str, tuple[int, ...]], adapter: FamilyAdapter, shape: Shape,
                    problems: list[Problem]) -> dict[str, tuple[int, ...]]:
    """Each fused block parameter replaced by its parts' shapes, when its rows are exactly theirs."""
    described = {}
    for name, dims in found.items():
        if name not in adapter.fused:
            described[name] = dims
            continue
        parts = adapter.part_rows(name, shape)
        if sum(rows for _, rows in parts) != dims[0]:
            problems.append(Problem(f"block parameter {name!r} has {dims[0]} rows, the adapter's parts "
                                    f"{', '.join(f'{part} ({rows})' for part, rows in parts)} sum to another number"))
            continue
        described.update({part: (rows, *dims[1:]) for part, rows in parts})
    return described


def _describe(found: dict[str, tuple[int, ...]], known: dict[str, tuple[str, ...]], shape: Shape, vocab: int,
              what: str, problems: list[Problem]) -> dict[str, tuple[str, ...]]:
    axes = {}
    for name, dims in found.items():
        if name not in known:
            problems.append(Problem(f"{what} {name!r} is not described by the adapter"))
            continue
        expected = tuple(shape.extent(symbol, vocab) for symbol in known[name])
        if expected != dims:
            problems.append(Problem(f"{what} {name!r} has shape {dims}, the adapter expects {expected}"))
        axes[name] = known[name]
    return axes


def json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def resolve_source_config(source: SourceSpec, spec_dir: Path) -> SourceModel:
    path, origin = locate_config(source, spec_dir)
    return introspect(read_config(path), origin, path)
