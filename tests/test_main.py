import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(workdir, data_dir, *overrides):
    command = [sys.executable, "main.py", "--config=configs/original.py", f"--workdir={workdir}",
               f"--config.data.data_dir={data_dir}", "--config.data.resolution=32", "--config.data.class_scale=0.03",
               "--config.data.min_per_class=6", *overrides]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_main_builds_the_dataset_and_previews_then_reuses_them(tmp_path):
    result = run_main(tmp_path / "run", tmp_path / "tfds")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert summary["images_per_split"]["test"] == summary["images_per_split"]["test_attacked"]
    for name in summary["figures"]:
        assert (tmp_path / "run" / name).stat().st_size > 1000
    again = run_main(tmp_path / "run", tmp_path / "tfds")
    assert again.returncode == 0 and "Reusing dataset" in again.stderr


def test_a_typo_in_a_config_key_fails_at_start_naming_it(tmp_path):
    result = run_main(tmp_path / "run", tmp_path / "tfds", "--config.data.resolutoin=64")
    assert result.returncode != 0 and "resolutoin" in result.stderr
