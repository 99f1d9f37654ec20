"""A writer or a maintainer process on the S3 lake ``$LAB_LAKE`` (tests/cluster/test_objectstore_tiers.py).

``python s3_tiers_worker.py write NAME BATCHES ROWS``: appends ``BATCHES`` batches of ``ROWS`` trades
(ids ``NAME-batch-i``, each batch's times descending: files for compaction to sort), one JSON line
per commit (``s3_writer.main``). ``python s3_tiers_worker.py maintain UNTIL_FILE``:
``maintain("trades", min_files=2)`` passes until ``UNTIL_FILE`` exists, one JSON line per pass.
"""

from __future__ import annotations

import json
import os
import sys

from lab.lake import Lake
from tests.cluster.s3_writer import main as write


def maintain(until: str) -> None:
    lake = Lake()
    passes = 0
    while not os.path.exists(until) or passes == 0:
        if lake.exists("trades"):
            info = lake.maintain("trades", min_files=2)["trades"]
            print(json.dumps({"pass": passes, "compacted": info.get("compacted")}, default=str), flush=True)
            passes += 1


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), descending=True)
    else:
        maintain(sys.argv[2])
