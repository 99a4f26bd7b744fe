import json
import time

import pytest
import torch

from babelbot.models import (
    CATALOG,
    DEFAULT_MODEL,
    MARKER_FILE,
    CatalogEntry,
    ModelError,
    load_model,
    portable_model_name,
    prepare_catalog_model,
    register_model,
    resolve_model,
)


def _fake_chunk_package(root, package: str, filename: str, data: bytes):
    folder = root / package / "data"
    folder.mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (folder / filename).write_bytes(data)


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    root = tmp_path / "site"
    monkeypatch.syspath_prepend(str(root))
    return root


def test_catalog_has_the_default_model():
    entry = CATALOG[DEFAULT_MODEL]
    assert len(entry.chunks) == 4 and len(entry.sha256) == 64 and "Gemma Terms of Use" in entry.license_note
    with pytest.raises(ValueError, match="already in the catalog"):
        register_model(entry)
    # Saved adapters name a catalog model by its hub id, not by this machine's cache folder.
    assert portable_model_name(DEFAULT_MODEL) == entry.hub_id == "google/gemma-3-270m"
    assert portable_model_name("models/my-gemma") == "models/my-gemma"


def test_checksum_mismatch_names_the_problem_and_the_fix(fake_packages, babelbot_home):
    _fake_chunk_package(fake_packages, "bbfake_part1", "m.gguf.part00", b"GGUF" + b"\0" * 100)
    _fake_chunk_package(fake_packages, "bbfake_part2", "m.gguf.part01", b"\1" * 100)
    entry = CatalogEntry(
        name="fake", chunks=(("bbfake_part1", "m.gguf.part00"), ("bbfake_part2", "m.gguf.part01")),
        sha256="0" * 64, pip_packages="fake-gguf==1.0", hub_id="x/fake", license_note="",
    )
    with pytest.raises(ModelError) as error:
        prepare_catalog_model(entry)
    message = str(error.value)
    assert "Checksum mismatch" in message and "0" * 64 in message
    assert "pip install --force-reinstall fake-gguf==1.0" in message
    assert not list((babelbot_home / "models").glob("fake*"))  # nothing half-made left behind


def test_missing_chunk_package_says_what_to_install():
    entry = CatalogEntry("gone", (("bb_not_installed_pkg", "x.part00"),), "0" * 64, "gone-gguf==2.0", "x/gone", "")
    with pytest.raises(ModelError, match=r"pip install gone-gguf==2\.0"):
        prepare_catalog_model(entry)


def test_unavailable_hub_id_explains_how_to_use_a_local_folder():
    with pytest.raises(ModelError) as error:
        load_model("someone/model-that-is-not-here", device="cpu")
    message = str(error.value)
    assert "local folder" in message and "--model models/model-that-is-not-here" in message


def test_missing_paths_are_named():
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("/nowhere/model.gguf")
    with pytest.raises(ModelError, match="not a folder"):
        resolve_model("./no-such-folder")


def test_local_folder_loads(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    assert model.dtype == torch.float32 and not model.training and tokenizer.pad_token is not None


def test_corrupt_weights_name_the_file_and_the_fix(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in tiny_model_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(ModelError, match="corrupt or incomplete"):
        load_model(str(broken), device="cpu")


@pytest.mark.real_model
def test_default_model_is_converted_once_and_generates(real_model_home, real_model, monkeypatch):
    folder = real_model_home / "models" / DEFAULT_MODEL
    marker = json.loads((folder / MARKER_FILE).read_text())
    assert marker["gguf_sha256"] == CATALOG[DEFAULT_MODEL].sha256
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    monkeypatch.setenv("BABELBOT_HOME", str(real_model_home))
    start = time.monotonic()
    assert resolve_model(DEFAULT_MODEL) == str(folder)  # cached: no second conversion
    assert time.monotonic() - start < 5

    model, tokenizer = real_model

    def loss(text: str) -> float:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            return model(ids, labels=ids).loss.item()

    # Real weights: fluent text is far likelier than the same words scrambled (4.5 vs 9.0 nats here).
    sentence = "Returns are free for defective items, and refunds reach your card within five business days."
    scrambled = " ".join(reversed(sentence.split()))
    assert loss(sentence) < 6.0 and loss(scrambled) > loss(sentence) + 2.0
    assert loss("Los pedidos se procesan en uno o dos días hábiles.") < 6.0

    inputs = tokenizer("Paris is the capital of", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert "France" in tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])
