"""The notebooks' kernel (``python3`` in their metadata) runs this environment's
Python, where the lab is importable: what Jupyter Lab started from .venv uses."""

from __future__ import annotations

import sys

from jupyter_client.manager import start_new_kernel


def test_python3_kernel_runs_the_project_environment() -> None:
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        out: list[str] = []
        reply = kc.execute_interactive(
            "import sys, lab; print(sys.prefix); print(lab.__file__)",
            timeout=120, output_hook=lambda m: out.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        prefix, lab_file = "".join(out).split()
        assert prefix == sys.prefix
        import lab

        assert lab_file == lab.__file__
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
