"""What a consistency check found, in one shape for every stage.

Each stage's invariants (catalog: quarantine rate, mirror vs manifest; embeddings: vectors vs mirror
and model; index: index vs mirror and embeddings, readiness for generation) are plain functions that
read the tables and return a `Report`; `assets_pkg.checks` turns one into a Dagster check
result, so no stage carries its own report type or adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    """Problems in words (empty when all is well) and the facts behind them (counts, names, times).

    `serious` is False when every problem fixes itself on the next run (a warning, not an error).
    """

    problems: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    serious: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self, when_ok: str = "consistent") -> str:
        return "; ".join(self.problems) or when_ok
