"""A dataset: the cases a workflow is evaluated on, from JSONL, CSV or YAML.

Each case has an ``id`` (unique in the file), an ``input`` (what the workflow receives),
and optionally ``expected`` (what scorers compare the output with) and ``metadata``. A file
that cannot be used is one :class:`DatasetError` naming the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import yaml  # type: ignore[import-untyped]

from agtl.errors import AgtlError, InvalidArgumentError
from agtl.validation import type_name

__all__ = ["Case", "Dataset", "DatasetError"]

_KEYS: Final = frozenset({"id", "input", "expected", "metadata"})


class DatasetError(AgtlError, ValueError):
    """A dataset file that cannot be used: ``path``, ``line`` (1-based, when known), ``problem``."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = path if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {problem}")


@attrs.frozen
class Case:
    """One case: ``input`` for the workflow, ``expected`` for the scorers (``None``: none)."""

    id: str
    input: Any
    expected: Any = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Dataset:
    """Cases with distinct ids, in file order."""

    cases: tuple[Case, ...]
    name: str = "dataset"

    def __attrs_post_init__(self) -> None:
        seen: set[str] = set()
        for index, case in enumerate(self.cases):
            if not isinstance(case, Case):
                raise InvalidArgumentError(
                    f"cases[{index}]", f"must be an agtl.evals.Case, not {type_name(case)}"
                )
            if case.id in seen:
                raise InvalidArgumentError(f"cases[{index}]", f"a second case with id {case.id!r}")
            seen.add(case.id)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        """The cases of a ``.jsonl``, ``.csv`` or ``.yaml``/``.yml`` file."""
        file = Path(path)
        label = str(path)
        if not file.is_file():
            raise DatasetError(label, None, "no such file")
        suffix = file.suffix.lower()
        if suffix == ".jsonl":
            rows = _jsonl(file, label)
        elif suffix == ".csv":
            rows = _csv(file, label)
        elif suffix in (".yaml", ".yml"):
            rows = _yaml(file, label)
        else:
            raise DatasetError(label, None, "not a dataset: use .jsonl, .csv or .yaml")
        cases: list[Case] = []
        lines: dict[str, int | None] = {}
        for line, row in rows:
            case = _case(row, label, line)
            if case.id in lines:
                first = lines[case.id]
                also = "" if first is None else f" (first on line {first})"
                raise DatasetError(label, line, f"a second case with id {case.id!r}{also}")
            lines[case.id] = line
            cases.append(case)
        if not cases:
            raise DatasetError(label, None, "no cases in the file")
        return cls(tuple(cases), file.stem)


def _jsonl(file: Path, label: str) -> Iterator[tuple[int | None, Any]]:
    with file.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except ValueError as exc:
                raise DatasetError(label, number, f"not JSON ({exc})") from None


def _csv(file: Path, label: str) -> Iterator[tuple[int | None, Any]]:
    """Columns ``id``, ``input``, ``expected``; every other column goes to ``metadata``."""
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise DatasetError(label, 1, "the header has no 'id' column")
        if "input" not in reader.fieldnames:
            raise DatasetError(label, 1, "the header has no 'input' column")
        for row in reader:
            if None in row:
                raise DatasetError(label, reader.line_num, "more fields than the header names")
            data: dict[str, Any] = {"id": row["id"], "input": row["input"]}
            if row.get("expected") not in (None, ""):
                data["expected"] = row["expected"]
            extra = {k: v for k, v in row.items() if k not in _KEYS}
            if extra:
                data["metadata"] = extra
            yield reader.line_num, data


def _yaml(file: Path, label: str) -> Iterator[tuple[int | None, Any]]:
    """A list of cases, or a mapping with a ``cases`` list."""
    try:
        with file.open(encoding="utf-8") as handle:
            loaded = yaml.compose(handle, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        raise DatasetError(label, line, f"not YAML ({getattr(exc, 'problem', exc)})") from None
    if loaded is None:
        return
    node = loaded
    if isinstance(node, yaml.MappingNode):
        found = [value for key, value in node.value if key.value == "cases"]
        if not found:
            raise DatasetError(label, 1, "a mapping without a 'cases' list")
        node = found[0]
    if not isinstance(node, yaml.SequenceNode):
        raise DatasetError(label, node.start_mark.line + 1, "not a list of cases")
    for item in node.value:
        yield item.start_mark.line + 1, yaml.SafeLoader(yaml.serialize(item)).get_single_data()


def _case(row: Any, label: str, line: int | None) -> Case:
    if not isinstance(row, Mapping):
        raise DatasetError(label, line, f"a case must be an object, not {type_name(row)}")
    unknown = sorted(str(key) for key in row if key not in _KEYS)
    if unknown:
        raise DatasetError(
            label, line, f"unknown keys {unknown} (a case has id, input, expected, metadata)"
        )
    if "id" not in row:
        raise DatasetError(label, line, "the case has no 'id'")
    identifier = row["id"]
    if isinstance(identifier, bool) or not isinstance(identifier, str | int):
        raise DatasetError(label, line, f"'id' must be a string or a number, not {identifier!r}")
    if not str(identifier).strip():
        raise DatasetError(label, line, "'id' is empty")
    if "input" not in row:
        raise DatasetError(label, line, f"case {identifier!r} has no 'input'")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise DatasetError(label, line, f"'metadata' must be an object, not {type_name(metadata)}")
    return Case(str(identifier), row["input"], row.get("expected"), dict(metadata))


def cases_of(value: Dataset | Sequence[Case]) -> Dataset:
    """A ``run``'s dataset argument: a Dataset, or a list of cases."""
    if isinstance(value, Dataset):
        return value
    if isinstance(value, list | tuple):
        return Dataset(tuple(value))
    raise InvalidArgumentError(
        "dataset", f"must be an agtl.evals.Dataset or a list of Case, not {type_name(value)}"
    )
