"""Seconds per training epoch from the cache, against the same training step done the authors' way.

Ours: spp_scl.runs.train.trainer.train on a generated MVSA-Single-sized cache (3,611 train / 450 dev records, texts of 31
tokens on average, K = 4 layers of 768, maps 2048 x 7 x 7), the mvsa-single preset (batch 64, two-step).
The authors' way: BERT-base and ResNet-50 (random weights; timing does not depend on them) inside the step,
in train mode without gradients (frozen), texts padded to 202 tokens, and both encoders run again for the
second forward of the two-step rule; then the same heads and losses. Timed per iteration.
For a smoke test, --train-records / --dev-records shrink the cache and --authors-batch-size / --authors-length
the authors' batch (--authors-iterations 0 skips the authors' way); the defaults are the sizes above.

    .venv/bin/python -m bench.train_speed [--epochs 3] [--authors-iterations 1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.losses import inter_modal_supcon_loss
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.presets import resolve_config
from spp_scl.heads.training_step import step_one_losses
from spp_scl.runs.train.trainer import train


def time_ours(work: Path, epochs: int, fusion: str, train_records: int = 3611, dev_records: int = 450):
    """(seconds per epoch, iterations per epoch) of the trainer on a generated cache of the given sizes."""
    cache = work / f"synthetic-{train_records}-{dev_records}.h5"
    if not cache.exists():
        write_synthetic_cache(cache, {"train": train_records, "dev": dev_records}, mean_tokens=31.0)
    config = resolve_config("mvsa-single", epochs=epochs, fusion=fusion)
    result = train(cache, config, work / f"run-{fusion}", log=print)
    iterations = train_records // config.batch_size + (train_records % config.batch_size > 1)
    return result.seconds_per_epoch, iterations


def time_authors_way(iterations: int, batch_size: int = 64, length: int = 202) -> float:
    from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

    torch.manual_seed(0)
    bert, resnet = BertModel(BertConfig()), ResNetModel(ResNetConfig())
    for encoder in (bert, resnet):
        encoder.train().requires_grad_(False)  # frozen, but in train mode as in the authors' code
    config = resolve_config("mvsa-single")
    head = SPPSCLHead(config, 2048, 768, 4, 3).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr)
    input_ids = torch.randint(1000, 30000, (batch_size, length))
    mask = torch.zeros(batch_size, length, dtype=torch.bool)
    for row, real in enumerate(torch.randint(10, 60, (batch_size,))):
        mask[row, :real] = True
    pixels = torch.randn(batch_size, 3, 224, 224)
    labels = torch.randint(0, 3, (batch_size,))

    def forward():
        with torch.no_grad():
            hidden = bert(input_ids=input_ids, attention_mask=mask.long(), output_hidden_states=True).hidden_states
            states = torch.stack(hidden[9:13], dim=1)  # [B, 4, 202, 768]
            maps = resnet(pixel_values=pixels).last_hidden_state
        # The authors feed all 202 positions, pads included, to the LSTM: a full mask does the same work.
        return head(maps, states[:, :, 0], states, torch.ones_like(mask))

    timings = []
    for _ in range(iterations):
        start = time.perf_counter()
        outputs = forward()
        loss = sum(step_one_losses(outputs, labels, config).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        outputs = forward()  # step two: the same batch again, encoders included
        loss = inter_modal_supcon_loss(outputs["v"], outputs["t"], labels, config.temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--authors-iterations", type=int, default=1)
    parser.add_argument("--fusions", default="cmf-bank,cmf-batch")
    parser.add_argument("--train-records", type=int, default=3611, help="train records of the generated cache")
    parser.add_argument("--dev-records", type=int, default=450, help="dev records of the generated cache")
    parser.add_argument("--authors-batch-size", type=int, default=64, help="batch of the authors' way")
    parser.add_argument("--authors-length", type=int, default=202, help="padded text length of the authors' way")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        ours = {}
        for fusion in args.fusions.split(","):
            ours[fusion] = time_ours(work, args.epochs, fusion, args.train_records, args.dev_records)
        authors = (
            time_authors_way(args.authors_iterations, args.authors_batch_size, args.authors_length)
            if args.authors_iterations
            else None
        )
        print(f"\ntorch threads {torch.get_num_threads()}")
        for fusion, (epoch, iterations) in ours.items():
            per_iteration = epoch / iterations
            line = (
                f"ours ({fusion}): {epoch:.2f} s per epoch (dev evaluation included), {iterations} iterations, "
                f"{per_iteration * 1000:.0f} ms per iteration"
            )
            if authors is not None:
                line += (
                    f"; the authors' way: {authors:.1f} s per iteration -> {authors / per_iteration:.0f}x faster "
                    "per iteration"
                )
            print(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
