"""Write PNG grids of the dataset: one example per class (paper Fig. 4), one image under every remedy (Fig. 5).

    python scripts/show_dataset.py --config=configs/original.py --out=runs/preview
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from xaijax import data, remedies  # noqa: E402
from xaijax.data import preview  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/original.py", "Case config (dataset settings).")
_OUT = flags.DEFINE_string("out", "runs/preview", "Folder for the PNG files.")


def write_previews(config, out: str) -> list[str]:
    os.makedirs(out, exist_ok=True)
    splits = data.load_splits(config.data, splits=("train", "test"))
    classes_png = os.path.join(out, "dataset_classes.png")
    preview.class_grid(splits["train"], classes_png, per_class=2,
                       title=f"{config.data.name}, {config.data.resolution} px, overlays: {config.data.overlay_mode}")
    test = splits["test"]
    index = int(preview.first_of_each_class(test)[0])
    image, mask = test["image"][index : index + 1], test["mask"][index : index + 1]
    panels = {"clean (truth)": test["clean"][index], "original": image[0]}
    for name in ("blur", "crop", "black_stripe"):
        panels[name] = remedies.apply(name, image)[0]
    panels["telea (mask)"] = remedies.apply("telea", image, mask, region="mask")[0]
    remedies_png = os.path.join(out, "dataset_remedies.png")
    preview.image_row(panels, remedies_png, title="one test image under every remedy")
    return [classes_png, remedies_png]


def main(argv):
    del argv
    for path in write_previews(_CONFIG.value, _OUT.value):
        print(path)


if __name__ == "__main__":
    app.run(main)
