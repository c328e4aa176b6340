"""The Parler-TTS adapter over the parler-tts package (runs only in the Parler environment)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from scoring.exceptions import ModelLoadError
from scoring.models.base import Generated, TTSModel
from scoring.templates import Template

ARCHITECTURE = "ParlerTTSForConditionalGeneration"
_MAX_DESCRIPTION_TOKENS = 512
R = TypeVar("R")


def group_by_length(lengths: Sequence[int]) -> list[list[int]]:
    """Indices grouped by equal length, in first-seen order.

    Parler prepends the prompt embeddings to the decoder input and numbers positions from the
    start of that sequence, so prompt padding would shift every audio position of the shorter
    prompts; samples are therefore only batched with prompts of the same token length.
    """
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    return list(groups.values())


class ParlerTTS(TTSModel):
    """Description → T5 encoder (``input_ids``), text → prompt (``prompt_input_ids``), DAC codec."""

    family = "Parler-TTS"
    extra_positions = 64  # the prompt, prepended to the decoder input

    def __init__(self, path: Path, template: Template, device: torch.device) -> None:
        try:
            from parler_tts import ParlerTTSForConditionalGeneration
        except ImportError as exc:
            raise ModelLoadError(
                "parler-tts is not installed in this environment; run Parler models with the "
                "Parler environment (bash scripts/setup-parler.sh)"
            ) from exc

        self._load(ParlerTTSForConditionalGeneration, path, template, device)
        decoder = self.model.config.decoder
        self.bos_id = int(decoder.bos_token_id)
        self.eos_id = int(decoder.eos_token_id)
        codec_codebooks = int(self.model.config.audio_encoder.num_codebooks)
        if codec_codebooks < self.n_codebooks:
            raise ModelLoadError(
                f"the codec has {codec_codebooks} codebooks; the decoder needs {self.n_codebooks}"
            )

    def _prompts(self, descriptions: list[str], texts: list[str]) -> list[list[int]]:
        prompts = [self.template.prompt(d, t) for d, t in zip(descriptions, texts, strict=True)]
        return [list(ids) for ids in self.tokenizer(prompts)["input_ids"]]

    def _by_prompt_length(
        self,
        descriptions: list[str],
        texts: list[str],
        run: Callable[[list[int], dict[str, torch.Tensor]], list[R]],
    ) -> list[R]:
        """Call ``run(indices, inputs)`` per group of equal prompt length, in input order."""
        prompt_ids = self._prompts(descriptions, texts)
        results: list[Any] = [None] * len(texts)
        for idx in group_by_length([len(p) for p in prompt_ids]):
            encoded = self.tokenizer(
                [self.template.description(descriptions[i], texts[i]) for i in idx],
                padding=True,
                truncation=True,
                max_length=_MAX_DESCRIPTION_TOKENS,
                return_tensors="pt",
            )
            inputs = {
                "input_ids": encoded["input_ids"].to(self.device),
                "attention_mask": encoded["attention_mask"].to(self.device),
                "prompt_input_ids": torch.tensor(
                    [prompt_ids[i] for i in idx], dtype=torch.long, device=self.device
                ),
            }
            for i, out in zip(idx, run(idx, inputs), strict=True):
                results[i] = out
        return results

    @torch.inference_mode()
    def generate(
        self, descriptions: list[str], texts: list[str], n_frames: int, seed: int
    ) -> list[Generated]:
        """Greedy generation of ``n_frames`` frames per sample (EOS held back until then)."""
        new_tokens = n_frames + self.n_codebooks - 1

        def run(idx: list[int], inputs: dict[str, torch.Tensor]) -> list[Generated]:
            torch.manual_seed(seed)
            out = self.model.generate(
                **inputs,
                do_sample=False,
                min_new_tokens=new_tokens,
                max_new_tokens=new_tokens,
                return_dict_in_generate=True,
            )
            waves = out.sequences.float().reshape(len(idx), -1).cpu().numpy()
            lengths = out["audios_length"]
            return [
                Generated(wave=w[: int(n)].astype(np.float32), sample_rate=self.sample_rate)
                for w, n in zip(waves, lengths, strict=True)
            ]

        return self._by_prompt_length(descriptions, texts, run)

    def encode_audio(self, wave: np.ndarray) -> torch.Tensor:
        """The (K, T) DAC tokens of a mono waveform at ``sample_rate``."""
        values = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(self.device)
        out = self.model.audio_encoder.encode(
            values.view(1, 1, -1), n_quantizers=self.n_codebooks, sample_rate=self.sample_rate
        )
        return out.audio_codes[0, 0, : self.n_codebooks]

    def delayed_sequence(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs and labels, both (K, T + K), of (K, T) codes in Parler's delay pattern.

        The sequence is BOS, the codes, then EOS, laid out by ``build_delay_pattern_mask``
        (codebook k delayed by k). Labels keep every code and the first EOS of each codebook
        (as Parler is trained); BOS and the trailing EOS padding are ``-100``.
        """
        from parler_tts import build_delay_pattern_mask

        k, t = codes.shape
        seq = torch.cat([torch.full((k, 1), self.bos_id, device=codes.device), codes], dim=1)
        _, pattern = build_delay_pattern_mask(
            seq.long(), self.bos_id, self.eos_id, max_length=t + 1 + k, num_codebooks=k
        )
        pattern = pattern.masked_fill(pattern == -1, self.eos_id)
        inputs, labels = pattern[:, :-1], pattern[:, 1:].clone()
        first_eos = torch.arange(k, device=codes.device) + t
        keep = labels != self.bos_id
        positions = torch.arange(labels.shape[1], device=codes.device).expand(k, -1)
        keep &= (labels != self.eos_id) | (positions == first_eos[:, None])
        return inputs, labels.masked_fill(~keep, -100)

    @torch.inference_mode()
    def teacher_forced_loss(
        self, descriptions: list[str], texts: list[str], reference_waves: list[np.ndarray]
    ) -> list[float]:
        """CE per sample over the delayed reference codes; padding is masked, never averaged."""

        def run(idx: list[int], inputs: dict[str, torch.Tensor]) -> list[float]:
            pairs = [self.delayed_sequence(self.encode_audio(reference_waves[i])) for i in idx]
            length = max(p[0].shape[1] for p in pairs)
            batch, k = len(idx), self.n_codebooks
            decoder_inputs = torch.full((batch, k, length), self.eos_id, device=self.device)
            labels = torch.full((batch, k, length), -100, device=self.device)
            for row, (inp, lab) in enumerate(pairs):
                decoder_inputs[row, :, : inp.shape[1]] = inp
                labels[row, :, : lab.shape[1]] = lab
            out = self.model(
                **inputs, decoder_input_ids=decoder_inputs.reshape(batch * k, length).long()
            )
            logits = out.logits.reshape(batch, k, -1, out.logits.shape[-1])[:, :, -length:]
            token_loss = F.cross_entropy(
                logits.float().permute(0, 3, 1, 2),
                labels.long(),
                ignore_index=-100,
                reduction="none",
            )
            valid = (labels != -100).sum(dim=(1, 2)).clamp(min=1)
            return (token_loss.sum(dim=(1, 2)) / valid).cpu().tolist()

        return self._by_prompt_length(descriptions, texts, run)
