"""What every tiny model builder shares: the tokenizer, the T5 text encoder's config, and
how a randomly initialized model is made distinct and saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scoring.prompts import prompt_set, speakers


def _corpus() -> list[str]:
    lines = [p["text"] for p in prompt_set()] + [p["user"] for p in prompt_set()]
    lines += [s["description"] for s in speakers()]
    return lines


def build_tokenizer(vocab_size: int = 512):  # noqa: ANN201 - PreTrainedTokenizerFast
    """A byte-level BPE tokenizer trained on the shipped prompts (no hub download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def t5_config(vocab_size: int, d_model: int, layers: int, d_ff: int, heads: int,
              **extra: Any):  # noqa: ANN201 - T5Config
    """The text encoder's config (pad 0, eos 1, as the tokenizer above numbers them)."""
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff,
        num_layers=layers, num_heads=heads, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0, **extra,
    )


def init_model(model_class: Any, config: Any, seed: int, head_scale: float) -> Any:
    """A randomly initialized model, its output heads multiplied by ``head_scale``.

    A random model with sharper (wrong) predictions has a higher cross-entropy, so models built
    with different scales score differently.
    """
    torch.manual_seed(seed)
    model = model_class(config)
    if head_scale != 1.0:
        with torch.no_grad():
            for head in model.decoder.lm_heads:
                head.weight.mul_(head_scale)
    return model


def save_model(model: Any, tokenizer: Any, path: Path, *, start_id: int, pad_id: int) -> Path:
    """Greedy generation settings (no guidance), then safetensors, config and tokenizer."""
    gen = model.generation_config
    gen.decoder_start_token_id = gen.bos_token_id = start_id
    gen.pad_token_id = pad_id
    if pad_id != start_id:
        gen.eos_token_id = pad_id
    gen.do_sample = False
    gen.guidance_scale = None
    gen.max_length = 4096
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
