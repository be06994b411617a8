"""Record and replay provider answers.

In ``record`` mode every answer a model gives is stored under the SHA-256 of (provider,
model, template reference and hash, rendered prompt); in ``replay`` mode the ensemble
answers from the store instead of the network, which is deterministic and free. A prompt
with no recording is reported (an abstention with reason "no recording"), never invented.

Storage is a directory of small JSON files, ``<root>/<key[:2]>/<key>.json``, written
atomically (temp file + rename) so a crash mid-write leaves no half record, readable with
any tool, and easy to diff or commit as a fixture. No timestamps are stored: recording
the same answers twice produces identical files.

A call that failed is recorded too (``outcome`` ``error`` or ``timeout``, with its error
class and message), and so is an answer that arrived after its decision's deadline
(``late``): a replay then journals the same ``provider_calls`` rows as the recorded run
(the error, the timeout and its ``late`` row), not only the same decisions. Recordings
made before these fields existed read as answers (``outcome`` ``ok``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


def request_key(provider: str, model: str, template_ref: str, template_hash: str,
                prompt_text: str) -> str:
    """SHA-256 over the length-prefixed UTF-8 parts (unambiguous, no escaping pass)."""
    h = hashlib.sha256()
    for part in (provider, model, template_ref, template_hash, prompt_text):
        data = part.encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Recording:
    key: str
    provider: str
    model: str
    template_ref: str
    template_hash: str
    prompt: str
    raw_text: str
    tokens_in: int
    tokens_out: int
    latency_ms: float
    truncated: bool = False
    late: bool = False  # arrived after its decision's deadline: replayed as a timeout
    unusable: str | None = None  # the API said it is no vote (``Completion.unusable``)
    outcome: str = "ok"  # ok | error | timeout (the call failed: no answer)
    error_class: str | None = None
    error: str | None = None


class RecordingStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not a recording key: {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Recording | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return Recording(**data)

    def put(self, rec: Recording) -> None:
        path = self._path(rec.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(asdict(rec), indent=1, sort_keys=True, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("??/*.json")):
            yield path.stem

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())
