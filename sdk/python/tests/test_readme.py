"""The README's quick start, copied into a fresh directory and run against a live broker with the
Python this SDK is installed in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import Broker

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quick_start(shared_broker: Broker) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 2, "README.md has the asyncio quick start and the sync one"
    with tempfile.TemporaryDirectory() as d:
        outputs = []
        for i, block in enumerate(blocks):
            path = Path(d) / f"quickstart{i}.py"
            path.write_text(block)
            out = subprocess.run(
                [sys.executable, str(path)],
                cwd=d,
                env={**os.environ, "GREGORMQ_SERVER": shared_broker.addr},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            outputs.append(out.stdout)
    assert re.fullmatch(r"offset \d+: hello, world\n", outputs[0]), outputs[0]
    assert re.fullmatch(r"offset \d+: hello again\n", outputs[1]), outputs[1]
