"""`babelbot eval language-weights`: how the language detector's three weights were chosen.

On development data only (never data/router_eval or data/transfer_eval, and nothing the
support-domain language model learnt from), for each (served_weight, domain_weight,
conversation_weight):

    first messages       the seed messages in the 10 served languages, no conversation yet
    in a conversation    dev-split customer turns whose conversation is already in their language
    other languages      data/language_dev: 30 languages we do not serve, no conversation yet
    switching            seed messages inside a conversation in another served language

lingua's confidences and the domain model's posterior are computed once per message; each
setting only reweights them. The rule: the best first-message accuracy among the settings
that recognise other languages at least as well as the old flat served weight of 4 did (81.9%),
ties to the better other-language accuracy; then the conversation weight with the best
in-conversation accuracy, ties to the better switching accuracy.

A second grid, with those three weights fixed, chooses the extra served weight for short
messages (fewer than `short_letters` informative letters, where lingua's confidences are
nearly flat): the best first-message accuracy that recognises other languages at least as
well as no short weight does, ties to the better in-conversation accuracy, then the milder setting.
"""

import itertools
import json
import random
from pathlib import Path

from babelbot.language_id import LanguageDetector
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.paths import DATA_DIR

SERVED_WEIGHTS = (1, 2, 4)
DOMAIN_WEIGHTS = (0, 0.25, 0.5, 1)
CONVERSATION_WEIGHTS = (1, 2, 3)
SHORT_LETTERS = (4, 6, 8, 10, 12, 16)
SHORT_SERVED_WEIGHTS = (2, 4, 8, 16)


def dev_sets(root: Path = DATA_DIR, per_set: int = 800, seed: int = 0) -> dict[str, list[tuple[str, str, str | None]]]:
    """name → (text, language, conversation language) from the seed messages, the dev split and language_dev."""
    from tuning.align import intent_examples, unseen_language_examples

    examples = intent_examples(root)
    random.Random(seed).shuffle(examples)
    seeds = [(e.text, e.language) for e in examples if e.source == "seed"][:per_set]
    turns = [(e.text, e.language) for e in examples if e.source == "conversation" and e.split == "dev"][:per_set]
    other = [(e.text, e.language) for e in unseen_language_examples(root)]  # language_dev minus test texts

    def elsewhere(i: int, language: str) -> str:
        choices = [lang for lang in TRAINING_LANGUAGES if lang != language]
        return choices[i % len(choices)]

    return {
        "first messages": [(text, lang, None) for text, lang in seeds],
        "in a conversation": [(text, lang, lang) for text, lang in turns],
        "other languages": [(text, lang, None) for text, lang in other],
        "switching": [(text, lang, elsewhere(i, lang)) for i, (text, lang) in enumerate(seeds)],
    }


def grid(sets: dict[str, list[tuple[str, str, str | None]]]) -> tuple[list[dict], list[dict]]:
    """(rows of the three-weight grid without a short weight, rows of the short-weight grid
    at the chosen three weights)."""
    measure = LanguageDetector()
    texts = {text for rows in sets.values() for text, _, _ in rows}
    confidences = {text: measure.confidences(text) for text in texts}
    domain = {text: measure.domain_posterior(text) for text in texts}

    def accuracy(detector: LanguageDetector) -> dict[str, float]:
        # Too short to tell (or nothing scores): the conversation's language, as detect() does.
        return {name: sum((detector.choose(confidences[text], context, domain[text], detector.is_short(text))
                           or context) == language for text, language, context in rows) / len(rows)
                for name, rows in sets.items()}

    weights = []
    for served, domain_weight, conversation in itertools.product(SERVED_WEIGHTS, DOMAIN_WEIGHTS, CONVERSATION_WEIGHTS):
        detector = LanguageDetector(served_weight=served, domain_weight=domain_weight, conversation_weight=conversation,
                                    short_letters=0, domain=measure.domain)
        weights.append({"served_weight": served, "domain_weight": domain_weight, "conversation_weight": conversation}
                       | accuracy(detector))
    short = []
    for letters, weight in [(0, 1)] + list(itertools.product(SHORT_LETTERS, SHORT_SERVED_WEIGHTS)):
        detector = LanguageDetector(short_letters=letters, short_served_weight=weight, domain=measure.domain)
        short.append({"short_letters": letters, "short_served_weight": weight} | accuracy(detector))
    return weights, short


def markdown_grid(rows: list[dict], keys: tuple[str, ...], names: list[str]) -> list[str]:
    """One table row per setting; the detector's defaults marked as chosen."""
    default = LanguageDetector()
    lines = ["| " + " | ".join(key.replace("_", " ") for key in keys) + " | " + " | ".join(names) + " |",
             "|" + "---:|" * (len(keys) + len(names))]
    for row in rows:
        chosen = all(row[key] == getattr(default, key) for key in keys)
        settings = [str(row[key]) for key in keys]
        settings[-1] += " **(chosen)**" if chosen else ""
        lines.append("| " + " | ".join(settings) + " | " + " | ".join(f"{row[name]:.1%}" for name in names) + " |")
    return lines


def main(args) -> int:
    sets = dev_sets()
    weights, short = grid(sets)
    names = list(sets)
    lines = markdown_grid(weights, ("served_weight", "domain_weight", "conversation_weight"), names)
    lines += ["", "At the chosen weights above, an extra served weight for short messages (0 letters: none):", ""]
    lines += markdown_grid(short, ("short_letters", "short_served_weight"), names)
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {name: len(rows) for name, rows in sets.items()}
    (out / "language_weights.json").write_text(json.dumps({"sizes": sizes, "results": weights, "short_messages": short},
                                                          indent=2) + "\n", encoding="utf-8")
    (out / "language_weights.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {out / 'language_weights.json'} and {out / 'language_weights.md'}")
    return 0
