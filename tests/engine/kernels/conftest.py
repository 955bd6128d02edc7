"""Kernel tests run on the Triton interpreter when there is no GPU.

``TRITON_INTERPRET`` is read when a kernel is decorated, so it must be set before any kernel
module is imported: conftest files are imported before the test modules of their directory.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
