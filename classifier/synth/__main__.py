"""``python -m classifier.synth --out sheet.png``: write a contact sheet of generated samples."""

from __future__ import annotations

import argparse

from . import sample
from .sheet import contact_sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="synth_sheet.png")
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of each sample")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    samples = [sample(seed, size=(w, h)) for seed in range(args.start, args.start + args.count)]
    contact_sheet(samples).save(args.out)


if __name__ == "__main__":
    main()
