"""`babelbot tune CONFIG.yaml [key=value ...]`: train one PEFT adapter (LoRA or prompt tuning)
on one task, for one language or several, through accelerate.

    parse config → build examples and batches → load base + PEFT → train (resumable) → save

Runs as it is on CPU (fp32) or CUDA (bf16), and under `accelerate launch`. Writes the adapter
in PEFT's own format plus our card to `output_dir`, and checkpoints, the loss curve and
metrics to `run_dir`. A run stopped at any point continues from its last checkpoint with
the same batches in the same order, so the loss curve goes on where it left off.
"""

import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from adapters.registry import METHODS, AdapterCard
from babelbot.config import ConfigError
from babelbot.labels import TASKS
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.models import DEFAULT_MODEL, load_model, model_fingerprint, portable_model_name, resolve_model
from babelbot.paths import ADAPTERS_DIR, DATA_DIR, REPO_ROOT
from prompts.formats import format_for
from tuning.data import TASK_EXAMPLES, Example

log = logging.getLogger(__name__)
LANGUAGE_AGNOSTIC_INIT = "You are a helpful customer-support agent. Answer the customer's last message."


@dataclass
class TuneConfig:
    """One adapter's training run."""

    task: str = "reply"  # reply | summarize | translate
    languages: list[str] = field(default_factory=lambda: list(TRAINING_LANGUAGES))  # one: a per-language adapter
    method: str = "lora"  # lora | prompt_tuning
    name: str = ""  # default: <task>-<language or multi>-<method>
    model: str = DEFAULT_MODEL  # base model spec (catalog name, folder, .gguf or hub id)
    data_dir: str = str(DATA_DIR)
    output_dir: str = ""  # default: adapters/<name>
    run_dir: str = ""  # checkpoints, loss curve, metrics; default: runs/<name>
    max_steps: int = 200  # the whole run (the learning-rate schedule spans it)
    stop_after: int = 0  # stop at this step (0: max_steps) to train in sittings; a later run resumes
    batch_tokens: int = 4096  # padded tokens per optimizer step; batches group similar lengths
    max_length: int = 1024  # longer examples keep their end (the reply) and lose the oldest context
    learning_rate: float = 2e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    num_virtual_tokens: int = 20
    prompt_init_text: str = LANGUAGE_AGNOSTIC_INIT  # prompt tuning starts from this text's embeddings
    quantize: str = "none"  # none | 4bit | 8bit: QLoRA base weights with bitsandbytes (CUDA only)
    gradient_checkpointing: bool = False
    dtype: str = "auto"  # weights: auto is fp32 on CPU, bf16 on CUDA
    mixed_precision: str = "auto"  # auto: bf16 on CUDA, no on CPU; bf16 on CPU autocasts the matmuls to bf16
    checkpoint_every: int = 50
    eval_every: int = 0  # dev loss every N steps (0: only at the end), drawn on the loss curve
    keep_best: bool = False  # save the weights of the evaluation with the lowest dev loss, not the last step's
    max_train_examples: int = 0  # 0: all of the train split; else its first N examples
    init_adapter: str = ""  # start from this saved adapter's weights (same method) instead of fresh ones
    seed: int = 0

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        unknown = [lang for lang in self.languages if lang not in TRAINING_LANGUAGES]
        if not self.languages or unknown:
            raise ValueError(f"languages must be among {TRAINING_LANGUAGES}, got {self.languages}")
        if self.quantize not in ("none", "4bit", "8bit"):
            raise ValueError(f"quantize must be none, 4bit or 8bit, got {self.quantize!r}")
        if self.quantize != "none" and self.method != "lora":
            raise ValueError("quantize (QLoRA) works with method=lora only")
        if min(self.max_steps, self.batch_tokens, self.max_length, self.checkpoint_every) < 1:
            raise ValueError("max_steps, batch_tokens, max_length and checkpoint_every must be positive")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise ValueError(f"mixed_precision must be auto, no or bf16, got {self.mixed_precision!r}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if self.keep_best and not self.eval_every:
            raise ValueError("keep_best needs eval_every > 0: the best step is chosen among the dev-loss evaluations")
        if self.stop_after < 0:
            raise ValueError(f"stop_after must be >= 0, got {self.stop_after}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        scope = self.languages[0] if len(self.languages) == 1 else "multi"
        self.name = self.name or f"{self.task}-{scope}-{self.method.replace('_', '-')}"
        self.output_dir = self.output_dir or str(ADAPTERS_DIR / self.name)
        self.run_dir = self.run_dir or str(REPO_ROOT / "runs" / self.name)


class TuneError(RuntimeError):
    """A run that cannot go on; the message says why and what to change."""


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # -100 on the prompt: the loss is on the reply only


def tokenize(example: Example, tokenizer, prompt_format, max_length: int) -> Tokenized:
    prompt_ids = tokenizer(prompt_format.apply(example.prompt), add_special_tokens=True)["input_ids"]
    target_ids = tokenizer(" " + example.target.strip(), add_special_tokens=False)["input_ids"]
    target_ids = target_ids[: max_length // 2] + [tokenizer.eos_token_id]
    keep = max_length - len(target_ids)
    prompt_ids = prompt_ids[-keep:]  # oldest context goes first
    return Tokenized(prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids)


def make_batches(items: list[Tokenized], batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices grouped by similar length so padding stays small, in a seeded random order."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids))
    batches, current, longest = [], [], 0
    for index in order:
        length = len(items[index].input_ids)
        if current and max(longest, length) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
    if current:
        batches.append(current)
    random.Random(seed * 1000 + epoch).shuffle(batches)
    return batches


def collate(items: list[Tokenized], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(item.input_ids) for item in items)
    ids = torch.full((len(items), width), pad_id)  # (B, T), right padding
    labels = torch.full((len(items), width), -100)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def batch_schedule(items: list[Tokenized], config: TuneConfig) -> list[list[int]]:
    """The batch for every step, epochs one after another: fixed by the seed, so a resumed
    run sees exactly the batches the uninterrupted run would have."""
    schedule, epoch = [], 0
    while len(schedule) < config.max_steps:
        schedule += make_batches(items, config.batch_tokens, config.seed, epoch)
        epoch += 1
    return schedule[: config.max_steps]


def peft_config(config: TuneConfig, model_path: str):
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType

    if config.method == "lora":
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout, target_modules=config.lora_targets,
        )
    return PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=config.prompt_init_text,
        tokenizer_name_or_path=model_path,
    )


def load_base(config: TuneConfig, device: str):
    """The frozen base model; on CUDA optionally in 4/8-bit (QLoRA)."""
    if config.quantize == "none":
        return load_model(config.model, device=device, dtype=config.dtype)
    if not device.startswith("cuda"):
        raise TuneError(f"quantize={config.quantize} needs a CUDA GPU (bitsandbytes); use quantize=none on CPU")
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    path = resolve_model(config.model)
    quantization = BitsAndBytesConfig(
        load_in_4bit=config.quantize == "4bit", load_in_8bit=config.quantize == "8bit",
        bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True,
    )
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quantization, device_map={"": device})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def adapter_to_continue(base, folder: Path, config: TuneConfig, model_path: str):
    """A saved adapter, trainable, as the starting point of a new run (few-shot transfer).
    Built fresh from the saved config, then given the saved weights: PEFT refuses to load a
    prompt-tuning adapter as trainable. A soft prompt can grow: asked for more virtual tokens
    than it has, the new ones start from `prompt_init_text` and go in front, so the trained
    ones keep their distance to the input."""
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        peft_type = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["peft_type"]
        weights = load_file(str(folder / "adapter_model.safetensors"))
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise TuneError(f"init_adapter={folder}: not a PEFT adapter folder ({error})") from None
    if peft_type != {"lora": "LORA", "prompt_tuning": "PROMPT_TUNING"}[config.method]:
        raise TuneError(f"init_adapter={folder} is {peft_type}, this run trains {config.method}; use a matching adapter")
    saved = PeftConfig.from_pretrained(str(folder))
    saved.inference_mode = False
    if peft_type == "PROMPT_TUNING":
        if config.num_virtual_tokens < saved.num_virtual_tokens:
            raise TuneError(f"init_adapter={folder} has {saved.num_virtual_tokens} virtual tokens, this run asks for "
                            f"{config.num_virtual_tokens}; a soft prompt can grow but not shrink")
        if config.num_virtual_tokens > saved.num_virtual_tokens:
            model = get_peft_model(base, peft_config(config, model_path))
            embedding = model.prompt_encoder[model.active_adapter].embedding.weight
            with torch.no_grad():
                embedding[-saved.num_virtual_tokens :] = weights["prompt_embeddings"].to(embedding)
            return model
        # The saved weights replace the initial prompt below, so do not start it from text:
        # that would load the tokenizer the adapter names, which may be on another machine.
        saved.prompt_tuning_init = "RANDOM"
    model = get_peft_model(base, saved)
    set_peft_model_state_dict(model, weights)
    return model


def data_fingerprint(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.id}\t{example.target}\n".encode("utf-8"))
    return digest.hexdigest()


def plot_loss(losses: list[float], path: Path, title: str, dev_losses: list[list[float]] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(range(1, len(losses) + 1), losses, linewidth=1, alpha=0.4, label="step")
    window = max(1, min(25, len(losses) // 5))
    smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
              for i in range(len(losses))]
    axis.plot(range(1, len(losses) + 1), smooth, linewidth=2, label=f"mean of {window}")
    if dev_losses:
        axis.plot([step for step, _ in dev_losses], [loss for _, loss in dev_losses], "o-", linewidth=1.5, label="dev")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (reply tokens)")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def virtual_token_count(model) -> int:
    """How many soft-prompt positions a PEFT prompt-learning model puts before the input (else 0)."""
    config = getattr(model, "active_peft_config", None)
    return config.num_virtual_tokens if config is not None and config.is_prompt_learning else 0


def reply_token_loss(model, batch: dict[str, torch.Tensor], virtual_tokens: int, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on the reply tokens, with the vocabulary projection computed only at the
    positions that predict one. Equal to the model's own `labels=` loss, but the 262k-word
    output layer is most of the compute and only about a tenth of the tokens are reply
    tokens: measured 2.2x faster a training step on CPU."""
    labels = batch["labels"]
    if virtual_tokens:  # the soft prompt sits in front of the input
        labels = torch.cat([labels.new_full((labels.shape[0], virtual_tokens), -100), labels], dim=1)
    targets = labels[:, 1:]
    positions = (targets != -100).any(dim=0).nonzero().squeeze(1)  # the same columns in every row
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions).logits
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), targets[:, positions].flatten(), reduction=reduction
    )


@torch.no_grad()
def mean_loss(model, items: list[Tokenized], pad_id: int, batch_tokens: int, device) -> float | None:
    """Mean cross-entropy per reply token (teacher forcing); the model's train/eval mode is kept."""
    if not items:
        return None
    was_training = model.training
    model.eval()
    total, count, virtual_tokens = 0.0, 0, virtual_token_count(model)
    for batch in make_batches(items, batch_tokens, seed=0, epoch=0):
        tensors = {k: v.to(device) for k, v in collate([items[i] for i in batch], pad_id).items()}
        total += reply_token_loss(model, tensors, virtual_tokens, reduction="sum").item()
        count += int((tensors["labels"][:, 1:] != -100).sum())
    model.train(was_training)
    return total / count


def same_run(saved: dict, config: TuneConfig) -> bool:
    """Whether a saved run's config is this one, up to stop_after (a run trained in sittings).
    Keys added to TuneConfig since the run was saved count as their defaults."""
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(TuneConfig)}
    return {**defaults, **saved, "stop_after": None} == asdict(config) | {"stop_after": None}


@dataclass
class TuneResult:
    model: object  # the PEFT model as trained
    tokenizer: object
    metrics: dict


def tune(config: TuneConfig) -> TuneResult:
    """Train, save and describe one adapter."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    run_dir, output_dir = Path(config.run_dir), Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    mixed_precision = config.mixed_precision
    if mixed_precision == "auto":
        mixed_precision = "bf16" if cuda and config.dtype != "float32" else "no"
    accelerator = Accelerator(mixed_precision=mixed_precision if cuda else "no")
    # accelerate fixes its CPU precision once per process; torch.autocast lets runs in one process differ
    cpu_autocast = partial(torch.autocast, "cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16")
    autocast = accelerator.autocast if cuda else cpu_autocast
    set_seed(config.seed)

    # -- data
    all_examples = TASK_EXAMPLES[config.task](Path(config.data_dir), tuple(config.languages))
    examples = [e for e in all_examples if e.split == "train"]
    dev_examples = [e for e in all_examples if e.split == "dev"]
    if config.max_train_examples:
        examples = examples[: config.max_train_examples]
    if not examples:
        raise TuneError(f"no training examples for task {config.task!r} in {config.languages}; check data/ "
                        "(`babelbot data check`)")

    # -- model
    device = str(accelerator.device)
    base, tokenizer = load_base(config, device)
    model_path = resolve_model(config.model)
    prompt_format = format_for(tokenizer)
    items = [tokenize(e, tokenizer, prompt_format, config.max_length) for e in examples]
    dev_items = [tokenize(e, tokenizer, prompt_format, config.max_length) for e in dev_examples[:64]]
    if config.gradient_checkpointing:
        base.gradient_checkpointing_enable()
        base.enable_input_require_grads()
    if config.init_adapter:
        model = adapter_to_continue(base, Path(config.init_adapter), config, model_path)
    else:
        model = get_peft_model(base, peft_config(config, model_path))
    trainable, total = model.get_nb_trainable_parameters()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    warmup, steps = config.warmup_steps, config.max_steps

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    # -- resume
    checkpoint, state_file = run_dir / "checkpoint.pt", run_dir / "state.json"
    state = {"step": 0, "losses": [], "dev_losses": [], "tokens": 0, "seconds": 0.0}
    best_adapter = None  # trainable weights at the lowest dev loss so far, on the CPU (keep_best)
    if state_file.exists() and checkpoint.exists():
        saved = json.loads(state_file.read_text())
        if not same_run(saved.get("config", {}), config):
            raise TuneError(f"{run_dir} holds a run with another config; remove it or set run_dir= to start afresh")
        best_adapter = load_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler)
        state = {"dev_losses": []} | saved["state"]
        log.info("resuming %s at step %d", config.name, state["step"])

    # -- train
    schedule = batch_schedule(items, config)
    pad_id, virtual_tokens = tokenizer.pad_token_id, virtual_token_count(accelerator.unwrap_model(model))
    model.train()
    last_step = min(config.stop_after or config.max_steps, config.max_steps)
    bar = tqdm(total=config.max_steps, initial=state["step"], desc=f"tune {config.name}", unit="step",
               disable=not accelerator.is_local_main_process)
    while state["step"] < last_step:
        started = time.perf_counter()
        batch = collate([items[i] for i in schedule[state["step"]]], pad_id)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with autocast():
            loss = reply_token_loss(model, batch, virtual_tokens)
        if not torch.isfinite(loss):
            raise TuneError(f"loss became {loss.item()} at step {state['step'] + 1}; lower learning_rate "
                            f"(now {config.learning_rate}) or check the data. The last checkpoint is in {checkpoint}.")
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        state["step"] += 1
        state["losses"].append(loss.item())
        state["tokens"] += int(batch["attention_mask"].sum())
        state["seconds"] += time.perf_counter() - started
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{state['tokens'] / state['seconds']:.0f}")
        if config.eval_every and (state["step"] % config.eval_every == 0 or state["step"] == config.max_steps):
            dev_loss = mean_loss(model, dev_items, pad_id, config.batch_tokens, accelerator.device)
            if dev_loss is not None:
                if config.keep_best and dev_loss < min((loss for _, loss in state["dev_losses"]), default=math.inf):
                    best_adapter = {k: v.detach().cpu().clone()
                                    for k, v in get_peft_model_state_dict(accelerator.unwrap_model(model)).items()}
                state["dev_losses"].append([state["step"], dev_loss])
                bar.write(f"{config.name}: step {state['step']} dev loss {dev_loss:.4f}")
        if state["step"] % config.checkpoint_every == 0 or state["step"] == last_step:
            save_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler, best_adapter)
            state_file.write_text(json.dumps({"config": asdict(config), "state": state}) + "\n")
    bar.close()

    # -- save
    best_step = state["step"]
    if best_adapter is not None:  # keep_best: the evaluation with the lowest dev loss, which may be the last step
        best_step = min(state["dev_losses"], key=lambda entry: entry[1])[0]
        set_peft_model_state_dict(accelerator.unwrap_model(model), best_adapter)
    dev_loss = mean_loss(model, dev_items, pad_id, config.batch_tokens, accelerator.device)
    metrics = {
        "name": config.name, "task": config.task, "languages": config.languages, "method": config.method,
        "steps": state["step"], "saved_step": best_step, "dev_losses": state["dev_losses"],
        "train_examples": len(items), "train_tokens": state["tokens"],
        "tokens_per_s": state["tokens"] / state["seconds"] if state["seconds"] else None,
        "final_loss": sum(state["losses"][-10:]) / len(state["losses"][-10:]), "dev_loss": dev_loss,
        "trainable_parameters": trainable, "total_parameters": total, "device": device,
        "quantize": config.quantize,
    }
    if accelerator.is_main_process:
        save_adapter(accelerator.unwrap_model(model), config, metrics, data_fingerprint(examples), model_path, output_dir)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plot_loss(state["losses"], run_dir / "loss.png", f"{config.name}: loss per step", state["dev_losses"])
        shutil.copy(run_dir / "loss.png", output_dir / "loss.png")
    return TuneResult(accelerator.unwrap_model(model), tokenizer, metrics)


def save_checkpoint(path: Path, model, optimizer, scheduler, best_adapter: dict | None) -> None:
    """What a resumed run needs: the trainable weights (not the frozen base) and the best ones
    so far, the optimizer and schedule, and the random states. Written beside and renamed, so a
    crash mid-write leaves the previous checkpoint intact."""
    from peft import get_peft_model_state_dict

    partial = path.with_suffix(".partial")
    torch.save({
        "adapter": get_peft_model_state_dict(model), "best_adapter": best_adapter, "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }, partial)
    partial.replace(path)


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict | None:
    """Restores a run in place; returns the best weights so far (keep_best), if any."""
    from peft import set_peft_model_state_dict

    saved = torch.load(path, weights_only=False)  # our own file: tensors plus RNG states
    set_peft_model_state_dict(model, saved["adapter"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    random.setstate(saved["python_rng"])
    if saved["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    return saved.get("best_adapter")  # absent in checkpoints from before keep_best


def save_adapter(model, config: TuneConfig, metrics: dict, data_hash: str, model_path: str, output_dir: Path) -> None:
    """PEFT's files, our card, and a short human-readable model card."""
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    peft_config_file = output_dir / "adapter_config.json"
    peft_config = json.loads(peft_config_file.read_text(encoding="utf-8"))
    for key in ("base_model_name_or_path", "tokenizer_name_or_path"):
        if peft_config.get(key):
            peft_config[key] = portable_model_name(config.model)
    peft_config_file.write_text(json.dumps(peft_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # No absolute paths of this machine in the card: the data folder is kept relative to the project.
    data_dir = Path(config.data_dir).resolve()
    portable_data = str(data_dir.relative_to(REPO_ROOT)) if data_dir.is_relative_to(REPO_ROOT) else data_dir.name
    AdapterCard(
        name=config.name, task=config.task, languages=tuple(config.languages), method=config.method,
        base_model=config.model, path=output_dir, base_fingerprint=model_fingerprint(model_path),
        extra={"data_fingerprint": data_hash, "training": metrics,
               "config": asdict(config) | {"output_dir": None, "run_dir": None, "data_dir": portable_data},
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    ).save()
    dev = f"{metrics['dev_loss']:.3f}" if metrics["dev_loss"] is not None else "n/a"
    (output_dir / "README.md").write_text(
        f"# {config.name}\n\n"
        f"A {config.method.replace('_', ' ')} adapter for **{config.model}**, task `{config.task}`, "
        f"languages: {', '.join(config.languages)}. Trained by babelbot on the Northwind Store support data "
        f"(`data/`), train split only.\n\n"
        f"| | |\n|---|---|\n| steps | {metrics['steps']} (weights saved from step {metrics['saved_step']}) |\n"
        f"| training tokens | {metrics['train_tokens']:,} |\n"
        f"| tokens/s | {metrics['tokens_per_s']:.0f} on {metrics['device']} |\n"
        f"| trainable parameters | {metrics['trainable_parameters']:,} of {metrics['total_parameters']:,} |\n"
        f"| final train loss | {metrics['final_loss']:.3f} |\n| dev loss | {dev} |\n\n"
        "![loss](loss.png)\n\nLoad it with plain PEFT: `PeftModel.from_pretrained(base_model, this_folder)`.\n",
        encoding="utf-8",
    )


def main(args) -> int:
    from babelbot.config import load_config

    config = load_config(TuneConfig, args.config, args.overrides)
    try:
        result = tune(config)
    except TuneError as error:
        raise ConfigError(str(error)) from None
    print(json.dumps(result.metrics, indent=2))
    return 0
