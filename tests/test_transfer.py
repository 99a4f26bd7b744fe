"""Cross-lingual transfer: the InfoNCE loss, alignment on a tiny model, the shipped encoder
in the router (unseen languages, knowledge retrieval), and the eval → report path."""

import json
import logging
import math
import random
import shutil

import numpy as np
import pytest
import torch

from adapters.registry import load_registry, open_encoder
from babelbot.config import load_config
from babelbot.encoders import BaseModelBackbone, EncoderError, load_backbone, normalize_rows
from babelbot.knowledge_index import FactIndex
from babelbot.labels import INTENTS
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.paths import ADAPTERS_DIR, DATA_DIR
from bot.build import build_router
from bot.config import DEFAULT_ENCODER, BotConfig
from bot.intents import NaiveBayesIntents, default_intent_detector
from prompts.knowledge import knowledge_base
from tuning.align import (
    AlignConfig,
    IntentExample,
    ParallelGroup,
    VectorCache,
    accent_free,
    accent_free_pairs,
    classifier_data,
    classifier_inputs,
    info_nce,
    mean_off_diagonal,
    read_labelled,
    retrieval_matrix,
    train_head,
    unseen_language_examples,
)


def test_accent_free_copies_drop_the_accents_of_latin_letters_only():
    assert accent_free("¿Dónde está mi pedido?") == "¿Donde esta mi pedido?"
    assert accent_free("Türkiye'ye kargo ücreti ne kadar, sıfır mı") == "Turkiye'ye kargo ucreti ne kadar, sifir mi"
    assert accent_free("Tôi muốn đổi size") == "Toi muon doi size"
    for spelled_with_marks in ("ऑर्डर कैंसल करना है", "ガイドをください", "ما عدت ابغى"):
        assert accent_free(spelled_with_marks) == spelled_with_marks
    examples = [IntentExample("cancelación", "es", "cancel_order", "train", "seed"),
                IntentExample("cancel it", "en", "cancel_order", "train", "seed")]
    assert classifier_data(examples, AlignConfig(accent_free_copies=True)) == (
        ["cancelación", "cancel it", "cancelacion"], ["cancel_order"] * 3)
    assert classifier_data(examples, AlignConfig(accent_free_copies=False))[0] == ["cancelación", "cancel it"]
    group = ParallelGroup("p1", "greeting", "train", {"en": "hello", "fr": "déjà là ?"})
    assert [g.texts for g in accent_free_pairs([group])] == [{"fr": "déjà là ?", "accent-free": "deja la ?"}]


def test_info_nce_matches_a_hand_computed_value():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [0.6, 0.8]])  # not unit length: the loss uses cosine similarity
    # cosines a·b̂ = [[1, 0.6], [0, 0.8]], over τ = 0.5: [[2, 1.2], [0, 1.6]].
    # a → b rows: -log softmax picks the diagonal; b → a uses the columns.
    a_to_b = (math.log(1 + math.exp(1.2 - 2)) + math.log(1 + math.exp(0 - 1.6))) / 2
    b_to_a = (math.log(1 + math.exp(0 - 2)) + math.log(1 + math.exp(1.2 - 1.6))) / 2
    assert info_nce(a, b, temperature=0.5).item() == pytest.approx((a_to_b + b_to_a) / 2, rel=1e-6)


def test_info_nce_is_low_for_aligned_pairs_and_symmetric():
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    assert info_nce(x, x, 0.05).item() < 0.01 < info_nce(x, y, 0.05).item()
    assert info_nce(x, y, 0.1).item() == pytest.approx(info_nce(y, x, 0.1).item(), rel=1e-6)


