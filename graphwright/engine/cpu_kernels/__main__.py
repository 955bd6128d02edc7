"""``python -m graphwright.engine.cpu_kernels``: build the CPU kernels now (``make setup`` runs it),
so that the first quantized request does not wait for the compiler."""

import time

from graphwright.engine.cpu_kernels import qmatmul


def main() -> None:
    t0 = time.perf_counter()
    if not qmatmul.available():
        print("graphwright CPU kernels: not built (see the warning above); torch's kernels will be used")
        return
    path = "AVX-512 VNNI" if qmatmul.has_vnni() else "portable (no AVX-512 VNNI on this CPU)"
    took = time.perf_counter() - t0
    print(f"graphwright CPU kernels: ready in {took:.1f} s, {path}, in {qmatmul.build_dir()}")


if __name__ == "__main__":
    main()
