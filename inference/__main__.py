"""Screen images offline, without Telegram: python -m inference [--json] [--lang en|ru|kk] PATH...

For health workers without connectivity and for evaluation. PATHs are image files or
folders (searched recursively). The plain output gives each image's result with the bot's
advice, in English, Russian or Kazakh; --json prints one JSON object per image, one per
line. Every image that decodes gets "probabilities" and "malignant_probability", even when
the gate refuses it and even when no lesion was found (then the photo's centre square is
classified and "lesion_box" is null), so the gate and the classifier can be judged apart;
"risk" stays "unassessable" when refused. Progress (for folders, in a terminal) and the
summary go to stderr, so stdout holds only the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from inference.advice import Advice, advise_result, paragraphs
from inference.classifier import ModelLoadError
from inference.decode import ACCEPTED_SUFFIXES
from inference.pipeline import Screener
from inference.texts import DEFAULT_LANGUAGE, LANGUAGES, Texts
from inference.types import DecodeRejected, ScreeningResult

IMAGE_SUFFIXES = ACCEPTED_SUFFIXES  # only formats that decode (no HEIC, no TIFF)
MAX_BYTES = 40 * 1024 * 1024
MAX_PIXELS = 50_000_000
# Exit codes: every path found and every image screened (a photo the gate refuses is a
# result too); something not screened (a path missing, a folder with no images, a file
# that is unreadable or not an image); the command itself is wrong (argparse's own code).
EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2
EPILOG = """\
exit status:
  0  every path was found and every image screened
  1  something was not screened: a path is missing, a folder holds no images, or a file
     is unreadable or not an image (everything else was still screened)
  2  wrong arguments, or the model could not be loaded
