"""Prompt library: versioned templates in ``config/prompts/``.

A template is a markdown file with front matter (``id``, ``version``, ``stage``,
``description``) and two sections, ``<!-- system -->`` and ``<!-- user -->``, filled in with
``string.Template`` placeholders (``${input_json}``, ``${schema_json}``, ``${tags}``,
``${glossary}``, ``${symbol}``). Its content hash (SHA-256 of stage and body) is its real
version: every decision records template id, declared version and hash, and the hash is
part of the recording key, so a replay can never answer a changed prompt with an old
recording.

``prompts.lock.json`` beside the templates pins ``id@version -> hash`` for every released
version. Loading a template whose hash differs from its pinned one raises: its content
changed without a version bump. A version not pinned yet is allowed (it is being written)
and reported in ``PromptLibrary.unlocked``; ``write_lock`` pins it.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from domain.errors import PromptLibraryError
from ensemble.base import RenderedPrompt

LOCK_NAME = "prompts.lock.json"
_SECTION = re.compile(r"^<!--\s*(system|user)\s*-->\s*$", re.MULTILINE)
_REQUIRED = ("id", "version", "stage")
_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    id: str
    version: str
    stage: str
    description: str
    system: str
    user: str
    sha256: str
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def short_hash(self) -> str:
        return self.sha256[:16]

    def render(self, values: Mapping[str, str]) -> RenderedPrompt:
        """Fill the placeholders; a missing value is an error, never an empty string."""
        try:
            system = string.Template(self.system).substitute(values)
            user = string.Template(self.user).substitute(values)
        except (KeyError, ValueError) as exc:
            raise PromptLibraryError(f"template {self.ref} ({self.path}): cannot render: "
                                     f"missing or bad placeholder {exc}") from None
        return RenderedPrompt(self.id, self.version, self.short_hash, system, user)


def _parse(path: Path) -> PromptTemplate:
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    if not text.startswith("---\n"):
        raise PromptLibraryError(f"{path}: must start with '---' front matter")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise PromptLibraryError(f"{path}: front matter is not closed with '---'")
    meta: dict[str, str] = {}
    for line in text[4:end].splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PromptLibraryError(f"{path}: front matter line {line!r} is not 'key: value'")
        meta[key.strip()] = value.strip().strip('"').strip("'")
    missing = [k for k in _REQUIRED if not meta.get(k)]
    if missing:
        raise PromptLibraryError(f"{path}: front matter lacks {', '.join(missing)}")
    if not _ID.match(meta["id"]):
        raise PromptLibraryError(f"{path}: id {meta['id']!r} must be lowercase [a-z0-9_-]")
    if meta["stage"] not in ("research", "risk", "execution"):
        raise PromptLibraryError(f"{path}: stage {meta['stage']!r} is not research, risk "
                                 "or execution")
    body = text[end + 5:]
    parts = _SECTION.split(body)
    sections: dict[str, str] = {}
    for name, content in zip(parts[1::2], parts[2::2], strict=True):
        if name in sections:
            raise PromptLibraryError(f"{path}: section <!-- {name} --> appears twice")
        sections[name] = content.strip("\n")
    if set(sections) != {"system", "user"}:
        raise PromptLibraryError(f"{path}: needs <!-- system --> and <!-- user --> sections")
    digest = hashlib.sha256(f"stage:{meta['stage']}\n{body}".encode()).hexdigest()
    return PromptTemplate(meta["id"], meta["version"], meta["stage"],
                          meta.get("description", ""), sections["system"], sections["user"],
                          digest, path)


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


class PromptLibrary:
    def __init__(self, templates: Mapping[str, PromptTemplate],
                 unlocked: tuple[str, ...] = (), directory: Path | None = None) -> None:
        self._templates = dict(templates)  # ref -> template
        self.unlocked = unlocked
        self.directory = directory

    @classmethod
    def load(cls, directory: Path, *, require_lock: bool = False) -> PromptLibrary:
        """Load every ``*.md`` template; raise on a changed-without-bump template."""
        if not directory.is_dir():
            raise PromptLibraryError(f"prompts directory {directory} does not exist")
        lock_path = directory / LOCK_NAME
        lock: dict[str, str] = {}
        if lock_path.is_file():
            try:
                raw = json.loads(lock_path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise PromptLibraryError(f"{lock_path} is not valid JSON: {exc}") from None
            if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
                raise PromptLibraryError(f"{lock_path} must map 'id@version' to a sha256")
            lock = {str(k): str(v) for k, v in raw.items()}
        templates: dict[str, PromptTemplate] = {}
        unlocked: list[str] = []
        for path in sorted(directory.glob("*.md")):
            t = _parse(path)
            if t.ref in templates:
                raise PromptLibraryError(f"{path}: {t.ref} is also defined in "
                                         f"{templates[t.ref].path}")
            pinned = lock.get(t.ref)
            if pinned is not None and pinned != t.sha256:
                raise PromptLibraryError(
                    f"{path}: template {t.ref} changed without a version bump (content "
                    f"sha256 {t.sha256[:16]}, pinned {pinned[:16]} in {LOCK_NAME}); bump "
                    "'version' in its front matter, or restore the released text")
            if pinned is None:
                unlocked.append(t.ref)
            templates[t.ref] = t
        if require_lock and unlocked:
            raise PromptLibraryError(f"templates not pinned in {lock_path}: "
                                     f"{', '.join(unlocked)}")
        return cls(templates, tuple(unlocked), directory)

    def get(self, ref: str) -> PromptTemplate:
        """``id@version``, or ``id`` for its highest version."""
        if "@" in ref:
            if ref not in self._templates:
                raise PromptLibraryError(f"no prompt template {ref!r} "
                                         f"(have {', '.join(sorted(self._templates))})")
            return self._templates[ref]
        versions = [t for t in self._templates.values() if t.id == ref]
        if not versions:
            raise PromptLibraryError(f"no prompt template {ref!r} "
                                     f"(have {', '.join(sorted(self._templates))})")
        return max(versions, key=lambda t: _version_key(t.version))

    @property
    def templates(self) -> tuple[PromptTemplate, ...]:
        return tuple(self._templates.values())

    def lock_entries(self) -> dict[str, str]:
        return {ref: t.sha256 for ref, t in sorted(self._templates.items())}

    def write_lock(self, directory: Path | None = None) -> Path:
        """Pin every loaded version (existing pins are kept: released text never changes)."""
        target = (directory or self.directory or Path(".")) / LOCK_NAME
        existing: dict[str, str] = {}
        if target.is_file():
            existing = json.loads(target.read_text(encoding="utf-8"))
        existing.update(self.lock_entries())
        target.write_text(json.dumps(dict(sorted(existing.items())), indent=2) + "\n",
                          encoding="utf-8")
        return target
