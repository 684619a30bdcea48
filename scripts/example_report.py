"""Render the report for the doctor, and the chat reply, for one photo in one language.

    python scripts/example_report.py tests/data/pad/PAT_145_216_110.jpg "сол иық" \
        docs/figures/report_kk.png --lang kk

Screens the photo with the shipped model, then draws the report exactly as /report does
(bot.replies.Replies.report and bot.doctor_report.render_png) and prints the reply text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bot.db.models import Consultation, utc_now
from bot.doctor_report import render_png
from bot.replies import for_language
from bot.screening import Assessed
from inference.advice import advise
from inference.pipeline import Screener
from inference.types import Risk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("label")
    parser.add_argument("out", type=Path)
    parser.add_argument("--lang", default="kk", choices=("en", "ru", "kk"))
    args = parser.parse_args()
    rgb = np.ascontiguousarray(cv2.imread(str(args.photo))[..., ::-1])
    screener = Screener()
    result = screener.screen(rgb)
    if result.risk is Risk.UNASSESSABLE or result.prediction is None:
        raise SystemExit(f"not assessed: {result.quality.issues}")
    top = result.prediction.top_class
    level = advise(result.risk, top).level
    row = Consultation(
        risk=level.value, top_class=top, lesion_label=args.label, created_at=utc_now()
    )
    replies = for_language(args.lang)
    names = screener.metadata.class_names
    args.out.write_bytes(render_png(replies.report([row], made_at=utc_now(), type_names=names)))
    print(replies.outcome(Assessed(level, top, names.get(top, top), None)))


if __name__ == "__main__":
    main()
