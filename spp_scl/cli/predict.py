"""Label new image-text pairs with a trained run (its frozen encoders, then its head).

    spp-scl predict RUN_DIR --image photo.jpg --text "what a day"
    spp-scl predict RUN_DIR --pairs posts.jsonl --out predictions.csv
    spp-scl predict RUN_DIR --pairs texts.csv --images folder/      # rows with id, text: folder/<id>.jpg
    spp-scl predict RUN_42 RUN_43 RUN_44 --pairs posts.jsonl        # a seed ensemble: probabilities averaged

Pair files (.jsonl, .csv, or a .json list such as a CLMLF dev.json) hold `text` and `image` (a path, relative
to --images or the file's folder) or `id` (image `<id>.jpg` in --images, else the file's images/ subfolder,
else its folder). Output: one row per pair, in input order: id, prediction, probabilities; a pair that cannot be
scored (missing or undecodable image, empty text) gets a row with its error instead. JSON lines on stdout by
default; --out FILE.csv or FILE.jsonl writes a file (with a progress bar on stderr).
Exit status 0: all pairs predicted; 1: some pairs got an error row (the others were predicted); others below.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from spp_scl.core.errors import EXIT_PARTIAL, InputError

HELP = "label new image-text pairs with a trained run"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs",
        metavar="RUN_DIR",
        nargs="+",
        help="a run folder written by `spp-scl train`; several (e.g. seeds) make an ensemble whose class "
        "probabilities are averaged (same cache and classes)",
    )
    inputs = parser.add_argument_group("inputs: --image with --text, or --pairs")
    inputs.add_argument("--image", help="one image file")
    inputs.add_argument("--text", help="its text")
    inputs.add_argument("--id", help="the id written for the single pair (default: the image path)")
    inputs.add_argument("--pairs", help="a .jsonl, .csv or .json file of pairs")
    inputs.add_argument("--images", help="the folder image paths and <id>.jpg are relative to")
    parser.add_argument("--out", help="write to this .csv or .jsonl file instead of JSON lines on stdout")
    parser.add_argument("--text-encoder", help="default: where the run's config.json says it was loaded from")
    parser.add_argument(
        "--image-encoder",
        help="default: the transformers model the run's config.json records; a plugin (file.py:function) only as given "
        "here, with --trust-plugin",
    )
    parser.add_argument(
        "--trust-plugin",
        action="store_true",
        help="run the plugin image encoder given with --image-encoder (a plugin is code; a plugin recorded in a "
        "cache is never run without it, and its source must be the one the cache was made with)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per encoder forward (speed only)")
    parser.add_argument("--workers", type=int, default=2, help="image decoding threads")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if bool(args.pairs) == bool(args.image is not None or args.text is not None):
        args.parser.error("give either --image and --text (one pair) or --pairs FILE")
    if args.pairs is None and (args.image is None or args.text is None):
        args.parser.error("one pair needs both --image and --text")
    if args.batch_size < 1:
        args.parser.error("--batch-size must be positive")
    from spp_scl.core.extras import require

    require("transformers")  # the run's encoders
    from spp_scl.runs.predict.pair_files import Pair, ResultWriter, count_rows, read_pair_file
    from spp_scl.runs.predict.predictor import Predictor

    # Stdout carries the results: whatever loading an encoder prints (a plugin's banner, say) goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        predictor = Predictor(
            args.run_dirs,
            args.text_encoder,
            args.image_encoder,
            args.device,
            args.batch_size,
            args.workers,
            trust_plugin=args.trust_plugin,
        )
    try:
        if args.pairs:
            pairs, total = read_pair_file(args.pairs, args.images), count_rows(Path(args.pairs))
        else:
            pairs, total = [Pair(args.id or args.image, args.image, args.text)], 1
        writer = ResultWriter(args.out, predictor.class_names)
    except ValueError as error:
        raise InputError(str(error)) from None
    predicted = failed = 0
    try:
        # A progress bar only where it does not mix with the results (those go to a file) or for many pairs.
        progress = args.progress and (args.out is not None or not sys.stdout.isatty()) and total != 1
        for result in predictor.predict(pairs, progress=progress, total=total):
            writer.write(result)
            failed += result.error is not None
            predicted += result.error is None
    except ValueError as error:  # a pair file that turns out malformed as a whole (bad header, not a list)
        raise InputError(str(error)) from None
    finally:
        writer.close()
    if args.pairs:
        logger.info(
            f"{predicted} pairs predicted, {failed} with an error row"
            + (f"; written to {args.out}" if args.out else "")
        )
    return EXIT_PARTIAL if failed else 0