"""

Outcome = ScreeningResult | DecodeRejected | OSError


@dataclass
class Inputs:
    """What the paths given hold: images to screen, and paths that give nothing."""

    images: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    empty_folders: list[Path] = field(default_factory=list)
    folders: int = 0


def collect(paths: Iterable[Path]) -> Inputs:
    """Files as given, and image files found below folders, in a stable order."""
    inputs = Inputs()
    for path in paths:
        if path.is_dir():
            inputs.folders += 1
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                inputs.empty_folders.append(path)
            inputs.images += found
        elif path.exists():
            inputs.images.append(path)
        else:
            inputs.missing.append(path)
    return inputs


def to_record(
    path: Path, outcome: Outcome, model: str, advice: Advice | None = None
) -> dict[str, Any]:
    """One image's JSON record. "risk" is the model's own level (for evaluation); "advice"
    is what the person is told, after the policy (a cancer named lifts the level, a
    refused photo the classifier judged high says "cannot assess, see a doctor")."""
    record: dict[str, Any] = {"image": str(path), "model": model}
    if isinstance(outcome, OSError):
        record.update(
            quality={"ok": False, "issues": ["unreadable"]},
            probabilities=None,
            malignant_probability=None,
            risk="unassessable",
            lesion_box=None,
        )
    elif isinstance(outcome, DecodeRejected):
        record.update(
            quality={"ok": False, "issues": [outcome.reason.value]},
            probabilities=None,
            malignant_probability=None,
            risk="unassessable",
            lesion_box=None,
        )
    else:
        pred = outcome.prediction
        record.update(
            quality={
                "ok": outcome.quality.ok,
                "issues": [i.value for i in outcome.quality.issues],
                "tips": [i.value for i in outcome.quality.tips],
            },
            probabilities={k: round(v, 5) for k, v in pred.probabilities.items()} if pred else None,
            malignant_probability=round(pred.malignant_probability, 5) if pred else None,
            top_class=pred.top_class if pred else None,
            risk=outcome.risk.value,
            lesion_box=outcome.lesion_box.as_list() if outcome.lesion_box else None,
            ood_score=round(pred.ood_score, 2) if pred else None,
            width=outcome.width,
            height=outcome.height,
            elapsed_ms=round(outcome.elapsed_ms, 1),
        )
    if advice is not None:
        record["advice"] = {"level": advice.level.value, "action": advice.action.value}
    return record


def describe(
    record: dict[str, Any],
    outcome: Outcome,
    texts: Texts,
    class_names: dict[str, str],
    advice: Advice | None = None,
) -> str:
    """The plain output for one image: its path, then the bot's reply in ``texts``' language
    (as the bot words it, from the same advice policy; no probabilities: those are in the
    --json output)."""
    if isinstance(outcome, OSError):
        lines = [texts.text("cli.unreadable")]
    elif isinstance(outcome, DecodeRejected):
        key = f"rejected.{outcome.reason.value}"
        lines = [texts.text(key if texts.has(key) else "cli.unreadable")]
    elif advice is None:
        raise ValueError("a decoded image needs its advice")
    else:
        top = record["top_class"]
        name_key = f"lesion.{top}"
        name = texts.text(name_key) if texts.has(name_key) else class_names.get(top, top)
        text = "\n".join(paragraphs(advice, texts.text, lesion_name=name))
        lines = [line for line in text.splitlines() if line]
    return "\n".join([f"{record['image']}", *(f"  {line}" for line in lines), ""])


def summary(counts: Counter[str], inputs: Inputs, texts: Texts) -> str:
    """The closing lines (stderr): how many of each result, and what was not screened."""
    screened = sum(counts[risk] for risk in ("low", "medium", "high", "unassessable"))
    lines = [
        texts.text(
            "cli.summary",
            screened=screened,
            total=len(inputs.images),
            low=counts["low"],
            medium=counts["medium"],
            high=counts["high"],
            unassessable=counts["unassessable"],
        )
    ]
    if counts["not_screened"]:
        lines.append(texts.text("cli.not_screened", count=counts["not_screened"]))
    lines += [texts.text("cli.not_found", path=path) for path in inputs.missing]
    lines += [texts.text("cli.no_images", path=path) for path in inputs.empty_folders]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference",
        # The module's docstring without its first line (the usage, which argparse writes).
        description="Screen images offline, without Telegram.\n\n"
        + (__doc__ or "").split("\n\n", 1)[1],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="image files or folders"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
    parser.add_argument(
        "--lang",
        choices=LANGUAGES,
        default=DEFAULT_LANGUAGE,
        help="language of the plain output and the summary (default: %(default)s)",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="ONNX model (default: the shipped one)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="images screened at once (default: the number of CPUs, %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, progress_to: TextIO | None = None) -> int:
    """Run the CLI; ``progress_to`` overrides where the progress bar goes (default: stderr,
    and only when it is a terminal)."""
    args = parse_args(argv)
    texts = Texts(args.lang)
    try:
        screener = Screener(args.model, threads=1)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    meta = screener.metadata
    inputs = collect(args.paths)
    # Said at once, so a typo is seen before a long run, and again in the summary.
    for path in inputs.missing:
        print(texts.text("cli.not_found", path=path), file=sys.stderr)

    def screen(path: Path) -> tuple[Path, Outcome]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            return path, exc
        return path, screener.screen_bytes(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)

    bar_file = progress_to if progress_to is not None else sys.stderr
    show_bar = inputs.folders > 0 and (progress_to is not None or sys.stderr.isatty())
    counts: Counter[str] = Counter()
    # Threads, not processes: onnxruntime, OpenCV and numpy release the GIL for the heavy work.
    with (
        ThreadPoolExecutor(max(1, args.workers)) as pool,
        tqdm(total=len(inputs.images), file=bar_file, disable=not show_bar, unit="img") as bar,
    ):
        for path, outcome in pool.map(screen, inputs.images):
            advice = (
                advise_result(outcome, meta.thresholds.high)
                if isinstance(outcome, ScreeningResult)
                else None
            )
            record = to_record(path, outcome, meta.version, advice)
            # Counted by the level the plain output shows (after the advice policy).
            counts[advice.level.value if advice else "not_screened"] += 1
            line = (
                json.dumps(record, ensure_ascii=False)
                if args.json
                else describe(record, outcome, texts, meta.class_names, advice)
            )
            # Above the bar, which stays at the bottom of the terminal.
            bar.write(line, file=sys.stdout)
            sys.stdout.flush()
            bar.update()
    print(summary(counts, inputs, texts), file=sys.stderr)
    complete = not (inputs.missing or inputs.empty_folders or counts["not_screened"])
    return EXIT_OK if complete and inputs.images else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
