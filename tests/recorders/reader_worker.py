"""Run as a separate process: query the lake through lab.connect() while a
recorder writes it; print one JSON line with what was seen."""

import json
import sys
import time


def main(lake: str, seconds: float) -> None:
    import lab

    counts, errors = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            con = lab.connect(lake)
            n = con.execute("SELECT count(*) FROM trades").fetchall()[0][0]
            q = con.execute("SELECT count(*) FROM quotes").fetchall()[0][0]
            counts.append([n, q])
            con.close()
        except Exception as e:  # noqa: BLE001 - reported to the test
            errors.append(f"{type(e).__name__}: {e}")
        time.sleep(0.3)
    print(json.dumps({"counts": counts, "errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
