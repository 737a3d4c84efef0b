"""A peft LoRA adapter as a llama.cpp LoRA GGUF, so a policy trained on the transformers backend samples on the
fast llama.cpp backend (on top of the zoo's quantised GGUF) without merging or re-quantising the base.

Written with the ``gguf`` package (llama.cpp's own writer). Layout as llama.cpp's LoRA loader expects it: for
each adapted weight ``blk.N.attn_q.weight`` two tensors ``….lora_a`` (rank × in) and ``….lora_b`` (out × rank),
float32, and the metadata general.type = adapter, adapter.type = lora, adapter.lora.alpha; llama.cpp scales
by alpha / rank, as peft does.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import atomic_path

_PREFIX = "base_model.model."
# llama.cpp's converter reorders the rows of the query and key projections of these architectures (its rotary
# layout differs from Hugging Face's); a LoRA update of those weights must have its B rows reordered alike
_PERMUTED_QK = {"llama"}


def export_lora_gguf(adapter: str | Path, base_gguf: str | Path, *, out: str | Path | None = None) -> Path:
    """Write ``adapter`` (a peft LoRA folder) as ``<adapter>/adapter.gguf`` (or ``out``) for the model in
    ``base_gguf``; reused when it already exists. Refuses DoRA, rsLoRA and adapters of weights the GGUF lacks."""
    import gguf
    from safetensors.numpy import load_file

    adapter, base_gguf = Path(adapter), Path(base_gguf)
    target = Path(out) if out else adapter / "adapter.gguf"
    if target.is_file():
        return target
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise ConfigError(f"adapter {str(adapter)!r} is not a LoRA adapter folder (no adapter_config.json)")
    config = json.loads(config_path.read_text())
    if config.get("use_dora") or config.get("use_rslora"):
        raise ConfigError(f"{adapter}: DoRA / rsLoRA adapters have no llama.cpp form; use backend='transformers'")
    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field(reader, "general.architecture")
    n_blocks = int(_field(reader, f"{arch}.block_count"))
    arch_enum = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    names = gguf.get_tensor_name_map(arch_enum, n_blocks)
    base_tensors = {t.name for t in reader.tensors}
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        if not key.startswith(_PREFIX) or ".lora_" not in key:
            raise ConfigError(f"{adapter}: unexpected tensor {key!r} (only LoRA A/B weights can be exported)")
        module, part = key[len(_PREFIX):].split(".lora_")
        gguf_name = names.get_name(module)
        if gguf_name is None or f"{gguf_name}.weight" not in base_tensors:
            raise ConfigError(f"{adapter}: {module} has no tensor in {base_gguf.name}")
        value = value.astype(np.float32)
        if arch in _PERMUTED_QK and part.startswith("B") and module.endswith(("q_proj", "k_proj")):
            heads = int(_field(reader, f"{arch}.attention.head_count"))
            if module.endswith("k_proj"):
                heads = int(_field(reader, f"{arch}.attention.head_count_kv"))
            value = _permute_rows(value, heads)
        pairs.setdefault(f"{gguf_name}.weight", {})[part.split(".")[0]] = value
    with atomic_path(target, suffix=".gguf") as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
        for name in sorted(pairs):
            writer.add_tensor(f"{name}.lora_a", pairs[name]["A"])  # (rank, in)
            writer.add_tensor(f"{name}.lora_b", pairs[name]["B"])  # (out, rank)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return target


def _permute_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """The converter's q/k reordering applied to the output rows of (out, rank): per head, the two rotary halves
    are interleaved."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise ConfigError(f"{reader.path}: no {key} in the GGUF metadata")
    value = field.parts[field.data[0]]
    return bytes(value).decode("utf-8") if value.dtype == np.uint8 else value[0]
