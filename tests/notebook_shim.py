"""Run a Databricks source-format notebook cell by cell on a local SparkSession.

A notebook in source format is a ``.py`` file whose first line is ``# Databricks notebook
source``; cells are separated by ``# COMMAND ----------``; a cell whose lines all start with
``# MAGIC`` is a magic cell (``%md`` text, ``%sql`` a query). This module stands in for the
little of the notebook runtime our notebooks use: ``dbutils.widgets`` (``text``, ``dropdown``,
``get``; values given by the test override the widgets' defaults) and ``display`` (which runs
what it is given, as the notebook UI would, and keeps it). ``%md`` cells are skipped, ``%sql``
cells run through ``spark.sql`` and are displayed, anything else magic is refused.

Example:
    >>> cells = parse_notebook_text("# Databricks notebook source\\nx = 1\\n"
    ...                             "# COMMAND ----------\\n# MAGIC %md\\n# MAGIC # Title\\n")
    >>> [(c.kind, c.source.strip()) for c in cells]
    [('python', 'x = 1'), ('md', '# Title')]
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"


@dataclass(frozen=True)
class Cell:
    """One cell: ``kind`` is ``python`` or the magic's name (``md``, ``sql``, ...)."""

    index: int
    kind: str
    source: str


class NotebookCellError(AssertionError):
    """A cell raised; the message names the notebook and the cell and shows its source."""


def parse_notebook_text(text: str) -> list[Cell]:
    """The cells of a notebook's source text (empty cells left out)."""
    lines = text.splitlines()
    if not lines or lines[0].rstrip() != HEADER:
        raise ValueError(f"not a Databricks notebook: the first line is not {HEADER!r}")
    chunks: list[list[str]] = [[]]
    for line in lines[1:]:
        if line.rstrip() == SEPARATOR:
            chunks.append([])
        else:
            chunks[-1].append(line)
    cells: list[Cell] = []
    for chunk in chunks:
        body = [ln for ln in chunk if ln.strip()]
        if not body:
            continue
        if all(ln.startswith(MAGIC) for ln in body):
            magic = [ln[len(MAGIC) :].removeprefix(" ") for ln in chunk if ln.startswith(MAGIC)]
            first = magic[0].strip()
            if not first.startswith("%"):
                raise ValueError(f"a MAGIC cell must start with %<language>, got {first!r}")
            kind, _, rest = first[1:].partition(" ")
            source = "\n".join([rest, *magic[1:]]).strip("\n")
            cells.append(Cell(len(cells), kind, source + "\n"))
        else:
            cells.append(Cell(len(cells), "python", "\n".join(chunk).strip("\n") + "\n"))
    return cells


def parse_notebook(path: Path) -> list[Cell]:
    """The cells of the notebook at ``path``."""
    return parse_notebook_text(path.read_text(encoding="utf-8"))


class Widgets:
    """``dbutils.widgets``: each widget needs a default; ``values`` override defaults by name."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.defaults: dict[str, str] = {}

    def _define(self, name: str, default: str) -> None:
        if not isinstance(default, str):
            raise TypeError(f"widget {name!r}: the default must be a string, got {default!r}")
        self.defaults[name] = default

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:
        self._define(name, defaultValue)

    def dropdown(
        self,
        name: str,
        defaultValue: str,
        choices: Sequence[str],
        label: str | None = None,
    ) -> None:
        if defaultValue not in choices:
            raise ValueError(f"widget {name!r}: default {defaultValue!r} not in {list(choices)}")
        if name in self.values and self.values[name] not in choices:
            raise ValueError(f"widget {name!r}: value {self.values[name]!r} not in {choices}")
        self._define(name, defaultValue)

    def get(self, name: str) -> str:
        if name not in self.defaults:
            raise KeyError(f"widget {name!r} is not defined (define it before get)")
        return self.values.get(name, self.defaults[name])

    def removeAll(self) -> None:
        self.defaults.clear()


class DBUtils:
    """The ``dbutils`` of a notebook, as far as our notebooks use it."""

    def __init__(self, widgets: Widgets) -> None:
        self.widgets = widgets


@dataclass
class Displayed:
    """What one ``display`` call showed: the first rows, as a list of dicts."""

    cell: int
    rows: list[dict[str, Any]]


def _rows(obj: Any, limit: int) -> list[dict[str, Any]]:
    if hasattr(obj, "limit") and hasattr(obj, "toArrow"):  # a Spark DataFrame: run it
        return list(obj.limit(limit).toArrow().to_pylist())
    if hasattr(obj, "to_pylist"):  # Arrow
        return list(obj.slice(0, limit).to_pylist())
    if hasattr(obj, "to_dict") and hasattr(obj, "head"):  # pandas
        return list(obj.head(limit).to_dict("records"))
    return [{"value": obj}]


@dataclass
class NotebookRun:
    """A finished run: the namespace the cells left, and everything displayed."""

    path: Path
    cells: list[Cell]
    namespace: dict[str, Any]
    widgets: Widgets
    displayed: list[Displayed] = field(default_factory=list)


def run_notebook(
    path: Path, spark: Any, *, widgets: Mapping[str, str] | None = None, display_rows: int = 20
) -> NotebookRun:
    """Execute every cell of ``path`` in order, as Databricks would, against ``spark``."""
    cells = parse_notebook(path)
    run = NotebookRun(path, cells, {}, Widgets(widgets))
    current = [0]

    def display(obj: Any, *args: Any, **kwargs: Any) -> None:
        run.displayed.append(Displayed(current[0], _rows(obj, display_rows)))

    run.namespace.update(
        {
            "__name__": "__main__",
            "spark": spark,
            "dbutils": DBUtils(run.widgets),
            "display": display,
        }
    )
    for cell in cells:
        current[0] = cell.index
        try:
            if cell.kind == "python":
                exec(compile(cell.source, f"{path}#cell{cell.index}", "exec"), run.namespace)
            elif cell.kind == "sql":
                display(spark.sql(cell.source))
            elif cell.kind != "md":
                raise NotImplementedError(f"magic %{cell.kind} cells do not run outside Databricks")
        except Exception as exc:
            raise NotebookCellError(
                f"{path.name}, cell {cell.index} ({cell.kind}) raised "
                f"{type(exc).__name__}: {exc}\n--- cell source ---\n{cell.source}"
                f"--- traceback ---\n{traceback.format_exc()}"
            ) from exc
    unused = sorted(set(run.widgets.values) - set(run.widgets.defaults))
    if unused:
        raise NotebookCellError(f"{path.name}: values for widgets it does not define: {unused}")
    return run
