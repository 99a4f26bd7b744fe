"""Generation with a PEFT prompt-tuning adapter, done right.

PEFT 0.21 with transformers 5.x re-inserts the soft prompt at every decoding step of
`PeftModel.generate`: transformers now hands the cache to the model as `cache`, PEFT still
looks for `past_key_values`, so it takes every step for the first one. Replies then drift
into copies of the prompt's initial text. Training and loss are not affected (they run one
forward over the whole sequence).

So generation feeds the base model the soft prompt once, in front of the prompt's token
embeddings, exactly as PEFT's own forward pass does in training: positions count from 0
over the virtual tokens, then the prompt.
"""

import torch


def is_prompt_tuned(model) -> bool:
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and getattr(config, "is_prompt_learning", False))


def soft_prompt_inputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict:
    """`inputs_embeds` and `attention_mask` for the base model: [soft prompt; embed(input_ids)]."""
    base = model.get_base_model()
    embeds = base.get_input_embeddings()(input_ids)
    prompt = model.get_prompt(batch_size=input_ids.shape[0]).to(device=embeds.device, dtype=embeds.dtype)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    prefix = torch.ones(input_ids.shape[0], prompt.shape[1], dtype=attention_mask.dtype, device=attention_mask.device)
    return {"inputs_embeds": torch.cat([prompt, embeds], dim=1), "attention_mask": torch.cat([prefix, attention_mask], dim=1)}


def generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """`model.generate` that returns only the new tokens, and for a prompt-tuning PeftModel
    runs its base model on the soft prompt as described above."""
    if not is_prompt_tuned(model):
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out[:, input_ids.shape[1] :]
    kwargs.pop("token_type_ids", None)  # describes input_ids only; the soft prompt has none
    # Without input_ids, a decoder-only model's `generate` returns the new tokens only.
    return model.get_base_model().generate(**soft_prompt_inputs(model, input_ids, attention_mask), **kwargs)
