"""`babelbot eval fewshot`: few-shot adaptation curves for the `reply` task (the seed's
section 3.3). For each target language, k target-language training examples, LoRA and
prompt tuning, each started from scratch or from an English adapter; loss and chrF on the
target language's test split.

    English source adapters (one per method) → for k in ks: tune on the first k examples
    → score on the test turns → append to fewshot.json

k = 0 scores the starting point itself: the base model (from scratch) or the English
adapter. Every finished run is saved at once, and a rerun skips what is already there, so
the study can be run in sittings. The step budget per k is small on purpose (CPU); the
JSON records it with every point.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from babelbot.config import ConfigError, load_config
from babelbot.models import DEFAULT_MODEL, load_model
from babelbot.paths import DATA_DIR, REPO_ROOT
from prompts.formats import format_for
from tuning.data import reply_examples
from tuning.train import TuneConfig, TuneError, tune

log = logging.getLogger(__name__)


@dataclass
class FewShotConfig:
    model: str = DEFAULT_MODEL
    languages: list[str] = field(default_factory=lambda: ["fr", "hi"])  # a close and a distant language
    ks: list[int] = field(default_factory=lambda: [0, 8, 32, 128])
    steps: list[int] = field(default_factory=lambda: [0, 3, 6, 12])  # optimizer steps for each k
    methods: list[str] = field(default_factory=lambda: ["lora", "prompt_tuning"])
    source_language: str = "en"
    source_steps: int = 16  # the English adapters the "from en" runs start from
    batch_tokens: int = 1024
    max_length: int = 512
    lora_learning_rate: float = 1.0e-3
    prompt_learning_rate: float = 3.0e-2
    test_turns: int = 8
    max_new_tokens: int = 24
    work_dir: str = str(REPO_ROOT / "runs" / "fewshot")
    out: str = str(REPO_ROOT / "results" / "transfer" / "fewshot.json")

    def __post_init__(self):
        if len(self.ks) != len(self.steps):
            raise ValueError(f"ks and steps must have the same length, got {self.ks} and {self.steps}")
        if any(k > 0 and s < 1 for k, s in zip(self.ks, self.steps)):
            raise ValueError("every k > 0 needs at least one step")


def _tune_config(config: FewShotConfig, name: str, language: str, method: str, steps: int, k: int, init: str) -> TuneConfig:
    rate = config.lora_learning_rate if method == "lora" else config.prompt_learning_rate
    folder = Path(config.work_dir) / name
    return TuneConfig(
        task="reply", languages=[language], method=method, name=name, model=config.model, max_steps=steps,
        batch_tokens=config.batch_tokens, max_length=config.max_length, learning_rate=rate, warmup_steps=1,
        checkpoint_every=max(steps, 1), max_train_examples=k, init_adapter=init,
        output_dir=str(folder / "adapter"), run_dir=str(folder / "run"),
    )


def run_fewshot(config: FewShotConfig) -> dict:
    from peft import PeftModel

    from babelbot.language_id import LanguageDetector
    from evals.adapters import score

    out = Path(config.out)
    saved = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    runs = saved.get("runs", [])
    done = {(r["language"], r["method"], r["start"], r["k"]) for r in runs}
    setup = (f"Each point: the first k training examples of the language, {config.batch_tokens} tokens a step, "
             f"steps per k {dict(zip(config.ks, config.steps))}; English adapters: {config.source_steps} steps; "
             f"learning rate {config.lora_learning_rate} (LoRA) / {config.prompt_learning_rate} (prompt tuning); "
             f"greedy replies of at most {config.max_new_tokens} tokens.")

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"config": asdict(config), "setup": setup, "test_turns": config.test_turns, "runs": runs}
        out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    sources = {}
    for method in config.methods:
        name = f"source-{config.source_language}-{method.replace('_', '-')}"
        tune_config = _tune_config(config, name, config.source_language, method, config.source_steps, 0, "")
        if not (Path(tune_config.output_dir) / "adapter_model.safetensors").exists():
            tune(tune_config)
        sources[method] = tune_config.output_dir

    base, tokenizer = load_model(config.model)
    prompt_format = format_for(tokenizer)
    detector = LanguageDetector()
    scratch_scores = {}
    for language in config.languages:
        tests = [e for e in reply_examples(Path(DATA_DIR), (language,)) if e.split == "test"][: config.test_turns]
        for method in config.methods:
            for start in ("scratch", config.source_language):
                for k, steps in zip(config.ks, config.steps):
                    if (language, method, start, k) in done:
                        continue
                    log.info("few-shot %s %s from %s, k=%d", language, method, start, k)
                    if k == 0 and start == "scratch":  # the base model: the same for both methods
                        if language not in scratch_scores:
                            scratch_scores[language] = score(base, tokenizer, prompt_format, tests, detector,
                                                             config.max_new_tokens, config.max_length)
                        scores = scratch_scores[language]
                    else:
                        init = sources[method] if start != "scratch" else ""
                        if k == 0:
                            folder = init
                        else:
                            name = f"{language}-{method.replace('_', '-')}-from-{start}-k{k}"
                            tune_config = _tune_config(config, name, language, method, steps, k, init)
                            tune(tune_config)
                            folder = tune_config.output_dir
                        model = PeftModel.from_pretrained(base, folder).eval()
                        scores = score(model, tokenizer, prompt_format, tests, detector,
                                       config.max_new_tokens, config.max_length)
                        base = model.unload() if method == "lora" else model.get_base_model()
                    runs.append({"language": language, "method": method, "start": start, "k": k,
                                 "steps": steps if k else 0, **{key: scores[key] for key in ("loss", "chrf", "right_language")}})
                    save()
    save()
    return json.loads(out.read_text(encoding="utf-8"))


def main(args) -> int:
    config = load_config(FewShotConfig, args.config, args.overrides)
    try:
        result = run_fewshot(config)
    except TuneError as error:
        raise ConfigError(str(error)) from None
    for r in result["runs"]:
        print(f"{r['language']}\t{r['method']}\tfrom {r['start']}\tk={r['k']}\tloss {r['loss']:.3f}\tchrF {r['chrf']:.1f}")
    print(f"wrote {config.out}; `babelbot report transfer` adds the curves to the report")
    return 0
