"""How well do the engine's reference-free quality fields predict the true quality of a track?

Reads an engine output built from the demo corpus (which the engine never scores against its
references) and the corpus's ground-truth references, then prints one JSON object: for every
separated track its true SI-SDR against the reference of its event, the Spearman rank correlation
of each quality field with it, the true SI-SDR of accepted versus rejected tracks, and the tracks
accepted per class.

    python benchmarks/quality_vs_truth.py demo-output/loop/round-1/tracks demo-output/corpus
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from datasets import Audio

from clearsep_data.audio import decode_flac, load_audio
from clearsep_data.metrics import si_sdr
from clearsep_data.ontology import mid_slug
from clearsep_data.tracks import load_tracks

FIELDS = ("re_sdr", "re_sisdr", "energy_ratio", "consistency_sisdr", "leakage_db")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (no ties expected in continuous scores)."""
    rank_x, rank_y = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def true_si_sdr(row: dict, corpus: Path) -> float:
    track, rate = decode_flac(row["audio"]["bytes"])
    reference = load_audio(corpus / "references" / row["clip_id"] / f"{mid_slug(row['label'])}.flac", rate)
    length = min(track.size, reference.size)
    return float(si_sdr(torch.from_numpy(reference[:length]).double(), torch.from_numpy(track[:length]).double()))


def summary(values: list[float]) -> dict:
    array = np.asarray(values)
    return {"count": int(array.size), "mean": float(array.mean()), "median": float(np.median(array))} if array.size else {"count": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", type=Path, help="Engine output folder (with a rejected split).")
    parser.add_argument("corpus", type=Path, help="The demo corpus it was built from.")
    args = parser.parse_args()
    rows = []
    for split in ("train", "rejected"):
        dataset = load_tracks(args.tracks, split).cast_column("audio", Audio(decode=False))
        for row in dataset:
            if row["origin"] == "separated":
                rows.append({**{field: row[field] for field in FIELDS}, "accepted": split == "train", "label_name": row["label_name"],
                             "true_si_sdr": true_si_sdr(row, args.corpus)})
    truth = np.array([row["true_si_sdr"] for row in rows])
    correlations = {field: spearman(np.array([row[field] for row in rows], dtype=float), truth) for field in FIELDS}
    correlations["-leakage_db"] = -correlations.pop("leakage_db")
    print(json.dumps({
        "tracks": args.tracks.as_posix(),
        "separated_tracks": len(rows),
        "spearman_with_true_si_sdr": correlations,
        "true_si_sdr_accepted": summary([row["true_si_sdr"] for row in rows if row["accepted"]]),
        "true_si_sdr_rejected": summary([row["true_si_sdr"] for row in rows if not row["accepted"]]),
        "accepted_per_class": dict(sorted(Counter(row["label_name"] for row in rows if row["accepted"]).items())),
        "rejected_per_class": dict(sorted(Counter(row["label_name"] for row in rows if not row["accepted"]).items())),
    }, indent=2))


if __name__ == "__main__":
    main()
