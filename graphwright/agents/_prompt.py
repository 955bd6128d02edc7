"""Prompt templates: jinja2 text, from a file with a version or inline.

A template file may start with a version comment, `{# version: 3 #}`; the
version and the SHA-256 of the text go into the run record with every model
call made from it (callback metadata `prompt_version` / `prompt_hash`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_VERSION = re.compile(r"\{#-?\s*version:\s*([^\s#]+)\s*-?#\}")


@dataclass(frozen=True)
class PromptTemplate:
    text: str
    source: str  # file path, or "inline"
    version: str | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @classmethod
    def inline(cls, text: str) -> PromptTemplate:
        m = _VERSION.search(text)
        return cls(text, "inline", m.group(1) if m else None)

    @classmethod
    def from_file(cls, path: str | Path, base_dir: Path | None = None) -> PromptTemplate:
        p = Path(path)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read prompt template {str(path)!r}: {exc}") from None
        m = _VERSION.search(text)
        return cls(text, str(path), m.group(1) if m else None)

    def render(self, variables: dict[str, Any]) -> str:
        return _compile(self.text).render(**variables).strip()

    def metadata(self) -> dict[str, Any]:
        """What a model call made from this template carries into the run record."""
        return {
            "prompt_source": self.source,
            "prompt_version": self.version,
            "prompt_hash": self.sha256[:16],
        }


_cache: dict[str, Any] = {}


def _compile(text: str) -> Any:
    template = _cache.get(text)
    if template is None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        # StrictUndefined: a misspelled channel fails loudly instead of
        # rendering as an empty string the model then answers.
        env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
        template = _cache[text] = env.from_string(text)
    return template


def load_prompt(
    inline: str | None, file: str | None, base_dir: Path | None, *, default: str | None = None
) -> PromptTemplate | None:
    if inline is not None and file is not None:
        raise ValueError("give either a template inline or a template file, not both")
    if file is not None:
        return PromptTemplate.from_file(file, base_dir)
    if inline is not None:
        return PromptTemplate.inline(inline)
    return PromptTemplate.inline(default) if default is not None else None
