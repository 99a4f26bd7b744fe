"""Training on a tiny random model: seconds per run."""

import json

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from adapters.registry import load_registry, read_card
from babelbot.config import load_config
from babelbot.models import load_model
from tuning.train import TuneConfig, TuneError, collate, peft_config, reply_token_loss, tune, virtual_token_count


def config_for(tiny_model_dir, tmp_path, name="t", **overrides) -> TuneConfig:
    values = dict(model=str(tiny_model_dir), languages=["es"], max_steps=4, batch_tokens=1024, max_length=256,
                  max_train_examples=24, output_dir=str(tmp_path / "adapters" / name), run_dir=str(tmp_path / "runs" / name),
                  checkpoint_every=2, name=name, lora_dropout=0.0, warmup_steps=1, learning_rate=1e-3)
    values.update(overrides)
    return load_config(TuneConfig, None, [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in values.items()])


def plain_peft_logits(tiny_model_dir, adapter_dir, input_ids):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.mark.parametrize("method", ["lora", "prompt_tuning"])
def test_tune_saves_a_plain_peft_adapter_with_identical_logits(tiny_model_dir, tmp_path, method):
    config = config_for(tiny_model_dir, tmp_path, name=f"reply-es-{method}", method=method)
    result = tune(config)
    folder = tmp_path / "adapters" / f"reply-es-{method}"
    for name in ("adapter_config.json", "adapter_model.safetensors", "card.json", "README.md", "loss.png"):
        assert (folder / name).is_file(), name
    card = read_card(folder)
    assert (card.task, card.languages, card.method) == ("reply", ("es",), method)
    raw = json.loads((folder / "card.json").read_text())
    assert len(raw["base_fingerprint"]) == 64 and len(raw["data_fingerprint"]) == 64
    assert raw["training"]["steps"] == 4 and raw["training"]["trainable_parameters"] > 0
    assert (tmp_path / "runs" / f"reply-es-{method}" / "metrics.json").is_file()
    assert list(load_registry(tmp_path / "adapters")) == [f"reply-es-{method}"]

    input_ids = result.tokenizer("Hola, ¿dónde está mi pedido?", return_tensors="pt")["input_ids"]
    result.model.eval()
    with torch.no_grad():
        trained = result.model(input_ids=input_ids).logits
    assert torch.equal(trained, plain_peft_logits(tiny_model_dir, folder, input_ids))


@pytest.mark.parametrize("method", ["lora", "prompt_tuning"])
def test_the_reply_token_loss_equals_the_models_own_loss(tiny_model_dir, tmp_path, method):
    from peft import get_peft_model

    from tuning.train import Tokenized

    config = config_for(tiny_model_dir, tmp_path, method=method)
    base, _ = load_model(str(tiny_model_dir), device="cpu")
    model = get_peft_model(base, peft_config(config, str(tiny_model_dir))).eval()
    generator = torch.Generator().manual_seed(0)
    rows = []
    for prompt_length, reply_length in [(7, 3), (12, 5), (4, 9)]:  # different lengths, right padding
        ids = torch.randint(5, 200, (prompt_length + reply_length,), generator=generator).tolist()
        rows.append(Tokenized(ids, [-100] * prompt_length + ids[prompt_length:]))
    batch = collate(rows, pad_id=0)
    with torch.no_grad():
        expected = model(**batch).loss
        ours = reply_token_loss(model, batch, virtual_token_count(model))
    assert virtual_token_count(model) == (config.num_virtual_tokens if method == "prompt_tuning" else 0)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_bf16_mixed_precision_on_cpu_trains_close_to_fp32(tiny_model_dir, tmp_path):
    fp32 = tune(config_for(tiny_model_dir, tmp_path, name="fp32", mixed_precision="no")).metrics
    bf16 = tune(config_for(tiny_model_dir, tmp_path, name="bf16", mixed_precision="bf16")).metrics
    assert bf16["final_loss"] == pytest.approx(fp32["final_loss"], rel=0.02)
    assert bf16["final_loss"] != fp32["final_loss"]  # the autocast really ran in bf16


