"""`babelbot encoder train`: contrastive alignment of sentence embeddings across languages,
and the intent classifier the router runs on them.

    parallel text → frozen backbone vectors → linear head trained with symmetric InfoNCE
                  → intent classifier (softmax regression) on the aligned vectors → saved encoder

The loss is the seed's (section 4.1): for a batch of translation pairs (x_i, y_i),
cosine similarities s_ij = cos(x_i, y_j) / τ, and cross-entropy that picks y_i among the
batch for x_i and x_i among the batch for y_i; every other pair is an in-batch negative.
With `hard_negatives` a batch is drawn from few intents, so most negatives say something
close to the positive (another order-status message) and the head must separate content,
not just topic. With `accent_free_copies` every training text with accents also appears
without them ("atención" → "atencion"), paired with its original for the head and labelled
for the classifier, because customers typing in a hurry drop accents in every language.

The backbone stays frozen: its vectors are computed once, and the head trains in seconds.
"""

import hashlib
import json
import logging
import random
import time
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adapters.registry import AdapterCard
from babelbot.encoders import (
    ENCODER_METHOD,
    ENCODER_TASK,
    AlignedEncoder,
    Backbone,
    FirstPass,
    fallback_views,
    load_backbone,
    normalize_rows,
    save_encoder,
)
from babelbot.labels import INTENTS
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.paths import ADAPTERS_DIR, DATA_DIR
from tuning.data import read_jsonl, split_of

log = logging.getLogger(__name__)


@dataclass
class AlignConfig:
    """Defaults chosen on the dev splits (parallel dev ids, dev conversations), never on test."""

    backbone: str = "e5-small+use-v3"  # a key of babelbot.encoders.BACKBONES
    name: str = ""  # default: encoder-<backbone>
    temperature: float = 0.05  # τ of the InfoNCE loss
    batch_size: int = 64  # pairs per step: 63 in-batch negatives for each side
    hard_negatives: bool = True  # batches from few intents (see the module docstring)
    steps: int = 400
    learning_rate: float = 1.0e-3
    # Pulls the head toward the identity so languages it never saw keep the backbone's
    # geometry. Chosen per backbone, with `accent_free_copies`, by intent accuracy on
    # data/language_dev (30 languages with no training data; `babelbot eval transfer` runs
    # the grid). For e5-small+use-v3: 86.9%, 88.4%, 87.5%, 87.8%, 87.3% with weights 1, 10,
    # 100, 1000, 10000, and 86.4% with no head: here the head helps, likely because the parallel
    # pairs teach it to map a message with USE's half (Arabic, say) and its translation
    # without it (Hindi) to the same place. For e5-small alone the head only cost accuracy.
    # (With the language detector that knows romanized Hindi, which gates USE's half, the grid
    # gives 87.2%, 88.7%, 88.1%, 88.1%, 87.6%: the same choice.)
    identity_weight: float = 10.0
    # Accent-free copies of the accented training texts (see the module docstring): 86.4–87.5%
    # on data/language_dev with them against 86.9–88.4% without.
    accent_free_copies: bool = False
    # For e5-small+use-v3: a first intent classifier on USE's vectors alone answers the
    # messages it is sure of, so e5 does not run for them (babelbot.encoders.FirstPass). Its
    # threshold is the lowest of `first_pass_thresholds` that costs no accuracy on the dev
    # turns nor on data/language_dev; none such, no first pass.
    first_pass: bool = True
    first_pass_thresholds: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    classifier_languages: str = "all"  # "all" training languages, or one code such as "en"
    classifier_l2: float = 1.0e-2
    classifier_steps: int = 300
    leave_one_out: bool = True  # also measure leave-one-language-out dev accuracy (10 more heads)
    seed: int = 0
    output_dir: str = ""  # default: adapters/<name>

    def __post_init__(self):
        self.name = self.name or f"encoder-{self.backbone}"
        self.output_dir = self.output_dir or str(ADAPTERS_DIR / self.name)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (a batch needs negatives), got {self.batch_size}")
        if self.classifier_languages != "all" and self.classifier_languages not in TRAINING_LANGUAGES:
            raise ValueError(f"classifier_languages must be 'all' or one of {TRAINING_LANGUAGES}")


