"""Benchmark B1: does the data path starve the model? Train-stage epoch time / pure compute time.

    python benchmarks/b1_data_path.py                      # params.yaml's train recipe, 5 rounds
    python benchmarks/b1_data_path.py --workers 0,1 --rounds 7 --json b1.json

On the default data (built once by the real download/split/augment/cache stages in --data), for
each DataLoader worker count it builds the train stage's run (workflow.training.loop.build_run: the same
model, method, loaders, optimizer and schedule as `fit`) and alternates, --rounds times:

  stage epoch   train_one_epoch over the real loader: cached uint8 images, the augmentation
                pipeline per sample, uint8 batches, normalisation on the device;
  compute       train_one_epoch over the same number of batches, made beforehand as ready
                normalised tensors on the device, with no loader at all.

The ratio of the medians is B1 (target <= 1.05). For context it also times the data path this
pipeline had before the cache (each image file decoded every epoch, the whole albumentations
pipeline with Normalize per sample, per-sample float tensors collated by the DataLoader).
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from common import ROOT, build_data, load_dataset, markdown, median, seconds, write_json


class _Silent:
    def update(self, _):
        pass


def decode_every_epoch_loader(data, run, hyper):
    """The pre-cache data path, for comparison: files decoded per sample, every epoch."""
    import torch

    from workflow.data.images import load_rgb
    from workflow.data.transforms import load_pipeline

    pipeline, _ = load_pipeline(data.pipelines, "train", seed=hyper.seed)

    class FileImages(torch.utils.data.Dataset):
        def __init__(self):
            self.paths, self.labels = list(data.train["path"]), data.labels(data.train)

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            image = pipeline(image=load_rgb(data.raw / self.paths[i]))["image"]
            return torch.from_numpy(image.transpose(2, 0, 1).copy()), int(self.labels[i])

    loader = torch.utils.data.DataLoader(FileImages(), batch_size=hyper.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    assert len(loader) == len(run.train_loader)
    return loader


def measure(data, workers: int, rounds: int, legacy: bool) -> dict:
    import torch

    from workflow.config import load_sections
    from workflow.recipe import Recipe
    from workflow.training.loop import build_run, train_one_epoch
    from workflow.training.runtime import Compute

    sections = load_sections("model", "lora", "train")
    recipe = Recipe.from_sections(sections["model"], sections["lora"], sections["train"])
    run = build_run(recipe, data, sections["train"].model_copy(update={"num_workers": workers}))
    step = lambda loader, compute: train_one_epoch(  # noqa: E731
        replace(run, train_loader=loader, compute=compute), _Silent())
    ready = [(run.compute.inputs(pixels), labels) for pixels, labels in run.train_loader]
    pure = Compute(run.compute.device, prepare=lambda pixels: pixels, precision=run.compute.precision)
    old = decode_every_epoch_loader(data, run, recipe.train) if legacy else None
    step(run.train_loader, run.compute)  # warm-up: allocator, worker start, first-touch of the cache
    times = {"stage": [], "compute": [], "decode every epoch": []}
    for _ in range(rounds):
        times["stage"].append(seconds(lambda: step(run.train_loader, run.compute)))
        times["compute"].append(seconds(lambda: step(ready, pure)))
        if old is not None:
            times["decode every epoch"].append(seconds(lambda: step(old, Compute(run.compute.device))))
    row = {"num_workers": workers, "batches": len(ready), "stage epoch s": median(times["stage"]),
           "compute epoch s": median(times["compute"]), "threads": torch.get_num_threads()}
    row["stage / compute"] = row["stage epoch s"] / row["compute epoch s"]
    if old is not None:
        row["decode-every-epoch s"] = median(times["decode every epoch"])
        row["decode-every-epoch / compute"] = row["decode-every-epoch s"] / row["compute epoch s"]
    row["all"] = times
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="0,1", help="DataLoader worker counts to measure, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed epochs per variant")
    parser.add_argument("--data", type=Path, default=None, help="folder for the built data (default: a temp one)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    folder = args.data or Path(tempfile.mkdtemp(prefix="b1-"))
    data = load_dataset(build_data(folder))
    rows = [measure(data, int(w), args.rounds, legacy=i == 0) for i, w in enumerate(args.workers.split(","))]
    print("\nB1: train-stage epoch / pure compute epoch (median of", args.rounds, "alternating rounds; target <= 1.05)\n")
    print(markdown(rows, ["num_workers", "batches", "threads", "stage epoch s", "compute epoch s", "stage / compute",
                          "decode-every-epoch s", "decode-every-epoch / compute"]))
    write_json(args.json, {"benchmark": "B1", "params": str(ROOT / "params.yaml"), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
