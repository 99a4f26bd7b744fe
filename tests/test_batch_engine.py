"""The batch engine: rows with different LoRA adapters, soft prompts or none, joining and
leaving mid-batch, give token for token what each adapter gives alone through plain PEFT."""

import random

import pytest
import torch
from peft import LoraConfig, PeftModel, PromptTuningConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

from adapters.registry import AdapterError
from babelbot import soft_prompts
from bot.batch_engine import BatchEngine, Sampling


def build_adapters(model_dir, root, loras=3, prompts=2):
    """Random (untrained) adapters: strong enough that each changes the output."""
    adapters = {}
    for i in range(loras):
        torch.manual_seed(100 + i)
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"],
                            init_lora_weights=False)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config)
        model.save_pretrained(root / f"lora-{i}")
        adapters[f"lora-{i}"] = "lora"
    for i in range(prompts):
        torch.manual_seed(200 + i)
        config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=3 + i)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config)
        with torch.no_grad():
            model.prompt_encoder["default"].embedding.weight.normal_(0, 1.0)
        model.save_pretrained(root / f"prompt-{i}")
        adapters[f"prompt-{i}"] = "prompt_tuning"
    return adapters


def reference(model_dir, root, adapter, input_ids, max_new_tokens, dtype=torch.float32, **sampling) -> list[int]:
    """The adapter alone through plain PEFT (soft prompts through `babelbot.soft_prompts`)."""
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    # LoRA weights in the model's precision, as the engine keeps them (PEFT's default upcasts them)
    model = PeftModel.from_pretrained(base, root / adapter, autocast_adapter_dtype=False).eval() if adapter else base
    with torch.no_grad():
        out = soft_prompts.generate(model, torch.tensor([input_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=0, **sampling)
    return out[0].tolist()


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch-adapters")
    return tiny_model_dir, root, build_adapters(tiny_model_dir, root)


def new_engine(model_dir, root, adapters, dtype=torch.float32, **options):
    engine = BatchEngine(AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval(), **options)
    for name, method in adapters.items():
        engine.register(name, method, root / name)
    return engine


def prompts(count, seed=0, vocab=500):
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(3, 40))] for _ in range(count)]


def test_mixed_batch_is_token_for_token_plain_peft(setup):
    model_dir, root, adapters = setup
    engine = new_engine(model_dir, root, adapters, prefill_chunk=8)
    choices = [None, *adapters]
    plan = [(ids, choices[i % len(choices)], 60 if i == 3 else 6 + (i * 5) % 11) for i, ids in enumerate(prompts(12))]
    requests = []
    for index, (ids, adapter, length) in enumerate(plan):  # a new request joins every other step
        requests.append(engine.submit(ids, adapter, Sampling(max_new_tokens=length)))
        engine.step()
        if index % 2:
            engine.step()
    cancelled = requests[3]
    cancelled.cancel()
    while engine.busy:
        engine.step()
    assert cancelled.finish_reason == "cancelled" and len(cancelled.generated) < plan[3][2]
    for request, (ids, adapter, length) in zip(requests, plan):
        if request is not cancelled:
            assert request.generated == reference(model_dir, root, adapter, ids, length), (request.id, adapter)
    outputs = {tuple(r.generated) for r in requests}
    assert len(outputs) > len(adapters)  # adapters really change the output


def test_sampling_settings_apply_per_request(setup):
    model_dir, root, adapters = setup
    engine = new_engine(model_dir, root, adapters)
    ids = prompts(1, seed=3)[0]
    penalised = engine.submit(ids, "lora-0", Sampling(max_new_tokens=10, repetition_penalty=1.5))
    sampled = [engine.submit(ids, None, Sampling(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=s)) for s in (1, 1, 2)]
    while engine.busy:
        engine.step()
    assert penalised.generated == reference(model_dir, root, "lora-0", ids, 10, repetition_penalty=1.5)
    assert sampled[0].generated == sampled[1].generated != sampled[2].generated  # seeded per request


def test_adapters_load_on_demand_with_lru_eviction_and_pinning(setup):
    model_dir, root, adapters = setup
    engine = BatchEngine(AutoModelForCausalLM.from_pretrained(model_dir).eval(), max_resident=2)
    engine.register("lora-0", "lora", root / "lora-0", pinned=True)
    for name in ("lora-1", "prompt-0", "lora-2"):
        engine.register(name, adapters[name], root / name, load=False)
    ids = prompts(1, seed=5)[0]
    results = {}
    for name in ("lora-1", "prompt-0", "lora-2", "lora-0"):
        request = engine.submit(ids, name, Sampling(max_new_tokens=5))
        while engine.busy:
            engine.step()
        results[name] = request.generated
        assert "lora-0" in engine.resident and len(engine.resident) <= 2
    assert list(engine.resident) == ["lora-2", "lora-0"]  # prompt-0 and lora-1 were evicted, lora-0 pinned
    for name, generated in results.items():
        assert generated == reference(model_dir, root, name, ids, 5), name
    with pytest.raises(AdapterError, match="unknown adapter"):
        engine.submit(ids, "nope")


