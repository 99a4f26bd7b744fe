"""`babelbot chat`: a terminal chat on the dialogue manager; the session survives restarts."""

import sys

from babelbot.config import load_config
from bot.build import build_manager
from bot.config import BotConfig
from bot.router import route_label


def main(args) -> int:
    manager = build_manager(load_config(BotConfig, args.config, args.overrides))
    manager.agents_reachable = False
    print("babelbot — type a message, /reset to start over, Ctrl-D to quit.", flush=True)
    for line in sys.stdin:
        reply = manager.handle(args.session, line)
        if reply.route:
            print(f"[{route_label(reply.route.language, reply.route.intent, reply.route.adapter)}]", flush=True)
        for piece in reply:
            print(piece, end="", flush=True)
        print(flush=True)
    return 0