# -- data ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParallelGroup:
    """The same text in several languages."""

    id: str
    intent: str | None
    split: str
    texts: dict[str, str]  # language → text


def parallel_groups(root: Path = DATA_DIR) -> list[ParallelGroup]:
    """Customer messages in all 10 languages, and agent texts with their translations."""
    groups = []
    for _, record, problem in read_jsonl(root / "parallel" / "messages.jsonl"):
        if problem is None:
            groups.append(ParallelGroup(record["id"], record["intent"], split_of(record["id"]), dict(record["texts"])))
    for path in sorted((root / "translations").glob("*.jsonl")):
        for _, record, problem in read_jsonl(path):
            if problem is None:
                texts = {record["source_language"]: record["source"], record["target_language"]: record["target"]}
                groups.append(ParallelGroup(record["id"], None, split_of(record["id"]), texts))
    return groups


@dataclass(frozen=True)
class IntentExample:
    text: str
    language: str
    intent: str
    split: str
    source: str  # seed (short messages), conversation (customer turns) or test


def intent_examples(root: Path = DATA_DIR) -> list[IntentExample]:
    """Labelled customer messages in the training languages: the seed set (all train) and
    every customer turn of the conversations (split with its conversation)."""
    examples = []
    for _, record, problem in read_jsonl(root / "intents" / "seed.jsonl"):
        if problem is None:
            examples.append(IntentExample(record["text"], record["language"], record["intent"], "train", "seed"))
    for language in TRAINING_LANGUAGES:
        path = root / "conversations" / f"{language}.jsonl"
        if not path.exists():
            continue
        for _, record, problem in read_jsonl(path):
            if problem is None:
                split = split_of(record["id"])
                examples += [IntentExample(t["text"], language, t["intent"], split, "conversation")
                             for t in record["turns"] if t["role"] == "user"]
    return examples


