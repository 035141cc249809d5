"""Dropout with each record's own random stream: the text encoder in train mode, reproducible per record.

A text view is the encoder's output with its dropout on, as in the authors' training (BERT in train mode). Plain
dropout draws one mask for the whole padded batch from the global stream, so a record's view would depend on its
batch-mates, the batch size and the padding. Inside `RecordDropout`, every dropout the model applies draws each
record's mask from that record's own generator, over its real tokens only (padded positions never reach a real
token: they are masked as attention keys). A record's view is then the same alone or in any batch, up to float
rounding, like the clean features.

How: a TorchFunctionMode sees every call of `torch.nn.functional.dropout` (nn.Dropout calls it), `torch.dropout`
and `scaled_dot_product_attention` with a dropout probability (computed here as softmax, record dropout, product).
The token axes are found from the padded length L: hidden states [B, L, D] and attention probabilities
[B, H, L, L]. Dropout on a tensor of any other shape is refused with an error, and so is a forward that drew
from the global random stream anyway (`check_no_global_draws`): nothing random escapes the records' streams.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from spp_scl.core.errors import InputError


class UncontrolledRandomness(InputError):
    """The text encoder draws randomness that the records' streams do not control."""


def _argument(args: tuple, kwargs: dict, position: int, name: str, default):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


class RecordDropout(TorchFunctionMode):
    """Within this context, dropout in training mode draws row b's mask from `generators[b]`, over the positions
    where `attention_mask[b]` is 1."""

    def __init__(self, generators: list[torch.Generator], attention_mask: torch.Tensor):
        super().__init__()
        if len(generators) != attention_mask.shape[0]:
            raise ValueError(f"{len(generators)} generators for a batch of {attention_mask.shape[0]}")
        self.generators = generators
        self.length = attention_mask.shape[1]
        self.real = [_positions(row) for row in attention_mask.bool().cpu()]
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout or func is torch.dropout:
            names = ("p", "training") if func is F.dropout else ("p", "train")
            p = _argument(args, kwargs, 1, names[0], 0.5)
            training = _argument(args, kwargs, 2, names[1], True)
            inplace = _argument(args, kwargs, 3, "inplace", False) if func is F.dropout else False
            if training and p > 0:
                return self.dropout(args[0] if args else kwargs["input"], p, inplace)
        elif func is F.scaled_dot_product_attention:
            p = _argument(args, kwargs, 4, "dropout_p", 0.0)
            if p > 0:
                return self.attention(args, kwargs, p)
        return func(*args, **kwargs)

    def dropout(self, x: torch.Tensor, p: float, inplace: bool = False) -> torch.Tensor:
        self.calls += 1
        mask = self.mask(tuple(x.shape), p).to(device=x.device, dtype=x.dtype)
        scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
        return x.mul_(mask).mul_(scale) if inplace else x * mask * scale

    def mask(self, shape: tuple, p: float) -> torch.Tensor:
        """1 where a value is kept; each row's real positions from its own generator, padding kept."""
        batch, length = len(self.generators), self.length
        if len(shape) == 3 and shape[0] == batch and shape[1] == length:
            axes = "hidden"
        elif len(shape) == 4 and shape[0] == batch and shape[2] == shape[3] == length:
            axes = "attention"
        else:
            raise UncontrolledRandomness(
                f"the text encoder applies dropout to a tensor of shape {list(shape)}: text dropout views support "
                f"dropout on hidden states [batch {batch}, tokens {length}, width] and attention probabilities "
                f"[batch, heads, {length}, {length}] only"
            )
        mask = torch.ones(shape)
        for row, (generator, real) in enumerate(zip(self.generators, self.real)):
            count = _count(real)
            if axes == "hidden":
                kept = torch.rand((count, shape[2]), generator=generator) >= p
                mask[row, real] = kept if isinstance(real, slice) else kept.float()
            else:
                kept = torch.rand((shape[1], count, count), generator=generator) >= p
                if isinstance(real, slice):
                    mask[row, :, real, real] = kept
                else:
                    mask[row][:, real[:, None], real[None, :]] = kept.float()
        return mask

    def attention(self, args: tuple, kwargs: dict, p: float) -> torch.Tensor:
        """scaled_dot_product_attention written out, with record dropout on the attention probabilities."""
        query, key, value = (_argument(args, kwargs, i, name, None) for i, name in enumerate(("query", "key", "value")))
        attn_mask = _argument(args, kwargs, 3, "attn_mask", None)
        if _argument(args, kwargs, 5, "is_causal", False) or query.shape[1] != key.shape[1]:
            raise UncontrolledRandomness(
                "the text encoder uses causal or grouped-query attention with dropout: not supported for dropout views"
            )
        scale = _argument(args, kwargs, 6, "scale", None)
        scores = query @ key.transpose(-2, -1) * (scale if scale is not None else 1.0 / math.sqrt(query.shape[-1]))
        if attn_mask is not None:
            scores = (
                scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
            )
        return self.dropout(torch.softmax(scores, dim=-1), p) @ value


def _positions(row: torch.Tensor):
    """A row's real positions: a slice when they are one run (right or left padding, the usual case: slices copy
    fast), else their indices."""
    real = row.nonzero().squeeze(1)
    if len(real) and int(real[-1]) - int(real[0]) + 1 == len(real):
        return slice(int(real[0]), int(real[-1]) + 1)
    return real


def _count(real) -> int:
    return real.stop - real.start if isinstance(real, slice) else len(real)


def global_random_state() -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states.extend(torch.cuda.get_rng_state_all())
    return states


def check_no_global_draws(before: list[torch.Tensor], model_name: str) -> None:
    """Refuse a forward that drew from torch's global streams: its views would depend on processing order."""
    after = global_random_state()
    if len(before) != len(after) or any(not torch.equal(a, b) for a, b in zip(before, after)):
        raise UncontrolledRandomness(
            f"text encoder {model_name} drew from the global random stream during a dropout view (randomness other "
            "than dropout, or dropout the views cannot see): its views could not be reproduced; use --no-view-text-dropout"
        )
