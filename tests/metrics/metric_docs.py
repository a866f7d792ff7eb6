"""The README's "Metrics" table, read as data, so tests check what arrives against what is documented."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent
README = ROOT / "README.md"
MAPPING = ROOT / "deploy" / "statsd-exporter-mapping.yaml"
STATSD_TYPES = {"counter": "c", "gauge": "g", "timer": "ms"}


@dataclass(frozen=True)
class DocumentedMetric:
    name: str
    type: str
    unit: str
    tags: tuple[str, ...]
    legacy: str

    @property
    def statsd_type(self) -> str:
        return STATSD_TYPES[self.type]

    def legacy_pattern(self, prefix: str = "") -> re.Pattern[str]:
        """The legacy name with each tag value as one dot-free component."""
        return re.compile(re.escape(prefix + self.name) + r"\.[^.]+" * len(self.tags) + "$")


def documented_metrics() -> list[DocumentedMetric]:
    text = README.read_text()
    section = text[text.index("## Metrics") :]
    section = section[: section.index("\n## ", 1)]
    metrics = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`dag_processing.zygote."):
            tags = tuple(tag.strip(" `") for tag in cells[3].split(",") if tag.strip())
            metrics.append(DocumentedMetric(cells[0].strip("`"), cells[1], cells[2], tags, cells[4].strip("`")))
    return metrics
