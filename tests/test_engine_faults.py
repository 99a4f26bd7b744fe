"""Faults in the batch engine stay with the request they hit: a failing row or step, a full
queue and a reader past its deadline never stop or hang the others."""

import time

import pytest
from transformers import AutoModelForCausalLM

from bot.batch_engine import BatchEngine, EngineBusy, Sampling
from bot.build import build_router
from bot.config import BotConfig, GenerationSettings
from bot.dialogue import DialogueManager
from bot.engine import Engine
from bot.store import Store
from prompts.locales import locale_for

PROMPTS = [[1, 5, 9, 13, 17], [1, 7, 3, 11], [1, 4, 4, 8, 15, 16]]


class FailingRowEngine(BatchEngine):
    """Sampling raises for one request id: a fault in one row."""

    failing_id = 1

    def _sample(self, request, logits):
        if request.id == self.failing_id:
            raise FloatingPointError("injected fault")
        return super()._sample(request, logits)


class FailingStepEngine(BatchEngine):
    """The first decode step raises: a fault in the shared forward pass."""

    failed = False

    def _decode(self):
        if not self.failed:
            self.failed = True
            raise RuntimeError("injected step fault")
        super()._decode()


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def alone(model, input_ids):
    engine = BatchEngine(model)
    engine.start()
    try:
        return engine.submit(input_ids, sampling=Sampling(max_new_tokens=8)).result()
    finally:
        engine.stop()


def test_a_failing_row_fails_its_request_only_and_the_others_are_unchanged(model):
    engine = FailingRowEngine(model)
    requests = [engine.submit(ids, sampling=Sampling(max_new_tokens=8)) for ids in PROMPTS]
    engine.start()
    try:
        results = [request.result() for request in requests]
    finally:
        engine.stop()
    assert [r.finish_reason for r in requests] == ["length", "error", "length"]
    assert results[0] == alone(model, PROMPTS[0]) and results[2] == alone(model, PROMPTS[2])


def test_a_failed_step_ends_the_rows_it_ran_and_the_queue_goes_on(model):
    engine = FailingStepEngine(model, max_batch=1)
    first, second = (engine.submit(ids, sampling=Sampling(max_new_tokens=8)) for ids in PROMPTS[:2])
    engine.start()
    try:
        assert second.result() == alone(model, PROMPTS[1])
    finally:
        engine.stop()
    assert first.finish_reason == "error" and second.finish_reason == "length"


def test_a_full_queue_is_refused_and_a_late_reader_gives_up(model):
    engine = BatchEngine(model, max_waiting=1)  # not started: nothing leaves the queue
    waiting = engine.submit(PROMPTS[0], timeout_s=0.2)
    with pytest.raises(EngineBusy):
        engine.submit(PROMPTS[1])
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        waiting.result()
    assert time.monotonic() - started < 5 and waiting.cancelled


def test_the_customer_is_told_to_try_again_when_the_engine_is_full(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, GenerationSettings(max_new_tokens=8))
    engine.batch.max_waiting = 0
    manager = DialogueManager(engine, Store(tmp_path / "busy.sqlite3"), build_router(BotConfig(), adapters={}))
    reply = manager.handle("b1", "How much does express shipping cost?")
    assert reply.read() == locale_for("en").notice("busy") and reply.outcome == "busy"
    assert [turn.role for turn in manager.history("b1")] == ["user"]  # the question is kept, the notice is not
