"""Issue 22's training pieces: the MILK10k split, cancer as the endpoint, the three-source
sampler, cached crops and their views, warm start from the shipped ONNX, and the
sensitivity-bound thresholds."""

import csv
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from scipy.stats import norm

torch = pytest.importorskip("torch")

from inference.classifier import SHIPPED_MODEL, read_metadata  # noqa: E402
from inference.types import LesionBox  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.crops import BoxGeometry, cache_crop, view_from_cache  # noqa: E402
from training.data import CLASSES, MALIGNANT, Record  # noqa: E402
from training.metrics import sensitivity_specificity  # noqa: E402
from training.milk import CANCER_DIAGNOSES, MILK_TO_CLASS, read_milk, split_milk  # noqa: E402
from training.model import LesionNet  # noqa: E402
from training.thresholds import sensitivity_lower_bound_threshold  # noqa: E402
from training.train import (  # noqa: E402
    cancer_loss,
    draw_weights,
    effective_class_counts,
)
from training.warm_start import load_onnx_weights  # noqa: E402

MILK_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "milk10k"


def write_milk(root: Path, counts: dict[str, int]) -> Path:
    """A MILK10k-shaped metadata.csv (no images needed for the split)."""
    root.mkdir(parents=True, exist_ok=True)
    fields = ["file", "lesion_id", "diagnosis", "age_approx", "sex", "skin_tone_class", "site"]
    rows, n = [], 0
    for diagnosis, count in counts.items():
        for _ in range(count):
            rows.append(
                {
                    "file": f"ISIC_{n:07d}.jpg",
                    "lesion_id": f"IL_{n:07d}",
                    "diagnosis": diagnosis,
                    "age_approx": "55",
                    "sex": "female",
                    "skin_tone_class": str(n % 6),
                    "site": "trunk",
                }
            )
            n += 1
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_milk_split_is_by_lesion_stratified_and_reproducible(tmp_path: Path) -> None:
    counts = {"BCC": 100, "NV": 30, "MEL": 20, "SCCKA": 20, "AKIEC": 10, "INF": 5}
    photos = read_milk(write_milk(tmp_path, counts))
    splits = split_milk(photos, (0.6, 0.2, 0.2), seed=5)
    assert sum(len(v) for v in splits.values()) == len(photos)
    where = {p.lesion_id: name for name, ps in splits.items() for p in ps}
    assert all(where[p.lesion_id] == name for name, ps in splits.items() for p in ps)
    for diagnosis, n in counts.items():  # each diagnosis 60/20/20
        got = {name: sum(p.diagnosis == diagnosis for p in ps) for name, ps in splits.items()}
        assert got["val"] == round(n * 0.2) and got["test"] == round(n * 0.2), got
    assert split_milk(photos, (0.6, 0.2, 0.2), seed=5) == splits
    assert split_milk(photos, (0.6, 0.2, 0.2), seed=6) != splits


@pytest.mark.skipif(not MILK_DIR.exists(), reason="MILK10k not present")
def test_real_milk_split_is_pinned() -> None:
    """The shipped model's MILK10k split: changing the seed, fractions or grouping fails."""
    cfg = TrainConfig()
    splits = split_milk(read_milk(MILK_DIR), cfg.milk_split, cfg.seed)
    assert {k: len(v) for k, v in splits.items()} == {"train": 2396, "val": 799, "test": 799}
    assert sum(p.is_cancer for p in splits["test"]) == 529
    assert splits["test"][0].file == "ISIC_0091477.jpg"


def test_cancer_endpoint_leaves_actinic_keratosis_out() -> None:
    assert set(MALIGNANT) == {"bcc", "mel", "scc"}
    assert MILK_TO_CLASS["SCCKA"] == "scc" and MILK_TO_CLASS["AKIEC"] == "akiec"
    assert "AKIEC" not in CANCER_DIAGNOSES and "SCCKA" in CANCER_DIAGNOSES
    # scc is appended, so a seven-class model's logits keep their meaning.
    assert CLASSES[:7] == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def records(domain: str, labels: list[str]) -> list[Record]:
    return [
        Record(f"{domain}{i}", f"{domain}{i}", CLASSES.index(c), None, domain)
        for i, c in enumerate(labels)
    ]


