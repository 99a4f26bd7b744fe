"""Real stand-ins for tests and benchmarks: a tiny random model, and a local HTTP server that
speaks the part of Telegram's Bot API babelbot uses (the stand-in for Telegram in the tests
and in `babelbot bench telegram`).

`build_tiny_model(folder)` writes a 2-layer Llama that loads and generates in milliseconds.
`FakeBotApi` records every call, hands out queued updates through long polling, keeps the text of
every message the bot sent or edited, and can answer the next calls of a method with an
error (e.g. 429 with retry_after) to test retries.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

BOT_USER = {"id": 777, "is_bot": True, "first_name": "Babelbot", "username": "babelbot_test_bot"}


class FakeBotApi:
    def __init__(self, token: str):
        self.token = token
        self.calls: list[tuple[float, str, dict]] = []
        self.updates: list[dict] = []
        self.messages: dict[int, dict] = {}  # message_id → {"chat_id", "text", "edits"}
        self.failures: dict[str, list[dict]] = {}
        self.next_update_id = 1
        self.next_message_id = 1000
        self.cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/bot"

    def start(self) -> "FakeBotApi":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what tests do -------------------------------------------------------------------

    def push(self, update: dict) -> None:
        with self.cond:
            self.updates.append({"update_id": self.next_update_id, **update})
            self.next_update_id += 1
            self.cond.notify_all()

    def fail_next(self, method: str, count: int = 1, code: int = 429, retry_after: int = 1) -> None:
        error = {"ok": False, "error_code": code, "description": f"Too Many Requests: retry after {retry_after}"}
        if code == 429:
            error["parameters"] = {"retry_after": retry_after}
        with self.cond:
            self.failures.setdefault(method, []).extend([error] * count)

    def texts(self, chat_id: int) -> list[str]:
        """The final text of every message the bot sent to `chat_id`, in order."""
        with self.cond:
            return [m["text"] for _, m in sorted(self.messages.items()) if m["chat_id"] == chat_id]

    def calls_of(self, method: str) -> list[dict]:
        with self.cond:
            return [params for _, name, params in self.calls if name == method]

    def wait_for(self, predicate, timeout: float = 60.0, quiet: float = 0.0):
        """Wait until `predicate()` holds and, if `quiet`, the bot made no call (other than
        polling for updates) for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cond:
                last = max((t for t, method, _ in self.calls if method != "getUpdates"), default=0.0)
            if predicate() and time.monotonic() - last >= quiet:
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s; last calls: {[c[1:] for c in self.calls[-5:]]}")

    # -- the API ---------------------------------------------------------------------------

    def _message(self, chat_id: int, text: str) -> dict:
        return {"message_id": self.next_message_id, "date": int(time.time()), "from": BOT_USER,
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"}, "text": text}

    def answer(self, method: str, params: dict):
        with self.cond:
            self.calls.append((time.monotonic(), method, params))
            if self.failures.get(method):
                return self.failures[method].pop(0)
        if method == "getUpdates":
            offset, timeout = int(params.get("offset") or 0), float(params.get("timeout") or 0)
            deadline = time.monotonic() + min(timeout, 2.0)
            with self.cond:
                while True:
                    pending = [u for u in self.updates if u["update_id"] >= offset]
                    if pending or time.monotonic() >= deadline:
                        return {"ok": True, "result": pending}
                    self.cond.wait(max(0.0, deadline - time.monotonic()))
        if method == "getMe":
            return {"ok": True, "result": BOT_USER}
        if method == "sendMessage":
            with self.cond:
                message = self._message(int(params["chat_id"]), params["text"])
                self.messages[message["message_id"]] = {"chat_id": int(params["chat_id"]), "text": params["text"], "edits": 0}
                self.next_message_id += 1
            return {"ok": True, "result": message}
        if method == "editMessageText":
            with self.cond:
                stored = self.messages.get(int(params["message_id"]))
                if stored is None:
                    return {"ok": False, "error_code": 400, "description": "Bad Request: message to edit not found"}
                if stored["text"] == params["text"]:
                    return {"ok": False, "error_code": 400, "description": "Bad Request: message is not modified"}
                stored["text"] = params["text"]
                stored["edits"] += 1
                message = self._message(stored["chat_id"], params["text"])
                message["message_id"] = int(params["message_id"])
            return {"ok": True, "result": message}
        if method in ("sendChatAction", "setMyCommands", "deleteWebhook", "setWebhook", "close", "logOut"):
            return {"ok": True, "result": True}
        return {"ok": False, "error_code": 404, "description": f"Not Found: method {method}"}

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                prefix = f"/bot{api.token}/"
                if not self.path.startswith(prefix):
                    return self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(body or "{}")
                else:
                    params = {}
                    for key, values in parse_qs(body).items():
                        try:
                            params[key] = json.loads(values[0])
                        except ValueError:
                            params[key] = values[0]
                result = api.answer(self.path[len(prefix):], params)
                self._reply(200 if result["ok"] else result["error_code"], result)

            do_GET = do_POST

            def _reply(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the bot hung up (shutting down)
                    pass

            def log_message(self, *args):
                pass

        return Handler


def text_update(chat_id: int, text: str, user_id: int | None = None, language_code: str | None = "en",
                chat_type: str = "private", message_id: int = 1, reply_to: dict | None = None) -> dict:
    user = {"id": user_id or chat_id, "is_bot": False, "first_name": "Customer", "language_code": language_code}
    message = {"message_id": message_id, "date": int(time.time()), "chat": {"id": chat_id, "type": chat_type},
               "from": user, "text": text}
    if text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    if reply_to:
        message["reply_to_message"] = reply_to
    return {"message": message}


def build_tiny_model(folder: Path) -> Path:
    """A randomly initialised 2-layer Llama with a byte-level BPE tokenizer trained on the
    knowledge base: loads and generates in milliseconds, for tests and smoke runs. Its
    replies are random text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from prompts.knowledge import KNOWLEDGE_DIR

    texts = [path.read_text(encoding="utf-8") for path in sorted(KNOWLEDGE_DIR.glob("*.yaml"))]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<pad>", "<bos>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
