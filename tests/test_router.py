import json
from pathlib import Path

import pytest

from adapters.registry import choose_adapter, load_registry
from babelbot.labels import INTENTS
from babelbot.language_id import LanguageDetector, evidence
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.naive_bayes import char_ngrams
from bot.build import build_router
from bot.config import BotConfig
from bot.intents import NaiveBayesIntents, read_examples
from evals.router import DEFAULT_DATA, evaluate, markdown_table


@pytest.fixture(scope="module")
def router():
    return build_router(BotConfig())


@pytest.fixture(scope="module")
def eval_rows():
    return [json.loads(line) for line in DEFAULT_DATA.read_text(encoding="utf-8").splitlines()]


def test_eval_set_covers_every_language_and_intent(eval_rows):
    assert {row["language"] for row in eval_rows} >= set(TRAINING_LANGUAGES)
    assert {row["intent"] for row in eval_rows} == set(INTENTS)


def test_router_accuracy_on_held_out_messages(router, eval_rows):
    metrics = evaluate(router, eval_rows, rounds=1)
    assert set(metrics["first_pass"]) == {"rounds", "with first pass", "without"}  # timed, not asserted
    assert "with the encoder's first pass" in markdown_table(metrics)
    assert metrics["training_languages"]["language_accuracy"] >= 0.97
    assert metrics["other_languages"]["language_accuracy"] >= 0.8
    assert metrics["training_languages"]["intent_accuracy"] >= 0.9
    for language in TRAINING_LANGUAGES:
        assert metrics["per_language"][language]["language_accuracy"] >= 0.9, language
        assert metrics["per_language"][language]["intent_accuracy"] >= 0.8, language


def test_every_intent_label_is_recognised_in_every_training_language(router, eval_rows):
    hits = {(r["language"], r["intent"]) for r in eval_rows if router.route(r["text"]).intent == r["intent"]}
    missing = [(lang, intent) for lang in TRAINING_LANGUAGES for intent in INTENTS if (lang, intent) not in hits]
    assert len(missing) <= 3, missing


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("dove posso restituire le scarpe che ho comprato?", "it"),
        ("siparişimi iptal etmek istiyorum lütfen", "tr"),
        ("주문한 물건이 아직 안 왔어요", "ko"),
        ("wanneer wordt mijn bestelling geleverd?", "nl"),
    ],
)
def test_languages_without_training_data_are_still_recognised(text, language):
    assert LanguageDetector().detect(text) == language


@pytest.mark.parametrize("text", ["ok", "#NW-12345", "👍👍", "NW-48213?", "thx", "  "])
def test_too_short_to_tell_keeps_the_conversation_language(text):
    assert LanguageDetector().detect(text, fallback="de") == "de"


def test_the_conversation_language_breaks_ties_but_a_customer_can_switch():
    detector = LanguageDetector()
    assert detector.detect("super", fallback="fr") == "fr"
    assert detector.detect("natural") == "es" and detector.detect("natural", fallback="en") == "en"
    assert detector.detect("¿dónde está mi pedido? lo compré hace una semana", fallback="fr") == "es"
    assert detector.detect("non, c'est bon", fallback="fr") == "fr"


@pytest.mark.parametrize(("text", "language"), [("slt", "fr"), ("blz obg", "pt")])
def test_a_short_message_leans_to_the_languages_we_serve(text, language):
    # Without the short-message weight lingua's near-flat guesses win: Afrikaans, Czech.
    assert LanguageDetector(short_letters=0).detect(text) != language
    assert LanguageDetector().detect(text) == language


@pytest.mark.parametrize("text", ["payment fail ho raha hai baar baar", "account me login nahi ho pa raha"])
def test_romanized_hindi_is_hindi(text):
    # lingua knows Hindi only in Devanagari; the domain model has learnt data/romanized.
    assert LanguageDetector().detect(text) == "hi"


def test_english_in_latin_letters_stays_english():
    # Hindi takes English's lingua score in Latin script; the domain model must still tell them apart.
    assert LanguageDetector().detect("where is my order, it has been a week") == "en"


def test_the_support_domain_model_knows_how_our_customers_write():
    # lingua alone reads "merci !" as Spanish; our French customers write it all the time.
    assert LanguageDetector(domain_weight=0).detect("merci !") != "fr"
    assert LanguageDetector().detect("merci !") == "fr"
    posterior = LanguageDetector().domain_posterior("wo ist mein paket")
    assert max(posterior, key=posterior.get) == "de" and sum(posterior.values()) == pytest.approx(1.0)


def test_product_names_do_not_decide_the_language():
    assert evidence("чехол magsafe подходит к iphone 13 mini?").split() == ["чехол", "подходит", "к", "13", "?"]
    assert LanguageDetector().detect("用paypal付款一直显示错误") == "zh"
    assert LanguageDetector().detect("чехол magsafe подходит к iphone 13 mini?") == "ru"