def test_unload_while_serving_keeps_other_requests_going(setup):
    model_dir, root, adapters = setup
    engine = new_engine(model_dir, root, adapters)
    engine.start()
    try:
        ids = prompts(2, seed=7)
        busy = engine.submit(ids[0], "lora-1", Sampling(max_new_tokens=30))
        other = engine.submit(ids[1], "prompt-1", Sampling(max_new_tokens=30))
        with pytest.raises(AdapterError, match="in use"):
            engine.unload("lora-1")
        engine.unload("lora-2")  # not in use: goes at once, while the others decode
        assert busy.result() == reference(model_dir, root, "lora-1", ids[0], 30)
        assert other.result() == reference(model_dir, root, "prompt-1", ids[1], 30)
        assert "lora-2" not in engine.resident
        again = engine.submit(ids[0], "lora-2", Sampling(max_new_tokens=4))  # reloaded on demand
        assert again.result() == reference(model_dir, root, "lora-2", ids[0], 4)
        for name in [n for n, m in engine.resident.items() if m == "lora"]:
            engine.unload(name)
        assert engine.lora is None  # the last LoRA adapter took its layers with it
        plain = engine.submit(ids[1], None, Sampling(max_new_tokens=6))
        assert plain.result() == reference(model_dir, root, None, ids[1], 6)
    finally:
        engine.stop()


def test_sliding_window_model_with_prompts_longer_than_the_window(tmp_path):
    """Gemma 3 mixes sliding-window and full attention layers; rows of different lengths,
    all longer than the window, must still decode as if alone."""
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=6, max_position_embeddings=256,
        layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    Gemma3ForCausalLM(config).save_pretrained(tmp_path / "gemma")
    adapters = build_adapters(tmp_path / "gemma", tmp_path, loras=1, prompts=1)
    engine = new_engine(tmp_path / "gemma", tmp_path, adapters, prefill_chunk=5)
    plan = [(ids, [None, "lora-0", "prompt-0"][i % 3]) for i, ids in enumerate(prompts(6, seed=11, vocab=300))]
    requests = []
    for ids, adapter in plan:
        requests.append(engine.submit(ids, adapter, Sampling(max_new_tokens=12)))
        engine.step()
    while engine.busy:
        engine.step()
    for request, (ids, adapter) in zip(requests, plan):
        assert request.generated == reference(tmp_path / "gemma", tmp_path, adapter, ids, 12), (request.id, adapter)

def test_bf16_mixed_batch_is_token_for_token_plain_peft_in_bf16(setup):
    model_dir, root, adapters = setup
    engine = new_engine(model_dir, root, adapters, dtype=torch.bfloat16, prefill_chunk=8)
    plan = [(ids, [None, *adapters][i % (len(adapters) + 1)]) for i, ids in enumerate(prompts(6, seed=3))]
    requests = [engine.submit(ids, adapter, Sampling(max_new_tokens=10)) for ids, adapter in plan]
    while engine.busy:
        engine.step()
    for request, (ids, adapter) in zip(requests, plan):
        assert request.generated == reference(model_dir, root, adapter, ids, 10, dtype=torch.bfloat16), (request.id, adapter)


def test_serve_bench_runs_every_method_on_a_tiny_model(tiny_model_dir, tmp_path):
    import json
    from types import SimpleNamespace

    from bench.serve import main

    args = SimpleNamespace(model=str(tiny_model_dir), sessions=[1, 3], adapters=[2], new_tokens=3, serial_max_sessions=1,
                           dtypes=["float32", "bfloat16"], out=str(tmp_path))
    assert main(args) == 0
    rows = json.loads((tmp_path / "metrics.json").read_text())["rows"]
    methods = ("engine, mixed adapters", "engine, no adapters", "PEFT adapter_names (LoRA only)")
    assert {(r["dtype"], r["method"], r["sessions"]) for r in rows} == {
        (d, m, n) for d in ("float32", "bfloat16") for m in methods for n in (1, 3)
    } | {(d, "serial set_adapter + generate", 1) for d in ("float32", "bfloat16")}
    assert all(r["new_tokens"] == 3 * r["sessions"] and r["tokens_per_s"] > 0 for r in rows)
    assert all(r["work_gflops"] > r["gflops"] > 0 for r in rows)  # prefill work counts on top of the new tokens
    assert (tmp_path / "throughput.png").stat().st_size > 10_000
    assert "| bfloat16 | engine, mixed adapters | 3 |" in (tmp_path / "table.md").read_text()


def test_gpu_serving_check_runs_its_methods_on_tiny_shapes_and_refuses_without_cuda(tmp_path):
    """The H200 script's own code, on CPU in tiny shapes: every method runs, and the roofline
    counts weights plus keys and values (a sliding layer at most its window)."""
    import json
    from types import SimpleNamespace

    from babelbot.config import ConfigError
    from bench.serve_gpu import GPU_MODELS, bench_model, build_model, bytes_per_decode_step, main

    shapes = {"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 6,
              "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 512,
              "sliding_window": 8, "sliding_window_pattern": 6, "eos_token_id": 1, "pad_token_id": 0}
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(shapes))
    model = build_model(config_file, "cpu", torch.float32)
    step = bytes_per_decode_step(model, sessions=2, context=20)
    assert step["weights"] == 4 * sum(p.numel() for p in model.parameters())
    assert step["kv"] == 2 * (5 * 8 + 1 * 20) * 2 * 1 * 16 * 4  # five sliding layers keep 8 positions, one keeps 20
    seen = []
    rows = bench_model(config_file, "cpu", [1, 2], [2], new_tokens=3, bandwidth=1e9, serial_max_sessions=1, lengths=(5, 9),
                       on_row=seen.append)
    assert seen == rows  # each row is handed on as soon as it is measured, so a stopped run keeps them
    assert {(r["method"], r["sessions"]) for r in rows} == {
        (m, n) for m in ("engine, mixed adapters", "engine, no adapters", "PEFT adapter_names (LoRA only)") for n in (1, 2)
    } | {("serial set_adapter + generate", 1)}
    assert all(r["tokens_per_s"] > 0 and r["roofline_share"] > 0 for r in rows)
    assert sorted(p.stem for p in GPU_MODELS.glob("*.json")) == ["gemma-3-1b", "qwen2.5-1.5b"]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            main(SimpleNamespace(models=["gemma-3-1b"]))
