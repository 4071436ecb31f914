"""`--output json` streamed: the same text as json.dumps(indent=2), and a report's size in memory
does not grow with the number of results while it is written."""

import io
import json
import os
import tracemalloc
from datetime import datetime, UTC

from sync import logs
from sync.jsonstream import Lazy, write


def dumped(value) -> str:
    out = io.StringIO()
    write(value, out)
    return out.getvalue()


def test_same_text_as_json_dumps():
    doc = {
        "results": [{"a": 1, "b": None, "c": [], "d": {}, "e": 'x\n"y"', "f": 1.5, "g": True}],
        "empty": [],
        "nested": [[1, [2, {}]], {"k": []}],
        3: "int key",
        None: "null key",
        "when": datetime(2026, 1, 2, tzinfo=UTC),
        "unicode": "é ✓",
    }
    assert dumped(doc) == json.dumps(doc, indent=2, default=str) + "\n"
    assert dumped([]) == "[]\n" and dumped("s") == '"s"\n'


def test_lazy_arrays_are_written_made_item_by_item_and_redacted():
    made = []
    lazy = Lazy(range(3), lambda i: made.append(i) or {"n": i, "url": "https://u:hunter2@h/x"})
    doc = logs.redact_document({"results": lazy, "summary": {"n": len(lazy)}})
    assert made == []  # nothing made before it is written
    assert json.loads(dumped(doc)) == {
        "results": [{"n": i, "url": logs.redact("https://u:hunter2@h/x")} for i in range(3)],
        "summary": {"n": 3},
    }
    assert "hunter2" not in dumped(doc)
    assert [r["n"] for r in doc["results"]] == [0, 1, 2] and len(doc["results"]) == 3  # a plain loop reads it too


def peak_while_written(n: int) -> int:
    doc = {
        "results": Lazy(
            range(n), lambda i: {"action": "push", "certificate": f"c{i:05d}", "detail": f"version 1, serial {i:040x}"}
        )
    }
    with open(os.devnull, "w") as sink:
        tracemalloc.start()
        try:
            write(logs.redact_document(doc), sink)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_memory_while_writing_does_not_grow_with_the_number_of_results():
    small, big = peak_while_written(1_000), peak_while_written(10_000)
    assert big < 2 * small, (small, big)
