"""The label sets every part agrees on (DESIGN.md): intents and tasks."""

INTENTS: tuple[str, ...] = (
    "greeting", "order_status", "cancel_order", "return_refund", "shipping_info", "change_order",
    "payment_problem", "account_access", "product_info", "complaint", "human_agent", "goodbye",
    "out_of_scope",
)
TASKS: tuple[str, ...] = ("reply", "summarize", "translate")
