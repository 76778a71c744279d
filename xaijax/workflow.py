"""The workflow, stage by stage; each stage writes into the workdir and is skipped when its output is there.

Stages so far: dataset (build or reuse; a summary and preview figures), remedy. Training, explanation and the
report join as their issues land.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import logging

from xaijax import data, remedies
from xaijax.data import CLASS_NAMES, preview


def write_json(path: str, payload: dict) -> None:
    """Write then rename, so a run killed mid-write never leaves a half file that a rerun would trust."""
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(partial, path)


def describe(data_config) -> str:
    return f"{data_config.name}, {data_config.resolution} px, overlays: {data_config.overlay_mode}"


def dataset_stage(config, workdir: str) -> dict[str, dict[str, np.ndarray]]:
    """Build (or reuse) the dataset; write dataset.json and the preview PNGs once."""
    start = time.time()
    splits = data.load_splits(config.data)
    summary_path = os.path.join(workdir, "dataset.json")
    if not os.path.exists(summary_path):
        figures = preview.write_previews(splits, workdir, describe(config.data))
        write_json(summary_path, {
            "dataset": describe(config.data),
            "seconds_to_build_or_load": round(time.time() - start, 2),
            "images_per_split": {name: int(len(s["label"])) for name, s in splits.items()},
            "images_per_class": {name: int(sum(np.sum(s["label"] == k) for n, s in splits.items()
                                               if n in ("train", "validation", "test")))
                                 for k, name in enumerate(CLASS_NAMES)},
            "figures": [os.path.basename(f) for f in figures],
        })
    logging.info("dataset: %s", {name: len(s["label"]) for name, s in splits.items()})
    return splits


def remedy_stage(config, splits: dict, workdir: str) -> dict[str, dict[str, np.ndarray]]:
    """Apply the case's remedy to the images of every split (cached in remedied_images.npz).

    Every other key (clean image, masks, labels) is kept, so later stages can still measure relevance on
    the overlay's pixels after the overlay was removed.
    """
    path = os.path.join(workdir, "remedied_images.npz")
    if os.path.exists(path):
        with np.load(path) as cached:
            return {name: {**split, "image": cached[name]} for name, split in splits.items()}
    remedied = {}
    for name, split in splits.items():
        remedied[name] = remedies.apply(config.remedy.name, split["image"], split["mask"], config.remedy.region)
    partial = path + ".partial.npz"
    np.savez(partial, **remedied)
    os.replace(partial, path)
    return {name: {**split, "image": remedied[name]} for name, split in splits.items()}


def run(config, workdir: str) -> None:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    splits = dataset_stage(config, workdir)
    remedy_stage(config, splits, workdir)
    logging.info("done: %s", workdir)