def test_alignment_on_a_tiny_model_raises_retrieval_on_held_out_pairs(tiny_model):
    """Language "bb" writes every word of "aa" differently (reversed, upper case): the raw
    hidden states of the two sides are unrelated, a trained head maps one onto the other,
    and it generalises to sentences it never saw."""
    model, tokenizer = tiny_model
    tokenizer.padding_side = "right"
    backbone = BaseModelBackbone(model, tokenizer, layer=1)
    rng = random.Random(0)
    words = ["order", "parcel", "refund", "late", "card", "password", "return", "shipping", "address", "cancel",
             "broken", "agent", "hello", "thanks", "size", "colour", "invoice", "paypal", "warranty", "delivery"]
    groups = []
    for i in range(200):
        sentence = [rng.choice(words) for _ in range(rng.randint(3, 6))]
        texts = {"aa": " ".join(sentence), "bb": " ".join(w[::-1].upper() + "x" for w in sentence)}
        groups.append(ParallelGroup(f"g{i}", None, "train" if i < 160 else "test", texts))
    vectors = VectorCache(backbone)
    held_out = [g for g in groups if g.split == "test"]
    before = mean_off_diagonal(retrieval_matrix(held_out, vectors, ("aa", "bb")))
    config = AlignConfig(backbone="base-model", batch_size=32, steps=400, hard_negatives=False, identity_weight=0.0,
                         learning_rate=1e-2)
    head, bias, losses = train_head([g for g in groups if g.split == "train"], vectors, config, progress=False)

    def aligned(texts):
        return normalize_rows(vectors(texts) @ head + bias)

    after = mean_off_diagonal(retrieval_matrix(held_out, aligned, ("aa", "bb")))
    assert np.mean(losses[-10:]) < losses[0] / 5
    assert before < 0.2 and after > 0.5, (before, after)