def test_route_first_message_falls_back_to_default_language(router):
    route = router.route("NW-12345")
    english = choose_adapter(router.adapters, "en", "reply")
    assert route.language == "en" and route.intent in INTENTS and route.adapter == (english.name if english else None)
    shipped = choose_adapter(router.adapters, "es", "reply")
    assert router.route("", conversation_language="es").as_dict() == {
        "language": "es", "intent": "out_of_scope", "adapter": shipped.name if shipped else None, "topics": ["contact_hours"],
        "facts": [],
    }


def test_batch_routing_gives_the_same_routes_as_one_at_a_time(router, eval_rows):
    texts = [row["text"] for row in eval_rows[::15]] + ["", "ok"]
    batched, single = router.route_many(texts), [router.route(text) for text in texts]
    assert [r.as_dict() for r in batched] == [r.as_dict() for r in single]
    # A batch pads messages to one length, which moves the last float digits only.
    assert [r.intent_confidence for r in batched] == pytest.approx([r.intent_confidence for r in single], abs=1e-3)


def test_naive_bayes_fits_and_predicts():
    model = NaiveBayesIntents.fit([("where is my parcel", "order_status"), ("cancel my order", "cancel_order")])
    guess = model.predict("where is the parcel")
    assert guess.intent == "order_status" and 0.5 < guess.confidence <= 1.0
    assert char_ngrams("NW-123")[" nw "] == 1  # digits normalised, words padded
    assert len(read_examples()) >= len(INTENTS) * len(TRAINING_LANGUAGES) * 10


def _adapter(root: Path, name: str, task: str, languages: list[str], method="lora", base="gemma-3-270m"):
    folder = root / name
    folder.mkdir(parents=True)
    card = {"format_version": 1, "name": name, "task": task, "languages": languages, "method": method, "base_model": base}
    (folder / "card.json").write_text(json.dumps(card))
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def test_adapter_fallback_order(tmp_path, caplog):
    _adapter(tmp_path, "reply-es-lora", "reply", ["es"])
    _adapter(tmp_path, "reply-es-pt", "reply", ["es"], method="prompt_tuning")
    _adapter(tmp_path, "reply-ru-lora", "reply", ["ru"])
    _adapter(tmp_path, "reply-multi", "reply", list(TRAINING_LANGUAGES))
    _adapter(tmp_path, "summarize-multi", "summarize", list(TRAINING_LANGUAGES))
    _adapter(tmp_path, "reply-fr-other-base", "reply", ["fr"], base="qwen2.5-0.5b")
    broken = _adapter(tmp_path, "reply-de-broken", "reply", ["de"])
    (broken / "adapter_model.safetensors").unlink()
    registry = load_registry(tmp_path, base_model="gemma-3-270m")
    assert "reply-de-broken" not in registry and "reply-fr-other-base" not in registry
    assert "adapter_model.safetensors is missing" in caplog.text and "trained for base model" in caplog.text

    def pick(language, task="reply"):
        card = choose_adapter(registry, language, task)
        return card.name if card else None

    assert pick("es") == "reply-es-lora"  # own language, LoRA before prompt tuning
    assert pick("it") == "reply-es-lora"  # nearest training language
    assert pick("uk") == "reply-ru-lora"
    assert pick("fr") == "reply-multi"  # multilingual
    assert pick("ko") == "reply-multi"
    assert pick("ko", "summarize") == "summarize-multi"
    assert pick("es", "translate") is None  # base model
    assert choose_adapter({}, "es", "reply") is None


def test_language_weight_grid_scores_every_setting_on_the_given_sets():
    from evals.language_weights import CONVERSATION_WEIGHTS, DOMAIN_WEIGHTS, SERVED_WEIGHTS, SHORT_LETTERS, grid

    sets = {"first": [("bonjour, je voudrais retourner mes chaussures", "fr", None)],
            "in a conversation": [("merci !", "fr", "fr"), ("ok", "de", "de")],
            "short": [("slt", "fr", None)]}
    results, short = grid(sets)
    assert len(results) == len(SERVED_WEIGHTS) * len(DOMAIN_WEIGHTS) * len(CONVERSATION_WEIGHTS)
    assert all(r["first"] == 1.0 for r in results + short)
    assert short[0]["short_letters"] == 0 and short[0]["short"] == 0.0  # lingua reads "slt" as Afrikaans
    assert {r["short_letters"] for r in short if r["short"] == 1.0} == set(SHORT_LETTERS)
    by_setting = {(r["served_weight"], r["domain_weight"], r["conversation_weight"]): r for r in results}
    assert by_setting[(4, 0, 1)]["in a conversation"] == 0.5  # lingua reads "merci !" as Spanish; "ok" keeps German
    assert by_setting[(4, 0, 2)]["in a conversation"] == 1.0  # the conversation's French breaks the tie
    assert by_setting[(1, 0.5, 1)]["in a conversation"] == 1.0  # our customers' French needs no tie-break
    # The short-weight grid's first row is the chosen weights with no short weight.
    assert {k: v for k, v in by_setting[(1, 0.5, 3)].items() if not k.endswith("weight")} == \
        {k: v for k, v in short[0].items() if not k.startswith("short_")}
