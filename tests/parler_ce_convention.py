"""Our Parler-TTS CE against two label conventions, on a tiny random Parler model (tests only).

Runs in the Parler environment and prints one JSON object:
``.venv-parler/bin/python -m tests.parler_ce_convention DIR [--seed N]`` builds the model in
``DIR`` and scores random reference clips three ways, on the same codec tokens:

- ``ours``: ``scoring.models.parler``'s adapter (``teacher_forced_loss``);
- ``training``: Parler-TTS's training convention, the delay pattern without its all-BOS first
  column (``labels[:, 1:]``) given as ``labels`` to the model's own loss, summed and divided by
  the tokens that loss scores;
- ``original``: the original system's convention, the whole pattern (BOS column kept) given as
  ``labels``, with a decoder attention mask over the frames without EOS, the summed loss divided
  by the count of those frames; ``original_unmasked`` is the same without the attention mask,
  which isolates the effect of the BOS column.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from devstack.tiny.parler import build_tiny_parler
from scoring.models import PARLER, load_model
from scoring.models.parler import ParlerTTS
from scoring.templates import Template, get_template

DESCRIPTIONS = ["A warm voice.", "A deep male voice, slow and deliberate."]
TEXTS = ["Hello there.", "The library closes at eight tonight."]
WAVE_SECONDS = (0.5, 0.75)


def reference_waves(sample_rate: int) -> list[np.ndarray]:
    """Random noise clips of ``WAVE_SECONDS`` (fixed seed)."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(int(s * sample_rate)).astype(np.float32) * 0.1
            for s in WAVE_SECONDS]


def full_pattern(adapter: ParlerTTS, codes: torch.Tensor) -> torch.Tensor:
    """The original's labels: a BOS column, then the (K, T) codes, laid out by
    ``build_delay_pattern_mask`` with ``-1`` replaced by EOS; shape (1, T + 1 + K, K)."""
    from parler_tts import build_delay_pattern_mask

    k, t = codes.shape
    bos = int(adapter.model.generation_config.decoder_start_token_id)
    eos = int(adapter.model.config.decoder.eos_token_id)
    tokens = torch.cat([torch.full((1, k, 1), bos, dtype=torch.long), codes[None].long()], dim=-1)
    _, pattern = build_delay_pattern_mask(
        tokens, bos_token_id=bos, pad_token_id=eos, max_length=t + 1 + k, num_codebooks=k
    )
    pattern = torch.where(pattern == -1, eos, pattern)
    assert (pattern[:, 0] == bos).all()
    return pattern.unsqueeze(0).permute(0, 2, 1)


@torch.inference_mode()
def summed_loss(
    adapter: ParlerTTS, template: Template, description: str, text: str, labels: torch.Tensor,
    decoder_attention_mask: torch.Tensor | None = None,
) -> float:
    """The model's own loss with ``loss_reduction="sum"`` (a sum over tokens, divided by K)."""
    desc = adapter.tokenizer(template.description(description, text), return_tensors="pt")
    prompt = adapter.tokenizer(template.prompt(description, text), return_tensors="pt")
    out = adapter.model(
        input_ids=desc["input_ids"],
        attention_mask=desc["attention_mask"],
        prompt_input_ids=prompt["input_ids"],
        prompt_attention_mask=prompt["attention_mask"],
        labels=labels,
        decoder_attention_mask=decoder_attention_mask,
        return_dict=True,
        loss_reduction="sum",
    )
    return float(out.loss)


def scored_tokens(adapter: ParlerTTS, labels: torch.Tensor) -> int:
    """The tokens the model's loss scores for ``labels`` (1, L, K): no BOS, and no EOS whose
    decoder input is already EOS (so codes and one EOS per codebook)."""
    bos = int(adapter.model.config.decoder.bos_token_id)
    eos = int(adapter.model.config.decoder.eos_token_id)
    start = int(adapter.model.generation_config.decoder_start_token_id)
    inputs = torch.cat([torch.full_like(labels[:, :1], start), labels[:, :-1]], dim=1)
    return int(((labels != bos) & (inputs != eos)).sum())


def measure(path: Path) -> dict[str, Any]:
    """Our CE and the two conventions' CE per sample, with the counts behind them."""
    template = get_template("default")
    adapter = load_model(PARLER, path, template, torch.device("cpu"))
    assert isinstance(adapter, ParlerTTS)
    k = adapter.n_codebooks
    eos = int(adapter.model.config.decoder.eos_token_id)
    waves = reference_waves(adapter.sample_rate)
    result: dict[str, Any] = {"ours": adapter.teacher_forced_loss(DESCRIPTIONS, TEXTS, waves),
                              "training": [], "original": [], "original_unmasked": [],
                              "frames": [], "tokens": [], "tokens_original": [],
                              "frames_original": []}
    for d, t, w in zip(DESCRIPTIONS, TEXTS, waves, strict=True):
        codes = adapter.encode_audio(w).cpu()
        labels = full_pattern(adapter, codes)
        frame_mask = (labels != eos).all(dim=-1).long()
        frames = int(frame_mask.sum())
        n_train = scored_tokens(adapter, labels[:, 1:])
        train_sum = summed_loss(adapter, template, d, t, labels[:, 1:])
        result["training"].append(train_sum * k / n_train)
        result["original"].append(summed_loss(adapter, template, d, t, labels, frame_mask) / frames)
        result["original_unmasked"].append(summed_loss(adapter, template, d, t, labels) / frames)
        result["frames"].append(int(codes.shape[1]))
        result["frames_original"].append(frames)
        result["tokens"].append(n_train)
        result["tokens_original"].append(scored_tokens(adapter, labels))
    result["n_codebooks"] = k
    adapter.close()
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: build the model, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    build_tiny_parler(args.path, seed=args.seed)
    hf_logging.set_verbosity_error()
    result = measure(args.path)
    result["seed"] = args.seed
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