def test_the_e5_use_backbone_keeps_use_only_for_languages_use_knows():
    backbone = load_backbone("e5-small+use-v3")
    texts = ["Where is my order? It has been a week.", "मेरा ऑर्डर अभी तक नहीं आया, कहाँ है?",
             "Đơn hàng của tôi đang ở đâu vậy?", "Siparişim nerede, bir haftadır bekliyorum", "ok"]
    vectors = backbone.embed(texts)
    assert vectors.shape == (5, 384 + 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    use_half = np.abs(vectors[:, 384:]).sum(axis=1) > 0
    # English and Turkish: USE was trained on them. Hindi and Vietnamese: it was not. "ok": too short to tell.
    assert use_half.tolist() == [True, False, False, True, True]
    # A language USE does not know gets exactly e5's vector.
    np.testing.assert_allclose(vectors[1, :384], load_backbone("e5-small").embed(texts[1:2])[0], atol=1e-6)

    (e5_only,) = backbone.fallback_views(vectors)
    assert not e5_only[:, 384:].any()
    np.testing.assert_allclose(e5_only[:, :384], load_backbone("e5-small").embed(texts), atol=1e-6)

    # The classifier learns both forms of every training message; a single-model backbone gives one.
    inputs, labels = classifier_inputs(VectorCache(backbone), texts[:2], ["order_status"] * 2, lambda raw: raw)
    assert inputs.shape == (4, 896) and labels == ["order_status"] * 4
    inputs, labels = classifier_inputs(VectorCache(load_backbone("use-v3")), texts[:2], ["order_status"] * 2, lambda raw: raw)
    assert inputs.shape == (2, 512) and len(labels) == 2


@pytest.fixture(scope="module")
def shipped_encoder():
    return open_encoder(DEFAULT_ENCODER)


def test_shipped_encoder_routes_languages_without_training_data(shipped_encoder):
    """Held-out messages in it/id/tr/ko/vi, which no part of the encoder or classifier saw."""
    rows = read_labelled(DATA_DIR / "transfer_eval" / "messages.jsonl")
    assert {row.language for row in rows} == {"it", "id", "tr", "ko", "vi"}
    probabilities = shipped_encoder.intent_probabilities(shipped_encoder.embed([row.text for row in rows]))
    predicted = [INTENTS[i] for i in np.argmax(probabilities, axis=1)]
    for language in ("it", "id", "tr", "ko", "vi"):
        hits = [guess == row.intent for guess, row in zip(predicted, rows) if row.language == language]
        assert np.mean(hits) >= 0.7, language  # chance is 1/13


def test_the_first_pass_answers_sure_messages_without_e5(shipped_encoder, monkeypatch):
    assert shipped_encoder.first_pass is not None and 0 < shipped_encoder.first_pass.threshold < 1
    e5 = shipped_encoder.backbone.e5
    e5_texts, embed = [], e5.embed
    monkeypatch.setattr(e5, "embed", lambda texts: e5_texts.extend(texts) or embed(texts))  # counts, then the real e5
    texts = ["Where is my order? It still hasn't arrived", "Tôi quên mật khẩu, không đăng nhập được",
             "मेरा ऑर्डर कहाँ है? दस दिन हो गए"]
    readings = shipped_encoder.read(texts)
    # English: USE knows it and is sure. Vietnamese and Hindi: USE was not trained on them.
    assert [r.space for r in readings] == ["use", "aligned", "aligned"]
    assert INTENTS[int(np.argmax(readings[0].probabilities))] == "order_status"
    assert e5_texts == texts[1:]
    # What the first pass leaves gets exactly what the encoder alone gives
    alone = shipped_encoder.intent_probabilities(shipped_encoder.embed(texts[1:]))
    np.testing.assert_allclose([r.probabilities for r in readings[1:]], alone, atol=1e-6)


def test_the_first_pass_threshold_is_the_lowest_that_costs_no_dev_accuracy(shipped_encoder):
    """Fitted as `babelbot eval transfer` fits it (on the seed messages here, for speed); its
    test figures are what the router's own `read` gives."""
    import dataclasses

    from evals.transfer import first_pass_accuracy, test_examples
    from tuning.align import intent_examples

    examples = intent_examples()
    train = [e for e in examples if e.source == "seed"]
    dev_sets = {"dev turns": [e for e in examples if e.split == "dev"][::4], "language_dev": unseen_language_examples()[::4]}
    tests = test_examples()[::6]
    encoder, config = dataclasses.replace(shipped_encoder, first_pass=None), AlignConfig()
    accuracy, figures = first_pass_accuracy(encoder, VectorCache(encoder.backbone), [e.text for e in train],
                                            [e.intent for e in train], dev_sets, tests, config)

    def costless(threshold) -> bool:
        return all(g[f"{threshold:g}"]["accuracy"] >= g["encoder alone"]["accuracy"] for g in figures["dev"].values())

    first_pass = encoder.first_pass
    assert figures["threshold"] == (first_pass.threshold if first_pass else None)
    assert not any(costless(t) for t in config.first_pass_thresholds if first_pass is None or t < first_pass.threshold)
    if first_pass is not None:
        assert costless(first_pass.threshold)
        assert 0 < figures["dev"]["dev turns"][f"{first_pass.threshold:g}"]["answered"] < 1
    readings = encoder.read([e.text for e in tests])
    for language, share in accuracy.items():
        rows = [(r, e) for r, e in zip(readings, tests) if e.language == language]
        assert share == pytest.approx(np.mean([INTENTS[int(np.argmax(r.probabilities))] == e.intent for r, e in rows]))
        assert figures["answered_on_test"][language] == pytest.approx(np.mean([r.space == "use" for r, _ in rows]))


def test_router_falls_back_for_an_unseen_language():
    """Turkish and Italian: no training data. The router detects the language, takes the
    intent from the aligned encoder and the facts from retrieval, and picks the
    adapter by the fallback order: Turkish has no nearest training language and no
    multilingual reply adapter is shipped, so the base model; Italian → Spanish."""
    router = build_router(BotConfig())
    turkish = router.route("Şifremi unuttum, hesabıma giremiyorum")
    assert (turkish.language, turkish.intent, turkish.adapter) == ("tr", "account_access", None)
    assert turkish.topics[0] == "account_help"
    italian = router.route("Vorrei restituire le scarpe, sono troppo piccole")
    assert (italian.language, italian.intent) == ("it", "return_refund")
    assert italian.facts[0].startswith("returns.")
    assert italian.adapter == ("reply-es-lora" if "reply-es-lora" in load_registry(ADAPTERS_DIR) else None)


def test_a_turkish_question_finds_the_policy_among_english_facts(shipped_encoder, tmp_path):
    facts = list(knowledge_base("en").facts.values())
    index = FactIndex(shipped_encoder, [f.id for f in facts], [(f.id, f.text) for f in facts], cache_dir=tmp_path)
    questions = {
        "Kargo ücreti ne kadar, yurt dışına gönderiyor musunuz?": "shipping_costs",
        "Şifremi unuttum, hesabıma giremiyorum": "account_help",
        "Hangi ödeme yöntemlerini kabul ediyorsunuz? Kapıda ödeme var mı?": "payment_methods",
    }
    for question, topic in questions.items():
        vector = shipped_encoder.embed([question])
        best, _, _ = index.rank(vector[0])[0]
        assert best.split(".")[0] == topic, question


def test_a_damaged_encoder_falls_back_to_naive_bayes(tmp_path, caplog):
    folder = tmp_path / "encoder"
    shutil.copytree(DEFAULT_ENCODER, folder)
    (folder / "head.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EncoderError, match="head.safetensors: corrupt"):
        open_encoder(folder)
    with caplog.at_level(logging.WARNING):
        detector = default_intent_detector(folder)
    assert isinstance(detector, NaiveBayesIntents)
    assert "falling back to naive Bayes" in caplog.text
    assert isinstance(default_intent_detector(tmp_path / "missing"), NaiveBayesIntents)


def test_intent_encoder_none_routes_with_naive_bayes(caplog):
    with caplog.at_level(logging.WARNING):
        router = build_router(load_config(BotConfig, None, ["intent_encoder=none"]))
    assert isinstance(router.intents, NaiveBayesIntents) and "falling back" not in caplog.text
    route = router.route("¿dónde está mi pedido? hace una semana que lo pedí")
    assert (route.language, route.intent) == ("es", "order_status")


def test_encoder_card_is_not_a_reply_adapter():
    assert all(card.task != "encode" for card in load_registry(ADAPTERS_DIR).values())
    card = json.loads((DEFAULT_ENCODER / "card.json").read_text(encoding="utf-8"))
    assert card["task"] == "encode" and card["languages"] == list(TRAINING_LANGUAGES)
    assert card["training"]["dev_retrieval_p_at_1_aligned"] > card["training"]["dev_retrieval_p_at_1_backbone"]


def test_the_unseen_language_dev_set_shares_no_message_with_the_test_sets():
    from evals.transfer import test_examples

    unseen = unseen_language_examples()
    languages = {e.language for e in unseen}
    assert len(languages) == 30 and not languages & set(TRAINING_LANGUAGES)
    assert not {e.text for e in unseen} & {e.text for e in test_examples()}


def test_eval_transfer_and_report(tmp_path):
    """The whole measurement on the real data with the fastest backbone, then the report."""
    from evals.transfer import evaluate_transfer, write_report

    results = evaluate_transfer(backbones=("use-v3",), progress=False)
    assert set(results["intent"]) == {"naive-bayes", "use-v3", "use-v3+aligned"}
    for by_train in results["intent"].values():
        assert set(by_train["all"]) >= set(TRAINING_LANGUAGES) | {"it", "id", "tr", "ko", "vi"}
    assert mean_off_diagonal(results["retrieval"]["use-v3+aligned"]) > mean_off_diagonal(results["retrieval"]["use-v3"])
    (tmp_path / "metrics.json").write_text(json.dumps(results), encoding="utf-8")
    (tmp_path / "fewshot.json").write_text(json.dumps({"test_turns": 2, "setup": "toy", "runs": [
        {"language": "hi", "method": "lora", "start": start, "k": k, "steps": k, "loss": 2.0 - k / 100, "chrf": 10 + k / 10,
         "right_language": 1.0} for start in ("scratch", "en") for k in (0, 8)
    ]}), encoding="utf-8")
    report = write_report(tmp_path).read_text(encoding="utf-8")
    assert "## Intent accuracy, macro-averaged" in report and "| naive-bayes | en |" in report
    assert "Few-shot adaptation" in report
    for image in ("intent_accuracy.png", "retrieval_heatmap.png", "fewshot.png"):
        assert (tmp_path / image).stat().st_size > 10_000, image


def test_fewshot_study_runs_every_point_and_resumes(tiny_model_dir, tmp_path):
    from evals.fewshot import FewShotConfig, run_fewshot

    config = FewShotConfig(
        model=str(tiny_model_dir), languages=["es"], ks=[0, 2], steps=[0, 1], source_steps=1, batch_tokens=512,
        max_length=256, test_turns=2, max_new_tokens=4, work_dir=str(tmp_path / "work"), out=str(tmp_path / "fewshot.json"),
    )
    result = run_fewshot(config)
    points = {(r["method"], r["start"], r["k"]) for r in result["runs"]}
    assert points == {(m, s, k) for m in ("lora", "prompt_tuning") for s in ("scratch", "en") for k in (0, 2)}
    assert all(r["loss"] > 0 and 0 <= r["chrf"] <= 100 for r in result["runs"])
    scratch = [r for r in result["runs"] if r["start"] == "scratch" and r["k"] == 0]
    assert scratch[0]["loss"] == scratch[1]["loss"]  # k = 0 from scratch is the base model for both methods
    trained = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert "es-lora-from-en-k2" in trained and "source-en-prompt-tuning" in trained
    mtime = (tmp_path / "fewshot.json").stat().st_mtime_ns
    assert run_fewshot(config)["runs"] == result["runs"]  # a rerun finds every point done
    assert (tmp_path / "fewshot.json").stat().st_mtime_ns >= mtime
