"""The gateway stays lean: it never imports what it does not use, and logs the same without it."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, sys
from zygote.gateway.main import skip_unused_imports
skip_unused_imports()
from zygote.gateway.loop import Gateway
from zygote.logs import configure_logging
import structlog
configure_logging("gateway")
try:
    raise ValueError("boom")
except ValueError:
    structlog.get_logger().exception("gateway.failed")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "rich" and sys.modules[m] is not None)))
"""


def test_gateway_imports_no_rich_and_still_logs_tracebacks() -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-s", "-c", CODE], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    event = json.loads(done.stderr.strip().splitlines()[-1])
    assert event["event"] == "gateway.failed" and event["component"] == "gateway"
    assert event["exception"].startswith("Traceback") and event["exception"].endswith("ValueError: boom")