# Latin letters that carry their mark in the letter itself rather than as a combining one.
_PLAIN_LETTERS = str.maketrans({"ı": "i", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss"})


def accent_free(text: str) -> str:
    """`text` with the accents of Latin letters removed ("dirección" → "direccion", "Türkiye'ye"
    → "Turkiye'ye"); other scripts are left alone, where the marks are part of the spelling."""
    letters = []
    for char in text.translate(_PLAIN_LETTERS):
        if unicodedata.name(char, "").startswith("LATIN"):
            char = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
        letters.append(char)
    return "".join(letters)


def accent_free_pairs(groups: list[ParallelGroup]) -> list[ParallelGroup]:
    """One extra pair per accented text: the text and its accent-free copy."""
    return [ParallelGroup(f"{g.id}/{language}-accent-free", g.intent, g.split, {language: text, "accent-free": plain})
            for g in groups for language, text in g.texts.items() if (plain := accent_free(text)) != text]


def classifier_data(examples: list[IntentExample], config: AlignConfig) -> tuple[list[str], list[str]]:
    """(texts, intents) the intent classifier trains on: the examples, plus with
    `accent_free_copies` an accent-free copy of each accented one."""
    pairs = [(e.text, e.intent) for e in examples]
    if config.accent_free_copies:
        pairs += [(plain, e.intent) for e in examples if (plain := accent_free(e.text)) != e.text]
    return [text for text, _ in pairs], [intent for _, intent in pairs]


def classifier_inputs(vectors: "VectorCache", texts: list[str], intents: list[str], project) -> tuple[np.ndarray, list[str]]:
    """The classifier's training matrix: `project` (backbone vectors → the vectors it
    classifies) of each text, once more for each fallback view of the backbone (the e5-only
    form of `e5-small+use-v3`), with the intents repeated to match."""
    raw = vectors(texts)
    views = [raw] + fallback_views(vectors.backbone, raw)
    return np.concatenate([project(view) for view in views]), intents * len(views)


def read_labelled(path: Path) -> list[IntentExample]:
    """A test file of {"language", "intent", "text"} lines (router_eval, transfer_eval)."""
    return [IntentExample(r["text"], r["language"], r["intent"], "test", "test") for _, r, p in read_jsonl(path) if p is None]


class VectorCache:
    """Backbone vectors by text, computed once per text in batches."""

    def __init__(self, backbone: Backbone, batch_size: int = 64):
        self.backbone, self.batch_size = backbone, batch_size
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        from tqdm.auto import tqdm

        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        starts = range(0, len(missing), self.batch_size)
        for start in tqdm(starts, desc=f"embedding with {self.backbone.name}", unit="batch", disable=len(starts) < 8):
            chunk = missing[start : start + self.batch_size]
            self.vectors.update(zip(chunk, self.backbone.embed(chunk)))
        if not texts:
            return np.zeros((0, self.backbone.dim), np.float32)
        return np.stack([self.vectors[t] for t in texts])


# -- the loss and the head -------------------------------------------------------------------

def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of `a` and row i of `b` are a positive pair, every other
    row of the batch a negative. Cosine similarity over τ, cross-entropy both ways."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    targets = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _pair_batches(groups: list[ParallelGroup], config: AlignConfig, rng: random.Random):
    """Endless batches of (group index, language a, language b), a ≠ b, one pair per group."""
    usable = [i for i, g in enumerate(groups) if len(g.texts) >= 2]
    by_intent = defaultdict(list)
    for i in usable:
        by_intent[groups[i].intent].append(i)
    while True:
        if config.hard_negatives:
            chosen: list[int] = []
            intents = list(by_intent)
            rng.shuffle(intents)
            for intent in intents:  # few intents per batch: negatives on the same topic
                members = by_intent[intent][:]
                rng.shuffle(members)
                chosen += members[: config.batch_size - len(chosen)]
                if len(chosen) >= config.batch_size:
                    break
        else:
            chosen = rng.sample(usable, min(config.batch_size, len(usable)))
        yield [(i, *rng.sample(sorted(groups[i].texts), 2)) for i in chosen]


def train_head(groups: list[ParallelGroup], vectors: VectorCache, config: AlignConfig, progress: bool = True):
    """(head, bias, per-step losses) for a linear map trained with InfoNCE on `groups`."""
    from tqdm.auto import tqdm

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    if config.accent_free_copies:
        groups = groups + accent_free_pairs(groups)
    texts = sorted({t for g in groups for t in g.texts.values()})
    index = {t: i for i, t in enumerate(texts)}
    features = torch.from_numpy(vectors(texts))
    dim = features.shape[1]
    head = torch.nn.Linear(dim, dim)
    with torch.no_grad():
        head.weight.copy_(torch.eye(dim))
        head.bias.zero_()
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=0.0)
    identity = torch.eye(dim)
    losses = []
    batches = _pair_batches(groups, config, rng)
    for _ in tqdm(range(config.steps), desc=f"aligning {config.backbone}", unit="step", disable=not progress):
        batch = next(batches)
        a = features[[index[groups[i].texts[x]] for i, x, _ in batch]]
        b = features[[index[groups[i].texts[y]] for i, _, y in batch]]
        loss = info_nce(head(a), head(b), config.temperature)
        total = loss + config.identity_weight * ((head.weight - identity) ** 2).sum() / dim
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(loss.item())
    return head.weight.detach().T.numpy().copy(), head.bias.detach().numpy().copy(), losses


def train_classifier(vectors: np.ndarray, intents: list[str], l2: float, steps: int, seed: int = 0):
    """Softmax regression over INTENTS on (already normalised) vectors: (weights, bias).
    The same classifier goes on top of every embedding we compare."""
    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(vectors, np.float32))
    y = torch.tensor([INTENTS.index(intent) for intent in intents])
    weights = torch.zeros(x.shape[1], len(INTENTS), requires_grad=True)
    bias = torch.zeros(len(INTENTS), requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        # Scaled logits: unit vectors have small dot products, and a fixed scale lets
        # l2 mean the same thing for every backbone.
        loss = F.cross_entropy(20 * (x @ weights) + bias, y) + l2 * (weights**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return 20 * weights.detach().numpy(), bias.detach().numpy()


def classify(vectors: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> list[str]:
    return [INTENTS[i] for i in np.argmax(vectors @ weights + bias, axis=1)]


def retrieval_matrix(groups: list[ParallelGroup], embed, languages: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Precision@1 for every (query language, candidate language): a message in the query
    language must find its own translation among all candidates of the other language."""
    complete = [g for g in groups if all(lang in g.texts for lang in languages)]
    vectors = {lang: embed([g.texts[lang] for g in complete]) for lang in languages}
    matrix: dict[str, dict[str, float]] = {}
    for query in languages:
        matrix[query] = {}
        for target in languages:
            best = np.argmax(vectors[query] @ vectors[target].T, axis=1)
            matrix[query][target] = float(np.mean(best == np.arange(len(complete))))
    return matrix


def mean_off_diagonal(matrix: dict[str, dict[str, float]]) -> float:
    values = [v for q, row in matrix.items() for t, v in row.items() if q != t]
    return float(np.mean(values)) if values else float("nan")


# -- the command -----------------------------------------------------------------------------

def fit_encoder(config: AlignConfig, backbone: Backbone | None = None, data_root: Path = DATA_DIR,
                progress: bool = True) -> tuple[AlignedEncoder, dict]:
    """Train the head and the classifier; (encoder, figures measured on the dev splits)."""
    backbone = backbone or load_backbone(config.backbone)
    vectors = VectorCache(backbone)
    groups = parallel_groups(data_root)
    train_groups = [g for g in groups if g.split == "train"]
    dev_groups = [g for g in groups if g.split == "dev" and g.intent is not None]
    if not train_groups:
        raise ValueError(f"no parallel training text under {data_root}; see data/README.md")
    start = time.perf_counter()
    head, bias, losses = train_head(train_groups, vectors, config, progress)
    seconds = time.perf_counter() - start
    encoder = AlignedEncoder(config.name, backbone, head, bias)

    examples = intent_examples(data_root)
    train = [e for e in examples if e.split == "train" and config.classifier_languages in ("all", e.language)]
    texts, intents = classifier_data(train, config)
    inputs, labels = classifier_inputs(vectors, texts, intents, encoder.project)
    encoder.intent_weights, encoder.intent_bias = train_classifier(
        inputs, labels, config.classifier_l2, config.classifier_steps, config.seed,
    )
    dev = [e for e in examples if e.split == "dev"]
    dev_predicted = classify(encoder.project(vectors([e.text for e in dev])), encoder.intent_weights, encoder.intent_bias)
    unseen = unseen_language_examples(data_root)
    first_pass_figures = None
    if config.first_pass and hasattr(backbone, "use_half"):
        encoder.first_pass, first_pass_figures = fit_first_pass(
            encoder, vectors, texts, intents, {"dev turns": dev, "language_dev": unseen}, config)
    languages = tuple(TRAINING_LANGUAGES)
    figures = {
        "parallel_groups": len(train_groups),
        "pairs_per_step": config.batch_size,
        "train_seconds": round(seconds, 2),
        "first_loss": losses[0],
        "final_loss": float(np.mean(losses[-20:])),
        "dev_retrieval_p_at_1_backbone": mean_off_diagonal(retrieval_matrix(dev_groups, vectors, languages)),
        "dev_retrieval_p_at_1_aligned": mean_off_diagonal(
            retrieval_matrix(dev_groups, lambda texts: encoder.project(vectors(texts)), languages)
        ),
        "classifier_examples": len(texts),
        "classifier_rows": len(labels),
        "dev_intent_accuracy": float(np.mean([p == e.intent for p, e in zip(dev_predicted, dev)])) if dev else None,
        "losses": losses,
    }
    if first_pass_figures is not None:
        figures["first_pass"] = first_pass_figures
    if unseen:
        figures["language_dev_intent_accuracy"] = unseen_language_accuracy(config, vectors, train_groups, examples, unseen)
    if config.leave_one_out:
        unseen = leave_one_language_out(config, vectors, train_groups, examples)
        figures["dev_unseen_language_accuracy"] = float(np.mean(list(unseen.values())))
        figures["dev_unseen_language_accuracy_per_language"] = unseen
    return encoder, figures


def fit_first_pass(encoder: AlignedEncoder, vectors: VectorCache, texts: list[str], intents: list[str],
                   dev_sets: dict[str, list[IntentExample]], config: AlignConfig) -> tuple[FirstPass | None, dict]:
    """The first-pass classifier on USE's half of the training texts (those USE knows), and
    its threshold: the lowest candidate whose macro accuracy on every dev set is at least the
    encoder's alone. (None, figures) when every candidate costs accuracy."""
    backbone = vectors.backbone
    use = backbone.use_part(vectors(texts))
    known = use.any(axis=1)
    weights, bias = train_classifier(use[known], [intent for intent, k in zip(intents, known) if k],
                                     config.classifier_l2, config.classifier_steps, config.seed)
    grid = {}
    for name, rows in dev_sets.items():
        raw = vectors([e.text for e in rows])
        full = encoder.intent_probabilities(encoder.project(raw))
        use_rows = backbone.use_part(raw)

        def macro(probabilities, rows=rows) -> float:
            predicted = [INTENTS[i] for i in probabilities.argmax(axis=1)]
            return float(np.mean(list(per_language_accuracy(predicted, rows).values())))

        grid[name] = {"encoder alone": {"accuracy": macro(full), "answered": 0.0}}
        for threshold in config.first_pass_thresholds:
            probabilities, answered = FirstPass(weights, bias, threshold).decide(use_rows, full)
            grid[name][f"{threshold:g}"] = {"accuracy": macro(probabilities), "answered": float(answered.mean())}
    costless = [t for t in config.first_pass_thresholds
                if all(g[f"{t:g}"]["accuracy"] >= g["encoder alone"]["accuracy"] for g in grid.values())]
    threshold = min(costless, default=None)
    figures = {"threshold": threshold, "training_rows": int(known.sum()), "dev": grid}
    return (FirstPass(weights, bias, threshold) if threshold is not None else None), figures


def leave_one_language_out(config: AlignConfig, vectors: VectorCache, groups: list[ParallelGroup],
                           examples: list[IntentExample]) -> dict[str, float]:
    """Dev accuracy on languages the encoder never saw: for each training language, the head
    and the classifier are trained without it, then scored on its dev turns and seed messages."""
    import dataclasses

    accuracy = {}
    for held in TRAINING_LANGUAGES:
        without = [dataclasses.replace(g, texts={k: t for k, t in g.texts.items() if k != held}) for g in groups]
        head, bias, _ = train_head(without, vectors, config, progress=False)

        def project(raw, head=head, bias=bias):
            return normalize_rows(raw @ head + bias)

        texts, intents = classifier_data([e for e in examples if e.split == "train" and e.language != held], config)
        weights, bias_ = train_classifier(*classifier_inputs(vectors, texts, intents, project),
                                          config.classifier_l2, config.classifier_steps, config.seed)
        dev = [e for e in examples if e.language == held and (e.split == "dev" or e.source == "seed")]
        predicted = classify(project(vectors([e.text for e in dev])), weights, bias_)
        accuracy[held] = float(np.mean([p == e.intent for p, e in zip(predicted, dev)]))
    return accuracy


def per_language_accuracy(predicted: list[str], examples: list[IntentExample]) -> dict[str, float]:
    """language → share of `examples` whose intent `predicted` got right."""
    hits = defaultdict(list)
    for guess, example in zip(predicted, examples):
        hits[example.language].append(guess == example.intent)
    return {language: float(np.mean(values)) for language, values in hits.items()}


def data_fingerprint(root: Path = DATA_DIR) -> str:
    digest = hashlib.sha256()
    for group in parallel_groups(root):
        digest.update(json.dumps(group.texts, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    for example in intent_examples(root):
        digest.update(f"{example.language}\t{example.intent}\t{example.text}\n".encode("utf-8"))
    return digest.hexdigest()[:16]


def write_model_card(folder: Path, config: AlignConfig, figures: dict) -> None:
    (folder / "README.md").write_text(
        f"# {config.name}\n\n"
        f"Sentence encoder for the router: the frozen `{config.backbone}` backbone plus a linear head\n"
        f"trained with symmetric InfoNCE (τ = {config.temperature}, {config.batch_size} pairs a batch, "
        f"hard negatives: {config.hard_negatives}) on {figures['parallel_groups']} groups of parallel text,\n"
        f"and a softmax intent classifier on the aligned vectors ({figures['classifier_examples']} messages, "
        f"languages: {config.classifier_languages}"
        + (f"; {figures['classifier_rows']} rows with the backbone's e5-only form of each"
           if figures.get("classifier_rows", 0) > figures["classifier_examples"] else "")
        + ").\n\n"
        f"- dev retrieval precision@1 across language pairs: {figures['dev_retrieval_p_at_1_backbone']:.1%} before, "
        f"{figures['dev_retrieval_p_at_1_aligned']:.1%} after alignment\n"
        f"- dev intent accuracy (10 training languages): {figures['dev_intent_accuracy']:.1%}\n"
        + (f"- intent accuracy on data/language_dev (30 languages with no training data): "
           f"{figures['language_dev_intent_accuracy']:.1%}\n" if "language_dev_intent_accuracy" in figures else "")
        + (f"- dev intent accuracy on a language left out of the head and the classifier, averaged over the 10: "
           f"{figures['dev_unseen_language_accuracy']:.1%}\n" if "dev_unseen_language_accuracy" in figures else "")
        + first_pass_line(figures.get("first_pass"))
        + "\n"
        f"Rebuild: `babelbot encoder train --config tuning/configs/{config.name}.yaml`. Full evaluation: "
        f"`babelbot eval transfer`, report: `babelbot report transfer`.\n",
        encoding="utf-8",
    )


def first_pass_line(first_pass: dict | None) -> str:
    if first_pass is None:
        return ""
    if first_pass["threshold"] is None:
        return "- no first pass on USE's vectors: every threshold tried cost dev accuracy\n"
    chosen = f"{first_pass['threshold']:g}"
    shares = ", ".join(f"{grid[chosen]['answered']:.0%} of {name} ({grid[chosen]['accuracy']:.1%} against "
                       f"{grid['encoder alone']['accuracy']:.1%} without it)" for name, grid in first_pass["dev"].items())
    return f"- first pass on USE's vectors alone, at confidence ≥ {chosen}: answers {shares}\n"


def main(args) -> int:
    from babelbot.config import load_config
    from tuning.train import plot_loss

    config = load_config(AlignConfig, args.config, args.overrides)
    encoder, figures = fit_encoder(config)
    folder = Path(config.output_dir)
    losses = figures.pop("losses")
    fields = save_encoder(folder, encoder)
    AdapterCard(name=encoder.name, task=ENCODER_TASK, languages=TRAINING_LANGUAGES, method=ENCODER_METHOD,
                base_model=config.backbone, path=folder,
                extra=fields | {"data_fingerprint": data_fingerprint(), "training": figures,
                                "config": asdict(config) | {"output_dir": None}}).save()
    plot_loss(losses, folder / "loss.png", f"{config.name}: InfoNCE loss")
    write_model_card(folder, config, figures)
    print(json.dumps(figures, indent=2))
    print(f"saved {folder}")
    return 0


def unseen_language_examples(root: Path = DATA_DIR) -> list[IntentExample]:
    """data/language_dev: informal messages in 30 languages we have no data for, the dev set
    for transfer to unseen languages; a text that is also a test message is left out."""
    test_texts = {e.text for name in ("router_eval", "transfer_eval") for e in read_labelled(root / name / "messages.jsonl")}
    return [IntentExample(r["text"], r["language"], r["intent"], "dev", "language_dev")
            for _, r, problem in read_jsonl(root / "language_dev" / "messages.jsonl")
            if problem is None and r["text"] not in test_texts]


def unseen_language_accuracy(config: AlignConfig, vectors: VectorCache, groups: list[ParallelGroup],
                             examples: list[IntentExample], unseen: list[IntentExample], aligned: bool = True) -> float:
    """Intent accuracy on `unseen` (macro over its languages) of the head trained on `groups`
    (the backbone as it is when not `aligned`) and the classifier trained on the train-split
    `examples` of the training languages."""
    if aligned:
        head, bias, _ = train_head(groups, vectors, config, progress=False)

        def project(raw):
            return normalize_rows(raw @ head + bias)
    else:
        def project(raw):
            return raw

    texts, intents = classifier_data([e for e in examples if e.split == "train"], config)
    weights, bias_ = train_classifier(*classifier_inputs(vectors, texts, intents, project),
                                      config.classifier_l2, config.classifier_steps, config.seed)
    predicted = classify(project(vectors([e.text for e in unseen])), weights, bias_)
    return float(np.mean(list(per_language_accuracy(predicted, unseen).values())))
