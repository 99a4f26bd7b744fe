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
"""

import itertools
import json
import random
from pathlib import Path

from babelbot.detect import LanguageDetector
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.paths import DATA_DIR

SERVED_WEIGHTS = (1, 2, 4)
DOMAIN_WEIGHTS = (0, 0.25, 0.5, 1)
CONVERSATION_WEIGHTS = (1, 2, 3)


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


def grid(sets: dict[str, list[tuple[str, str, str | None]]]) -> list[dict]:
    measure = LanguageDetector()
    texts = {text for rows in sets.values() for text, _, _ in rows}
    confidences = {text: measure.confidences(text) for text in texts}
    domain = {text: measure.domain_posterior(text) for text in texts}
    results = []
    for served, domain_weight, conversation in itertools.product(SERVED_WEIGHTS, DOMAIN_WEIGHTS, CONVERSATION_WEIGHTS):
        detector = LanguageDetector(served_weight=served, domain_weight=domain_weight,
                                    conversation_weight=conversation, domain=measure.domain)
        row = {"served_weight": served, "domain_weight": domain_weight, "conversation_weight": conversation}
        for name, rows in sets.items():
            # Too short to tell (or nothing scores): the conversation's language, as detect() does.
            right = sum((detector.choose(confidences[text], context, domain[text]) or context) == language
                        for text, language, context in rows)
            row[name] = right / len(rows)
        results.append(row)
    return results


def main(args) -> int:
    sets = dev_sets()
    results = grid(sets)
    names = list(sets)
    lines = ["| served weight | domain weight | conversation weight | " + " | ".join(names) + " |",
             "|---:|---:|---:|" + "---:|" * len(names)]
    default = LanguageDetector()
    keys = ("served_weight", "domain_weight", "conversation_weight")
    for r in results:
        chosen = tuple(r[key] for key in keys) == tuple(getattr(default, key) for key in keys)
        mark = " **(chosen)**" if chosen else ""
        lines.append(f"| {r['served_weight']} | {r['domain_weight']} | {r['conversation_weight']}{mark} | "
                     + " | ".join(f"{r[name]:.1%}" for name in names) + " |")
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "language_weights.json").write_text(json.dumps({"sizes": {k: len(v) for k, v in sets.items()},
                                                           "results": results}, indent=2) + "\n", encoding="utf-8")
    (out / "language_weights.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {out / 'language_weights.json'} and {out / 'language_weights.md'}")
    return 0
