"""The `babelbot` command. Subcommands import what they need, so `tuning` and `bot` stay apart."""

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from babelbot.config import load_config
from babelbot.paths import ADAPTERS_DIR

# Errors whose message is for the user (module → class); only an imported module can raise one.
USER_ERRORS = {"babelbot.config": "ConfigError", "babelbot.models": "ModelError", "bot.store": "StoreError",
               "evals.answers": "AnswersError"}


def user_error_types() -> tuple[type[Exception], ...]:
    return tuple(getattr(sys.modules[module], name) for module, name in USER_ERRORS.items() if module in sys.modules)


def _module_main(module: str, function: str = "main"):
    """A subcommand whose code is `module.function(args)`, imported only when it runs."""

    def run(args) -> int:
        return getattr(importlib.import_module(module), function)(args)

    return run


def _bot_config(args):
    from bot.config import BotConfig

    return load_config(BotConfig, args.config, args.overrides)


def cmd_serve(args) -> int:
    import uvicorn

    from bot.build import build_manager
    from bot.frontends.web import build_app

    app = build_app(build_manager(_bot_config(args)))
    print(f"babelbot: serving the web chat on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_telegram(args) -> int:
    from bot.build import build_manager
    from bot.frontends.telegram import run

    flags = {"webhook_url": args.webhook_url, "webhook_listen": args.listen, "webhook_port": args.port,
             "webhook_secret": args.secret, "base_url": args.base_url}
    args.overrides = [f"telegram.{key}={value}" for key, value in flags.items() if value is not None] + args.overrides
    config = _bot_config(args)
    config.telegram.resolved_token()  # fail before loading the model when there is no token
    run(build_manager(config), config.telegram)
    return 0


def cmd_model_prepare(args) -> int:
    from babelbot.models import resolve_model

    print(resolve_model(args.name, force=args.force))
    return 0


def _adapter_folders(root: Path) -> list[Path]:
    from adapters.registry import CARD_FILE

    return sorted(p for p in root.iterdir() if (p / CARD_FILE).exists()) if root.is_dir() else []


def cmd_adapters_list(args) -> int:
    from adapters.registry import AdapterError, is_encoder, read_card

    folders = _adapter_folders(Path(args.dir))
    for folder in folders:
        if is_encoder(folder):
            card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
            print(f"{card['name']}\tencode\t{','.join(card.get('languages', []))}\t{card['method']}\tbackbone={card['backbone']}")
            continue
        try:
            card = read_card(folder)
            print(f"{card.name}\t{card.task}\t{','.join(card.languages)}\t{card.method}\tbase={card.base_model}")
        except AdapterError as error:
            print(f"{folder.name}\tUNUSABLE: {error}")
    if not folders:
        print(f"no adapters in {args.dir}", file=sys.stderr)
    return 0


def cmd_adapters_show(args) -> int:
    from adapters.registry import CARD_FILE

    path = Path(args.dir) / args.name / CARD_FILE
    if not path.exists():
        print(f"babelbot: no adapter {args.name!r} in {args.dir} (see `babelbot adapters list`)", file=sys.stderr)
        return 2
    print(path.read_text(encoding="utf-8"))
    return 0


def cmd_adapters_verify(args) -> int:
    from adapters.registry import is_encoder, verify_adapter, verify_encoder
    from babelbot.models import model_fingerprint, resolve_model

    fingerprint = model_fingerprint(resolve_model(args.model)) if args.model else None
    failed = 0
    for folder in _adapter_folders(Path(args.dir)):
        problems = verify_encoder(folder) if is_encoder(folder) else verify_adapter(folder, fingerprint)
        failed += bool(problems)
        print(f"{folder.name}: " + ("ok" if not problems else "; ".join(problems)))
    return 1 if failed else 0


def cmd_data_check(args) -> int:
    from tuning.data import check_data

    problems = check_data(Path(args.root)) if args.root else check_data()
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "data ok", file=sys.stderr)
    return 1 if problems else 0


def cmd_model_tiny(args) -> int:
    from babelbot.testing import build_tiny_model

    print(build_tiny_model(Path(args.folder)))
    return 0


def cmd_model_list(args) -> int:
    from babelbot.models import CATALOG, DEFAULT_MODEL, babelbot_home

    for name, entry in CATALOG.items():
        ready = (babelbot_home() / "models" / name / "config.json").exists()
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}\tpip: {entry.pip_packages}\thub: {entry.hub_id}\t{'prepared' if ready else 'not prepared'}")
    return 0