def test_sampler_gives_each_source_its_share_and_milk_melanoma_its_weight() -> None:
    recs = (
        records("ham10000", ["nv"] * 80 + ["mel"] * 20)
        + records("pad", ["bcc"] * 10)
        + records("milk", ["bcc"] * 30 + ["mel"] * 5 + ["nv"] * 5)
    )
    cfg = TrainConfig(pad_share=0.2, milk_share=0.4, milk_mel_nv_weight=3.0)
    w = draw_weights(recs, cfg)
    domains = np.array([r.domain for r in recs])
    assert w.sum() == pytest.approx(1.0)
    assert w[domains == "pad"].sum() == pytest.approx(0.2)
    assert w[domains == "milk"].sum() == pytest.approx(0.4)
    milk = [i for i, r in enumerate(recs) if r.domain == "milk"]
    mel = [i for i in milk if recs[i].label == CLASSES.index("mel")]
    bcc = [i for i in milk if recs[i].label == CLASSES.index("bcc")]
    assert w[mel[0]] == pytest.approx(3.0 * w[bcc[0]])


def test_effective_counts_without_milk_are_the_two_source_formula() -> None:
    recs = records("ham10000", ["nv"] * 90 + ["mel"] * 10) + records("pad", ["bcc"] * 20)
    cfg = TrainConfig(pad_share=0.25)
    counts = effective_class_counts(recs, cfg)
    per_pad = 0.25 / 0.75 * 100 / 20
    assert counts[CLASSES.index("nv")] == pytest.approx(90)
    assert counts[CLASSES.index("bcc")] == pytest.approx(20 * per_pad)


def test_cancer_loss_is_the_log_loss_of_the_summed_malignant_probability() -> None:
    logits = torch.randn(6, len(CLASSES))
    y = torch.tensor([CLASSES.index(c) for c in ("mel", "nv", "scc", "akiec", "bcc", "bkl")])
    p = torch.softmax(logits, 1)
    mal = [CLASSES.index(c) for c in MALIGNANT]
    p_cancer = p[:, mal].sum(1)
    is_cancer = torch.tensor([True, False, True, False, True, False])
    nll = torch.where(is_cancer, -torch.log(p_cancer), -torch.log(1 - p_cancer))
    w = torch.where(is_cancer, 2.0, 1.0)
    expected = (w * nll).sum() / w.sum()
    assert float(cancer_loss(logits, y, 2.0)) == pytest.approx(float(expected), rel=1e-5)


def test_lower_bound_threshold_is_a_binomial_order_statistic() -> None:
    scores = np.arange(1, 101, dtype=float)  # 100 cancers
    bound = sensitivity_lower_bound_threshold(scores)
    # P(Bin(100, .05) >= 2) = 0.963 >= 0.95, P(>= 3) = 0.882: the 2nd-lowest score.
    assert bound.rank == 2 and bound.threshold == pytest.approx(2.0, rel=1e-4)
    assert (scores >= bound.threshold).sum() == 99  # the 2nd-lowest itself is flagged
    assert bound.confidence == pytest.approx(0.9629, abs=1e-3)
    few = sensitivity_lower_bound_threshold(np.arange(41, dtype=float))
    assert few.rank == 1 and few.confidence == pytest.approx(1 - 0.95**41)


def test_lower_bound_keeps_its_promise_on_new_cancers() -> None:
    """Over many validation draws, the true sensitivity at the cut-off is >= 95% in at
    least ~95% of them (the empirical 5th percentile manages about half)."""
    rng = np.random.default_rng(0)
    hits, naive_hits = 0, 0
    for _ in range(400):
        val = rng.normal(size=300)
        t = sensitivity_lower_bound_threshold(val).threshold
        naive = np.sort(val)[int(0.05 * 300)]
        hits += norm.sf(t) >= 0.95  # true sensitivity at the cut-off
        naive_hits += norm.sf(naive) >= 0.95
    assert hits / 400 >= 0.93
    assert naive_hits / 400 < 0.8


def test_rates() -> None:
    y = np.array([True, True, False, False])
    s = np.array([0.9, 0.2, 0.5, 0.1])
    assert sensitivity_specificity(y, s, 0.3) == (0.5, 0.5)


