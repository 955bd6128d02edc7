"""Keep secrets out of errors and records.

Providers register the API keys they use; `scrub` replaces them (and the values
of environment variables whose names look secret) wherever text leaves a
provider: error messages, attempt lists, usage records. Servers do echo keys
back (OpenAI's 401 names part of the key), so scrubbing the text is needed on
top of never writing the settings.
"""

from __future__ import annotations

import os
import re
import threading

SECRET_NAME = re.compile(r"(api[_-]?key|secret|token|password|passwd|credential|auth)", re.I)
_MIN_LEN = 6  # shorter values would scrub ordinary words

_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    if value and len(value) >= _MIN_LEN:
        with _lock:
            _known.add(value)


def _env_secrets() -> set[str]:
    return {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= _MIN_LEN}


def scrub(text: str) -> str:
    """`text` with every known secret (and any 8+ character tail of one) replaced by ***."""
    with _lock:
        secrets = _known | _env_secrets()
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
        # masked echoes such as "sk-abc***wxyz" still carry part of the key
        if len(secret) >= 16:
            text = text.replace(secret[-8:], "***").replace(secret[:8], "***")
    return text
