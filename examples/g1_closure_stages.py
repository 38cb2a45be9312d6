"""Derive reach/grasp/lift/put down/release stages for g1_inspire_pick_can and write a sidecar stage file.

The right Inspire hand's closure (mean of observation.state[:, 20:26], about 1 = open)
drops while the can is held; :func:`probe.readers.closure_stages.closure_stages` turns that into five
segments per episode. Use the file with ``probe extract --stages file:g1_stages.csv``.
Any other dataset (another robot's state, hand keypoints) is refused in one line (exit 2): its
state[:, 20:26] is not the G1's right hand, and stages read from it would be wrong.

    .venv/bin/python examples/g1_closure_stages.py ../shared/data/g1_inspire_pick_can g1_stages.csv
"""

from __future__ import annotations

import argparse
import logging

from probe.readers.closure_stages import G1_RIGHT_HAND, closure_stage_table, open_g1_inspire
from probe.errors import ProbeError
from probe.readers.stage_files import STAGE_FILE, write_stage_file
from probe.validate import check_output_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="path of g1_inspire_pick_can (LeRobot v2.1)")
    parser.add_argument("out", help="sidecar file to write (.csv, .json or .parquet)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing stage file at OUT")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        check_output_path(args.out, args.overwrite, kind=STAGE_FILE)  # before reading every episode
        ds = open_g1_inspire(args.dataset)  # states only: every episode, no video needed
        segments = closure_stage_table(ds, G1_RIGHT_HAND)
        write_stage_file(segments, args.out, overwrite=args.overwrite)
    except ProbeError as exc:
        parser.exit(2, f"error: {exc}\n")
    lengths = (segments["end"] - segments["start"]).groupby(segments["stage"], sort=False).median()
    print(f"wrote {len(segments)} segments of {segments['episode'].nunique()} episodes to {args.out}")
    print("median frames per stage: " + ", ".join(f"{s} {int(n)}" for s, n in lengths.items()))


if __name__ == "__main__":
    main()