def test_warm_start_reproduces_the_shipped_model() -> None:
    """The shipped ONNX (BatchNorm folded, weights in float16) loads back exactly."""
    session = ort.InferenceSession(str(SHIPPED_MODEL), providers=["CPUExecutionProvider"])
    meta = read_metadata(session)
    net = LesionNet(len(CLASSES))
    missing = load_onnx_weights(net, SHIPPED_MODEL)
    assert len(missing) == len(CLASSES) - len(meta.classes)
    net.eval()
    x = np.random.default_rng(0).normal(0, 0.5, (2, 3, meta.input_size, meta.input_size))
    x = x.astype(np.float32)
    ref = session.run(["logits"], {"input": x})[0]
    with torch.no_grad():
        got = net(torch.from_numpy(x))[0].numpy()[:, : len(meta.classes)]
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_real_photo_cache_stays_inside_the_photo_and_views_keep_the_lesion() -> None:
    # A grey photo with a black disc filling much of it, as close-ups often do.
    img = np.full((200, 300, 3), 200, np.uint8)
    yy, xx = np.mgrid[0:200, 0:300]
    img[(xx - 150) ** 2 + (yy - 100) ** 2 < 45**2] = 0
    rng = np.random.default_rng(0)
    crop, geometry = cache_crop(img, LesionBox(100, 50, 200, 150), 112, rng, dermoscopy=False)
    assert crop.shape == (112, 112, 3)
    # The square shrank to the photo's height (200 px) instead of reaching past it with
    # made-up skin: the 100 px box is half of it.
    assert geometry.side == pytest.approx(56, abs=1)
    assert abs(geometry.cx - 56) < 2 and abs(geometry.cy - 56) < 2
    for _ in range(20):
        view = view_from_cache(crop, geometry, rng, 64, 0.0, (0.15, 0.7), dermoscopy=False)
        assert view.shape == (64, 64, 3)
        assert view[28:36, 28:36].mean() < 60  # the disc stays at the centre


def test_dermoscopy_cache_centres_the_box() -> None:
    img = np.full((150, 200, 3), 180, np.uint8)
    crop, geometry = cache_crop(
        img, LesionBox(80, 55, 120, 95), 100, np.random.default_rng(0), dermoscopy=True
    )
    assert crop.shape == (100, 100, 3)
    assert geometry == BoxGeometry(
        pytest.approx(50, abs=1), pytest.approx(50, abs=1), pytest.approx(100 / 2.7, abs=1)
    )


def test_same_spot_delta_takes_the_larger_spread_and_pairs_only_when_enough() -> None:
    from training.risk_calibrate import same_spot_threshold

    mirror = np.linspace(0, 0.1, 101)  # 95th percentile 0.095
    pairs = np.linspace(0, 0.3, 101)  # 0.285
    assert same_spot_threshold(mirror, pairs) == pytest.approx(0.285)
    assert same_spot_threshold(mirror, pairs[:40]) == pytest.approx(0.095)  # too few pairs
    assert same_spot_threshold(np.zeros(0), np.zeros(0)) is None


def test_mirrored_photos_keep_their_box_on_the_lesion() -> None:
    from training.domains import DomainSplit
    from training.evalsets import Photo
    from training.risk_calibrate import mirrored

    img = np.zeros((10, 20, 3), np.uint8)
    img[2:5, 1:4] = 255
    split = DomainSplit(
        "pad", [Photo(img, 0, LesionBox(1, 2, 4, 5))], np.zeros(1, bool), ["g"], ["l"], ["f"]
    )
    flipped = mirrored(split).photos[0]
    b = flipped.box
    assert (flipped.rgb[b.y0 : b.y1, b.x0 : b.x1] == 255).all()
    assert b == LesionBox(16, 2, 19, 5)


def test_shipped_risk_settings_are_what_calibration_wrote() -> None:
    """Change only by recalibrating (training.calibrate, then training.risk_calibrate):
    a hand edit of the model's cut-offs or same-spot variation shows up here."""
    from tests.shipped import shipped_metadata

    meta = shipped_metadata()
    assert meta.malignant_classes == ("bcc", "mel", "scc")
    assert meta.flip_average is True
    assert meta.thresholds.medium == pytest.approx(0.07100696002403321, rel=1e-9)
    assert meta.thresholds.high == pytest.approx(0.932834953648143, rel=1e-9)
    assert meta.same_spot_delta == pytest.approx(0.4865850123584032, rel=1e-9)