def test_a_resumed_run_continues_the_same_loss_curve(tiny_model_dir, tmp_path):
    whole = tune(config_for(tiny_model_dir, tmp_path, name="whole", max_steps=6, checkpoint_every=3)).metrics
    first = tune(config_for(tiny_model_dir, tmp_path, name="split", max_steps=6, stop_after=3, checkpoint_every=3))
    assert first.metrics["steps"] == 3
    resumed = tune(config_for(tiny_model_dir, tmp_path, name="split", max_steps=6, checkpoint_every=3)).metrics
    state_whole = json.loads((tmp_path / "runs" / "whole" / "state.json").read_text())["state"]["losses"]
    state_split = json.loads((tmp_path / "runs" / "split" / "state.json").read_text())["state"]["losses"]
    assert len(state_split) == 6 and state_split == pytest.approx(state_whole, abs=1e-5)
    assert resumed["steps"] == whole["steps"] == 6


@pytest.mark.parametrize("method", ["lora", "prompt_tuning"])
def test_a_run_starts_from_an_adapter_trained_on_another_machine(tiny_model_dir, tmp_path, method):
    tune(config_for(tiny_model_dir, tmp_path, name="first", method=method))
    first = tmp_path / "adapters" / "first"
    peft_config = json.loads((first / "adapter_config.json").read_text())
    assert peft_config["base_model_name_or_path"] == str(tiny_model_dir)  # a spec that is a path stays as given
    # As the shipped adapters arrive: naming a model folder that exists only where they were trained.
    for key in ("base_model_name_or_path", "tokenizer_name_or_path"):
        if peft_config.get(key):
            peft_config[key] = "/elsewhere/models/tiny"
    (first / "adapter_config.json").write_text(json.dumps(peft_config))

    # A learning rate too small to move the weights: what is saved is where the run started.
    second = tune(config_for(tiny_model_dir, tmp_path, name="second", method=method, init_adapter=str(first),
                             max_steps=1, learning_rate=1e-12))
    assert second.metrics["steps"] == 1
    start, saved = (load_file(str(tmp_path / "adapters" / name / "adapter_model.safetensors")) for name in ("first", "second"))
    assert start.keys() == saved.keys() and all(torch.allclose(start[key], saved[key], atol=1e-6) for key in start)


