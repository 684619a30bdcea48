"""Check that a change to inference/ leaves the pipeline's decisions as they were.

    PYTHONPATH=. python scripts/compare_pipeline.py --ref main

Screens the validation photos with the ``inference`` package of git revision ``--ref``
(extracted to a temporary folder and run in a child process) and with the working tree's,
and compares photo by photo: the gate's outcome (the issues and the risk level) must be
the same, the lesion and crop boxes within ``--box-tolerance`` pixels, the probabilities
and the OOD score to ``--prob-tolerance``. Prints one Markdown table per photo set, lists
every photo that differs, and exits 1 when any does.

Photo sets (validation splits only; the test splits are not looked at here):

- ``pad-val``: the PAD-UFES-20 patient-grouped validation photos, real phone photos;
- ``ham-val``: the HAM10000 lesion-grouped validation images (dermoscopy);
- ``ham-val-phone``: the same images set into synthetic clear phone photos of up to
  1280 px (``training.evalsets.CLEAR_PHOTO``), the size the benchmark times.

The photos are loaded by the working tree's ``training`` code in both processes, one at a
time (the HAM split would not fit in memory at once), so both see the same pixels.
``--save``/``--baseline`` keep one side's results in a JSON file instead of recomputing it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

Record = dict[str, Any]


def photo_sets(limit: int) -> Iterator[tuple[str, str, np.ndarray]]:
    """(set, photo id, RGB) for every validation photo, streamed in a fixed order."""
    from training.config import TrainConfig
    from training.data import default_box, load_image, read_records, split_by_lesion
    from training.evalsets import CLEAR_PHOTO
    from training.pad import read_pad, split_by_patient
    from training.phone import compose_phone_photo, phone_camera

    cfg = TrainConfig.load(ROOT / "training" / "configs" / "lite0.json")
    pad_dir = (ROOT / cfg.pad_dir).resolve()
    ham_dir = (ROOT / cfg.data_dir).resolve()
    pad = split_by_patient(read_pad(pad_dir), cfg.pad_split, cfg.seed)["val"]
    for p in pad[:limit] if limit else pad:
        rgb = cv2.cvtColor(cv2.imread(str(pad_dir / "images" / p.file)), cv2.COLOR_BGR2RGB)
        yield "pad-val", p.file, np.ascontiguousarray(rgb)
    ham = split_by_lesion(read_records(ham_dir), cfg.split, cfg.seed)["val"]
    ham = ham[:limit] if limit else ham
    for r in ham:
        yield "ham-val", r.image_id, load_image(ham_dir, r.image_id)
    rng = np.random.default_rng(cfg.seed)  # as training.evalsets.domain_photos seeds it
    for r in ham:
        img = load_image(ham_dir, r.image_id)
        box = r.box or default_box(img.shape[1], img.shape[0])
        photo, pbox = compose_phone_photo(img, box, rng)
        lesion_px = max(pbox.width, pbox.height)
        yield "ham-val-phone", r.image_id, phone_camera(photo, rng, CLEAR_PHOTO, lesion_px)


def dump(limit: int) -> list[Record]:
    """Screen every photo with whichever ``inference`` package is first on the path."""
    import inference.pipeline
    from inference.pipeline import Screener

    print(f"screening with {Path(inference.pipeline.__file__).parent}", file=sys.stderr)
    screener = Screener(threads=1)
    out: list[Record] = []
    started = time.perf_counter()
    for name, photo_id, rgb in photo_sets(limit):
        r = screener.screen(rgb, with_overlay=False)
        pred = r.prediction
        out.append(
            {
                "set": name,
                "id": photo_id,
                "size": [r.width, r.height],
                "issues": [i.value for i in r.quality.issues],
                "risk": r.risk.value,
                "box": r.lesion_box.as_list() if r.lesion_box else None,
                "crop": r.crop_box.as_list() if r.crop_box else None,
                "probs": pred.probabilities if pred else None,
                "ood": pred.ood_score if pred else None,
                "evidence": r.evidence.as_dict(),
                "ms": r.elapsed_ms,
            }
        )
    print(f"{len(out)} photos in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out


def dump_ref(ref: str, limit: int) -> list[Record]:
    """Run :func:`dump` in a child process with ``ref``'s inference/ package."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(  # noqa: S603  # git on our own repository
            ["git", "archive", ref, "inference"],  # noqa: S607  # git from PATH, as a developer runs it
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        out = Path(tmp) / "ref.json"
        # The reference's inference/ first, the working tree's training/ after it.
        env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}"}
        subprocess.run(  # noqa: S603  # our own interpreter and script
            [sys.executable, __file__, "--limit", str(limit), "--save", str(out), "--dump-only"],
            cwd=tmp,
            env=env,
            check=True,
        )
        loaded: list[Record] = json.loads(out.read_text())
        return loaded


