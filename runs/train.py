"""Train the SPP-SCL heads from a feature cache, select on dev, evaluate on test, write a run folder.

    python runs/train.py --cache cache/files/mvsa-single.h5 --preset mvsa-single
    python runs/train.py --cache ... --preset mvsa-single --faithful          # the paper's batch-attention CMF
    python runs/train.py --cache ... --preset hfm --theta 0.5 --ce-weight 10 --two-step false --epochs 50

Every field of heads.config.SPPSCLConfig is an option (--tau is --temperature, lambda is --ce-weight).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from heads.config import PRESETS, SPPSCLConfig, resolve_config  # noqa: E402


def _parser_for(kind):
    def parse(text: str):
        if text.lower() in ("none", "null") and type(None) in typing.get_args(kind):
            return None
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        if base is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        if typing.get_origin(base) is tuple:
            return tuple(float(part) for part in text.split(","))
        return base(text)

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, help="a cache file written by extract/run.py")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="the paper's hyper-parameters for a dataset")
    parser.add_argument(
        "--faithful",
        action="store_true",
        help="the paper-faithful variant: CMF attends over the batch (fusion cmf-batch)",
    )
    parser.add_argument("--out", help="run folder (default runs/out/<cache name>/<preset>-<fusion>-seed<seed>)")
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    fields = parser.add_argument_group("config fields (default: the preset's, else the paper's MVSA-Single values)")
    hints = typing.get_type_hints(SPPSCLConfig)
    for field in dataclasses.fields(SPPSCLConfig):
        if field.name == "preset":
            continue
        fields.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            type=_parser_for(hints[field.name]),
            default=argparse.SUPPRESS,
            metavar=hints[field.name].__name__.upper() if isinstance(hints[field.name], type) else "VALUE",
            help=f"default {field.default!r}",
        )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    cache, preset, faithful = args.pop("cache"), args.pop("preset"), args.pop("faithful")
    out, mixed_precision, cpu = args.pop("out"), args.pop("mixed_precision"), args.pop("cpu")
    try:
        config = resolve_config(preset, faithful=faithful, **args)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    if not Path(cache).is_file():
        parser.error(f"--cache {cache}: no such file")
    from runs.trainer import train

    run_dir = (
        Path(out)
        if out
        else (
            Path("runs/out")
            / Path(cache).stem
            / f"{preset or 'custom'}-{config.fusion if config.head == 'spp-scl' else config.head}-seed{config.seed}"
        )
    )
    result = train(cache, config, run_dir, mixed_precision=mixed_precision, cpu=cpu)
    for split in ("dev", "test"):
        if split in result.metrics:
            m = result.metrics[split]
            print(
                f"{split}: accuracy {m['accuracy']:.4f}  weighted F1 {m['f1_weighted']:.4f}  "
                f"macro F1 {m['f1_macro']:.4f}"
            )
    print(
        f"selected epoch {result.selected_epoch} of {result.epochs_run} ({result.seconds_per_epoch:.1f} s per "
        f"epoch); run folder {result.run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