def test_a_soft_prompt_grows_in_front_and_a_bad_start_is_refused(tiny_model_dir, tmp_path):
    tune(config_for(tiny_model_dir, tmp_path, name="first", method="prompt_tuning", num_virtual_tokens=4))
    start = load_file(str(tmp_path / "adapters" / "first" / "adapter_model.safetensors"))["prompt_embeddings"]
    grown = tune(config_for(tiny_model_dir, tmp_path, name="grown", method="prompt_tuning", num_virtual_tokens=6,
                            init_adapter=str(tmp_path / "adapters" / "first"), max_steps=1, learning_rate=1e-12))
    saved = load_file(str(tmp_path / "adapters" / "grown" / "adapter_model.safetensors"))["prompt_embeddings"]
    assert grown.metrics["trainable_parameters"] == saved.numel() and saved.shape[0] == 6
    assert torch.allclose(saved[2:], start, atol=1e-6)  # the trained tokens stay next to the input
    fresh = load_model(str(tiny_model_dir), device="cpu", dtype="float32")[0]
    text_init = get_peft_model(fresh, peft_config(config_for(tiny_model_dir, tmp_path, method="prompt_tuning",
                                                             num_virtual_tokens=6), str(tiny_model_dir)))
    assert torch.allclose(saved[:2], text_init.prompt_encoder["default"].embedding.weight[:2], atol=1e-6)

    with pytest.raises(TuneError, match="4 virtual tokens, this run asks for 2; a soft prompt can grow but not shrink"):
        tune(config_for(tiny_model_dir, tmp_path, name="shrunk", method="prompt_tuning", num_virtual_tokens=2,
                        init_adapter=str(tmp_path / "adapters" / "first")))
    (tmp_path / "adapters" / "first" / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(TuneError, match="not a PEFT adapter folder"):
        tune(config_for(tiny_model_dir, tmp_path, name="corrupt", method="prompt_tuning",
                        init_adapter=str(tmp_path / "adapters" / "first")))


def test_keep_best_saves_the_weights_with_the_lowest_dev_loss(tiny_model_dir, tmp_path):
    # A learning rate this high makes the tiny model's dev loss go up and down between evaluations.
    result = tune(config_for(tiny_model_dir, tmp_path, name="best", max_steps=6, eval_every=2, keep_best="true",
                             learning_rate=3e-1))
    metrics = result.metrics
    steps, losses = zip(*metrics["dev_losses"])
    assert steps == (2, 4, 6)
    assert metrics["saved_step"] == steps[losses.index(min(losses))] < 6  # not the last step's weights
    assert metrics["dev_loss"] == pytest.approx(min(losses), rel=1e-5)  # the saved weights are the best ones
    card = json.loads((tmp_path / "adapters" / "best" / "card.json").read_text())
    assert card["training"]["saved_step"] == metrics["saved_step"]


def test_keep_best_without_evaluations_is_refused():
    with pytest.raises(ValueError, match="keep_best needs eval_every"):
        TuneConfig(keep_best=True)


def test_a_run_saved_before_a_config_key_existed_still_resumes(tiny_model_dir, tmp_path):
    tune(config_for(tiny_model_dir, tmp_path, name="old", max_steps=4, stop_after=2))
    state_file = tmp_path / "runs" / "old" / "state.json"
    saved = json.loads(state_file.read_text())
    del saved["config"]["keep_best"]  # as written before keep_best was added, at its default
    state_file.write_text(json.dumps(saved))
    assert tune(config_for(tiny_model_dir, tmp_path, name="old", max_steps=4)).metrics["steps"] == 4


def test_resuming_with_another_config_is_refused(tiny_model_dir, tmp_path):
    tune(config_for(tiny_model_dir, tmp_path, name="r", max_steps=4, stop_after=2))
    with pytest.raises(TuneError, match="another config"):
        tune(config_for(tiny_model_dir, tmp_path, name="r", max_steps=4, learning_rate=5e-4))


def test_nan_loss_and_empty_data_stop_with_a_clear_message(tiny_model_dir, tmp_path):
    with pytest.raises(TuneError, match="loss became"):
        tune(config_for(tiny_model_dir, tmp_path, name="nan", learning_rate=1e30, max_steps=20))
    (tmp_path / "empty" / "conversations").mkdir(parents=True)
    with pytest.raises(TuneError, match="no training examples"):
        tune(config_for(tiny_model_dir, tmp_path, name="empty", data_dir=str(tmp_path / "empty")))


def test_bad_tune_configs_name_the_key():
    with pytest.raises(ValueError, match="method"):
        TuneConfig(method="adapter_v2")
    with pytest.raises(ValueError, match="languages"):
        TuneConfig(languages=["xx"])
    with pytest.raises(ValueError, match="QLoRA"):
        TuneConfig(method="prompt_tuning", quantize="4bit")


def test_4bit_qlora(tiny_model_dir, tmp_path):
    config = config_for(tiny_model_dir, tmp_path, name="q", quantize="4bit")
    if not torch.cuda.is_available():
        with pytest.raises(TuneError, match="needs a CUDA GPU"):
            tune(config)
        pytest.skip("4-bit QLoRA needs a CUDA GPU (bitsandbytes); checked that CPU gets a clear error instead")
    assert tune(config).metrics["quantize"] == "4bit"


def test_eval_compares_base_and_adapters(tiny_model_dir, tiny_adapters_dir, tmp_path, capsys):
    from babelbot.cli import main as cli_main
    from evals.adapters import EvalConfig, evaluate, markdown_table, plot_heatmap

    report = evaluate(EvalConfig(model=str(tiny_model_dir), adapters_dir=str(tiny_adapters_dir), languages=["es"],
                                 limit=2, max_new_tokens=6, max_length=256))
    # The batch engine's replies are plain PEFT generate's, one at a time
    one_at_a_time = evaluate(EvalConfig(model=str(tiny_model_dir), adapters_dir=str(tiny_adapters_dir), languages=["es"],
                                        limit=2, max_new_tokens=6, max_length=256, engine=False))
    assert [r["samples"] for r in report["results"]] == [r["samples"] for r in one_at_a_time["results"]]
    assert [r["loss"] for r in report["results"]] == [r["loss"] for r in one_at_a_time["results"]]
    # Results for the same weights are kept, not measured again; a retrained adapter is re-measured
    stale = [dict(r, loss=99.0) for r in report["results"]]
    stale[1]["weights"] = "an older training run"
    again = evaluate(EvalConfig(model=str(tiny_model_dir), adapters_dir=str(tiny_adapters_dir), languages=["es"],
                                limit=2, max_new_tokens=6, max_length=256), previous=stale)
    assert [r["loss"] for r in again["results"]] == [99.0, report["results"][1]["loss"], 99.0]
    systems = [(r["system"], r["method"]) for r in report["results"]]
    assert systems == [("base", "base"), ("reply-es-lora", "lora"), ("reply-es-prompt-tuning", "prompt_tuning")]
    for r in report["results"]:
        assert r["examples"] == 2 and 0 < r["loss"] < 20 and 0 <= r["chrf"] <= 100 and 0 <= r["right_language"] <= 1
    base, lora, prompt_tuned = report["results"]
    assert lora["loss"] != base["loss"]  # the adapter is really applied ...
    # ... and unloaded afterwards: the prompt-tuning adapter is measured as if alone
    from evals.adapters import reference_loss
    from prompts.formats import PlainFormat
    from tuning.data import reply_examples

    alone = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                      tiny_adapters_dir / "reply-es-prompt-tuning").eval()
    _, tokenizer = load_model(str(tiny_model_dir))
    examples = [e for e in reply_examples(languages=("es",)) if e.split == "test"][:2]
    assert reference_loss(alone, tokenizer, PlainFormat(), examples, 256) == pytest.approx(prompt_tuned["loss"], abs=1e-5)
    assert "| reply | es | reply-es-lora | lora | 2 |" in markdown_table(report)
    from evals.adapters import methods_table

    side_by_side = methods_table(report, tiny_adapters_dir).splitlines()[-1]
    assert side_by_side.startswith(f"| es | {base['loss']:.3f} |") and side_by_side.count("|") == 12
    plot_heatmap(report, tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 1000
    # Recipes are chosen on the dev split, which is measured on its own turns
    dev = evaluate(EvalConfig(model=str(tiny_model_dir), adapters_dir=str(tmp_path / "no-adapters"), languages=["es"],
                              tasks=["reply"], split="dev", limit=2, max_new_tokens=2, max_length=256))
    dev_targets = [e.target for e in reply_examples(languages=("es",)) if e.split == "dev"][:2]
    assert [s["reference"] for s in dev["results"][0]["samples"]] == dev_targets != [e.target for e in examples]
    with pytest.raises(ValueError, match="split must be dev or test"):
        EvalConfig(split="train")
    with pytest.raises(ValueError, match=r"languages must be among .* got \['xx'\]"):
        EvalConfig(languages=["es", "xx"])
    # Nothing to measure is said plainly, before any file is written
    empty_data = tmp_path / "empty-data"
    empty_data.mkdir()
    code = cli_main(["eval", "adapters", f"model={tiny_model_dir}", f"adapters_dir={tmp_path / 'no-adapters'}",
                     f"data_dir={empty_data}", "languages=es", "tasks=reply", f"out={tmp_path / 'empty-eval'}"])
    assert code == 2 and "nothing to evaluate: no test examples" in capsys.readouterr().err
    assert not (tmp_path / "empty-eval").exists()


def test_chrf_difference_to_the_base_model_gets_a_p_value():
    from evals.adapters import EvalConfig, chrf_p_value

    references = [f"Your order {n} ships within {n % 5 + 1} business days." for n in range(30)]
    base = {"examples": 30, "samples": [{"reference": r, "reply": "Hello, how can I help you?"} for r in references]}
    close = {"examples": 30, "samples": [{"reference": r, "reply": r.replace("ships", "leaves")} for r in references]}
    assert chrf_p_value(close, base) < 0.01  # far better on every example: not chance
    # Better on half the examples and worse on the other half: could well be chance
    mixed_base = {"examples": 30, "samples": [dict(s, reply=s["reference"] if n % 2 else s["reply"])
                                              for n, s in enumerate(base["samples"])]}
    mixed = {"examples": 30, "samples": [dict(s, reply=s["reply"] if n % 2 else s["reference"])
                                         for n, s in enumerate(base["samples"])]}
    assert chrf_p_value(mixed, mixed_base) > 0.2
    # Results saved before every reply was kept have no test
    assert chrf_p_value(close, dict(base, samples=base["samples"][:3])) is None
    assert EvalConfig(limit=0).limit == 0  # the whole split
    with pytest.raises(ValueError, match="0 for the whole split"):
        EvalConfig(limit=-1)


def test_the_gpu_training_check_writes_its_table_and_refuses_without_cuda(tmp_path):
    from types import SimpleNamespace

    from babelbot.config import ConfigError
    from bench.tune_gpu import main, write_results

    row = {"variant": "lora-bf16", "steps": 3, "tokens_per_s": 1234.5, "peak_memory_gib": 1.5, "final_loss": 2.0,
           "dev_loss": 2.1}
    table = write_results([row], tmp_path / "out")
    assert table.splitlines()[-1] == "| lora-bf16 | 3 | 1234 | 1.50 | 2.000 | 2.100 |"
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == [row]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            main(SimpleNamespace(steps=3, out=str(tmp_path / "gpu")))