def _add_bot_options(parser):
    parser.add_argument("--config", help="YAML file with BotConfig keys")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. model=./my-model generation.max_new_tokens=64")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="babelbot", description="Multilingual customer-support chat bot.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="the Gradio web chat")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    _add_bot_options(serve)
    serve.set_defaults(run=cmd_serve)

    telegram = commands.add_parser("telegram", help="the Telegram bot (token in TELEGRAM_BOT_TOKEN)")
    telegram.add_argument("--webhook-url", help="public HTTPS URL that reaches LISTEN:PORT/telegram (default: long polling)")
    telegram.add_argument("--listen", help="webhook listening address (default 127.0.0.1)")
    telegram.add_argument("--port", type=int, help="webhook listening port (default 8443)")
    telegram.add_argument("--secret", help="webhook secret token Telegram must send (A-Z, a-z, 0-9, _, -)")
    telegram.add_argument("--base-url", help="Bot API base URL, e.g. a local Bot API server: http://127.0.0.1:8081/bot")
    _add_bot_options(telegram)
    telegram.set_defaults(run=cmd_telegram)

    chat = commands.add_parser("chat", help="chat in the terminal")
    chat.add_argument("--session", default="terminal", help="session id (the conversation is kept under it)")
    _add_bot_options(chat)
    chat.set_defaults(run=_module_main("bot.frontends.terminal"))

    for name, run, text in (
        ("route", _module_main("bot.frontends.jsonl", "route_main"),
         "language, intent, adapter and facts per JSONL line (no generation)"),
        ("reply", _module_main("bot.frontends.jsonl", "reply_main"),
         "route plus the bot's reply per JSONL line, answered in one batch"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--jsonl", required=True, metavar="FILE|-", help='lines {"id": ..., "text": ...}')
        _add_bot_options(sub)
        sub.set_defaults(run=run)

    model = commands.add_parser("model", help="prepare and list models").add_subparsers(dest="action", required=True)
    prepare = model.add_parser("prepare", help="join, verify and convert a catalog model or GGUF file once")
    prepare.add_argument("name", nargs="?", default="gemma-3-270m")
    prepare.add_argument("--force", action="store_true", help="convert again even if a cached copy exists")
    prepare.set_defaults(run=cmd_model_prepare)
    model.add_parser("list", help="the model catalog").set_defaults(run=cmd_model_list)
    tiny = model.add_parser("tiny", help="write a tiny random model (random replies) for smoke tests")
    tiny.add_argument("folder")
    tiny.set_defaults(run=cmd_model_tiny)

    tune = commands.add_parser("tune", help="train an adapter (LoRA or prompt tuning)")
    tune.add_argument("config", help="YAML with TuneConfig keys (see tuning/configs/)")
    tune.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. max_steps=50 languages=es")
    tune.set_defaults(run=_module_main("tuning.train"))

    encoder = commands.add_parser("encoder", help="the cross-lingual sentence encoder")
    encoder = encoder.add_subparsers(dest="action", required=True)
    encoder_train = encoder.add_parser("train", help="align a backbone with InfoNCE on parallel text, fit the intent classifier")
    encoder_train.add_argument("--config", help="YAML with AlignConfig keys")
    encoder_train.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. backbone=use-v3 temperature=0.1")
    encoder_train.set_defaults(run=_module_main("tuning.align"))

    adapters = commands.add_parser("adapters", help="the adapter registry").add_subparsers(dest="action", required=True)
    for name, run, text in (("list", cmd_adapters_list, "name, task, languages, method, base"),
                            ("show", cmd_adapters_show, "an adapter's card"),
                            ("verify", cmd_adapters_verify, "check files, weights and (with --model) the base")):
        sub = adapters.add_parser(name, help=text)
        sub.add_argument("--dir", default=str(ADAPTERS_DIR), help="adapters folder")
        if name == "show":
            sub.add_argument("name")
        if name == "verify":
            sub.add_argument("--model", help="also check the adapters were trained on this base model")
        sub.set_defaults(run=run)

    data = commands.add_parser("data", help="the training data").add_subparsers(dest="action", required=True)
    check = data.add_parser("check", help="validate data/: file, line and field of every problem")
    check.add_argument("root", nargs="?", help="data folder (default: the project's data/)")
    check.set_defaults(run=cmd_data_check)

    evaluate = commands.add_parser("eval", help="evaluations").add_subparsers(dest="what", required=True)
    router_eval = evaluate.add_parser("router", help="language and intent accuracy and latency on a labelled set")
    router_eval.add_argument("--data", default=None, help="JSONL with id, language, intent, text")
    router_eval.add_argument("--out", default="results/router", help="folder for metrics.json and table.md")
    router_eval.add_argument("overrides", nargs="*", metavar="key=value", help="bot settings, e.g. intent_encoder=none")
    router_eval.set_defaults(run=_module_main("evals.router"))
    weights = evaluate.add_parser("language-weights", help="the language detector's weights on development data")
    weights.add_argument("--out", default="results/router", help="folder for language_weights.json and .md")
    weights.set_defaults(run=_module_main("evals.language_weights"))
    adapters_eval = evaluate.add_parser("adapters", help="base model vs every adapter: loss, chrF, right language")
    adapters_eval.add_argument("--config", help="YAML with EvalConfig keys")
    adapters_eval.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. languages=es,fr limit=10")
    adapters_eval.set_defaults(run=_module_main("evals.adapters"))
    answers = evaluate.add_parser("answers", help="right fact in the right language: questions through the real bot, one batch")
    answers.add_argument("--split", default="test", choices=["dev", "test"], help="data/answers_eval/SPLIT.jsonl")
    answers.add_argument("--data", help="another question file (JSONL: id, language, kind, text, facts, expect)")
    answers.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    answers.add_argument("--baseline", help="results.json of an earlier run: paired bootstrap against it")
    answers.add_argument("--replies", help="score these replies (JSON {id: reply}, e.g. an earlier version's), not the bot's")
    answers.add_argument("--out", default="results/answers", help="folder for metrics.json, results.json, table.md, heatmap.png")
    _add_bot_options(answers)
    answers.set_defaults(run=_module_main("evals.answers"))
    latency = evaluate.add_parser("latency", help="model load, first-piece and full-reply latency on the default model")
    latency.add_argument("--out", default="results/latency", help="folder for metrics.json and table.md")
    latency.set_defaults(run=_module_main("evals.latency"))
    transfer = evaluate.add_parser("transfer", help="cross-lingual intent routing and retrieval, every method, same splits")
    transfer.add_argument("--out", default="results/transfer", help="folder for metrics.json, REPORT.md and plots")
    transfer.add_argument("--backbones", nargs="+", default=["base-model", "use-v3", "e5-small", "e5-small+use-v3"],
                          help="embedding backbones to compare (naive Bayes always runs)")
    transfer.set_defaults(run=_module_main("evals.transfer"))
    fewshot = evaluate.add_parser(
        "fewshot", help="few-shot reply adaptation curves: k examples, LoRA vs prompt tuning, scratch vs English start"
    )
    fewshot.add_argument("--config", help="YAML with FewShotConfig keys")
    fewshot.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. languages=fr,hi test_turns=8")
    fewshot.set_defaults(run=_module_main("evals.fewshot"))
    report = commands.add_parser("report", help="reports rebuilt from saved results").add_subparsers(dest="what", required=True)
    transfer_report = report.add_parser("transfer", help="REPORT.md and plots from `babelbot eval transfer` results")
    transfer_report.add_argument("--results", default="results/transfer")
    transfer_report.set_defaults(run=lambda args: importlib.import_module("evals.transfer").report_main(args))
    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True)
    telegram_bench = bench.add_parser("telegram", help="N chats at once against a local Bot API server")
    telegram_bench.add_argument("models", nargs="+", help="model specs to compare, e.g. gemma-3-270m ./tiny-model")
    telegram_bench.add_argument("--chats", type=int, default=20)
    telegram_bench.add_argument("--max-new-tokens", type=int, default=32)
    telegram_bench.add_argument("--out", default="results/telegram")
    telegram_bench.set_defaults(run=_module_main("bench.telegram"))
    serve_bench = bench.add_parser("serve", help="batch engine vs serial PEFT vs PEFT adapter_names: N sessions, K adapters")
    serve_bench.add_argument("--model", default="gemma-3-270m")
    serve_bench.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16, 32])
    serve_bench.add_argument("--adapters", type=int, nargs="+", default=[1, 8])
    serve_bench.add_argument("--new-tokens", type=int, default=32)
    serve_bench.add_argument("--serial-max-sessions", type=int, default=16,
                             help="skip the serial baseline above this many sessions (it grows linearly)")
    serve_bench.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                             help="run every method in each precision (bf16 matmuls are faster on CPUs with AVX512-BF16 or AMX)")
    serve_bench.add_argument("--out", default="results/serve")
    serve_bench.set_defaults(run=_module_main("bench.serve"))
    serve_gpu = bench.add_parser("serve-gpu", help="the serving benchmark on a CUDA GPU in larger models' shapes, "
                                                   "against the memory-bandwidth roofline")
    serve_gpu.add_argument("--models", nargs="+", default=["gemma-3-1b", "qwen2.5-1.5b"], help="shapes in bench/gpu_models/")
    serve_gpu.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16, 32])
    serve_gpu.add_argument("--adapters", type=int, nargs="+", default=[1, 8])
    serve_gpu.add_argument("--new-tokens", type=int, default=32)
    serve_gpu.add_argument("--bandwidth-tbs", type=float, default=4.8, help="GPU memory bandwidth, TB/s (H200: 4.8)")
    serve_gpu.add_argument("--out", default="results/serve-gpu")
    serve_gpu.set_defaults(run=_module_main("bench.serve_gpu"))
    tune_gpu = bench.add_parser("tune-gpu", help="QLoRA 4-bit vs bf16 LoRA training on a CUDA GPU")
    tune_gpu.add_argument("--steps", type=int, default=300)
    tune_gpu.add_argument("--out", default="results/tune-gpu")
    tune_gpu.set_defaults(run=_module_main("bench.tune_gpu"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args)
    except Exception as error:
        if not isinstance(error, user_error_types()):
            raise
        print(f"babelbot: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