def _box_diff(a: list[int] | None, b: list[int] | None) -> float:
    if a is None or b is None:
        return 0.0 if a is b else math.inf
    return float(max(abs(x - y) for x, y in zip(a, b, strict=True)))


def _prob_diff(a: dict[str, float] | None, b: dict[str, float] | None) -> float:
    if a is None or b is None:
        return 0.0 if a is b else math.inf
    return max(abs(a[k] - b[k]) for k in a)


def compare(ref: list[Record], new: list[Record], box_tol: float, prob_tol: float) -> bool:
    if [(r["set"], r["id"]) for r in ref] != [(r["set"], r["id"]) for r in new]:
        raise SystemExit("the two runs screened different photos")
    rows: dict[str, dict[str, Any]] = {}
    bad: list[str] = []
    for a, b in zip(ref, new, strict=True):
        row = rows.setdefault(
            a["set"],
            {"n": 0, "gate": 0, "box": 0, "box_max": 0.0, "prob_max": 0.0, "ood_max": 0.0}
            | {"evidence": 0, "probs": 0, "ms_ref": [], "ms_new": []},
        )
        row["ms_ref"].append(a.get("ms", math.nan))
        row["ms_new"].append(b.get("ms", math.nan))
        row["n"] += 1
        same_gate = a["issues"] == b["issues"] and a["risk"] == b["risk"]
        box = max(_box_diff(a["box"], b["box"]), _box_diff(a["crop"], b["crop"]))
        prob = _prob_diff(a["probs"], b["probs"])
        ood = abs(a["ood"] - b["ood"]) if a["ood"] is not None and b["ood"] is not None else 0.0
        row["gate"] += same_gate
        # Bit for bit: which photos got any other number at all (NaN equal to NaN).
        row["evidence"] += any(
            not (x == y or (math.isnan(x) and math.isnan(y)))
            for x, y in zip(a["evidence"].values(), b["evidence"].values(), strict=True)
        )
        row["probs"] += prob > 0
        row["box"] += box > 0
        row["box_max"] = max(row["box_max"], box)
        row["prob_max"] = max(row["prob_max"], prob)
        row["ood_max"] = max(row["ood_max"], ood / max(1.0, abs(a["ood"] or 0.0)))
        if not same_gate or box > box_tol or prob > prob_tol:
            bad.append(
                f"- {a['set']} {a['id']}: issues {a['issues']} -> {b['issues']}, "
                f"risk {a['risk']} -> {b['risk']}, box {a['box']} -> {b['box']}, "
                f"crop {a['crop']} -> {b['crop']}, max |dp| {prob:.2g}"
            )
    print(
        "| photos | n | same gate outcome | box moved | max box shift px | any gate evidence "
        "changed | probabilities changed | max abs dp | max rel dOOD | median screen() ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ms = f"{np.median(r['ms_ref']):.1f} -> {np.median(r['ms_new']):.1f}"
        print(
            f"| {name} | {r['n']} | {r['gate']} | {r['box']} | {r['box_max']:.0f} "
            f"| {r['evidence']} | {r['probs']} | {r['prob_max']:.1e} | {r['ood_max']:.1e} "
            f"| {ms} |"
        )
    print(
        f"\nTolerances: box {box_tol:.0f} px, probabilities {prob_tol:.0e}. Times are wall "
        "clock, each side in its own process one after the other (a shared machine's load "
        "moves them; scripts/benchmark.py is the measurement)."
    )
    if bad:
        print(f"\n{len(bad)} photos differ beyond them:")
        print("\n".join(bad))
    else:
        print("Every photo: the same gate outcome, boxes and probabilities within them.")
    return not bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="main", help="git revision to compare against")
    parser.add_argument("--baseline", type=Path, help="compare against this saved run instead")
    parser.add_argument("--save", type=Path, help="save the working tree's run here")
    parser.add_argument("--dump-only", action="store_true", help="screen and save, no compare")
    parser.add_argument("--limit", type=int, default=0, help="photos per set (0: all)")
    parser.add_argument("--box-tolerance", type=float, default=2.0)
    parser.add_argument("--prob-tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    new = dump(args.limit)
    if args.save:
        args.save.write_text(json.dumps(new))
    if args.dump_only:
        return
    if args.baseline:
        ref: list[Record] = json.loads(args.baseline.read_text())
    else:
        ref = dump_ref(args.ref, args.limit)
    ok = compare(ref, new, args.box_tolerance, args.prob_tolerance)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
