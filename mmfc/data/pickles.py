"""Reading pickles without running their code: the one unpickler for every pickle mmfc reads.

A pickle names functions to call while it loads (`__reduce__`), so an ordinary pickle.load of
a downloaded file runs whatever it names. Pose pickles (PYSKL, MMAction2, PaddleVideo, and
stage 0's own) hold only dicts, lists, tuples, strings, numbers and numpy arrays, so the
unpickler here resolves only the globals that those need; any other global is refused before it
is called, with a DataError naming the file and the global.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from mmfc.errors import DataError

# numpy arrays, dtypes and scalars, under numpy 1 (numpy.core) and numpy 2 (numpy._core) names.
_NUMPY = {
    (f"{core}.{module}", name)
    for core in ("numpy.core", "numpy._core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
}
ALLOWED_GLOBALS = frozenset(_NUMPY | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol 2 carries bytes, an array's data among them
    ("collections", "OrderedDict"),
    *((builtins, name) for builtins in ("builtins", "__builtin__")  # __builtin__: Python 2 pickles
      for name in ("set", "frozenset", "bytearray", "complex", "slice")),
})


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.qualified = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(module, name)
        return super().find_class(module, name)


def load_pickle(path: str | Path):
    """The object in the pickle file `path`, built from plain containers, numbers, strings and
    numpy arrays only. DataError for any other global, and for a missing or damaged file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except FileNotFoundError:
        raise DataError(path, "no such pickle") from None
    except RefusedGlobal as exc:
        raise DataError(
            path, f"refused: the pickle asks for {exc.qualified}, and loading it could run code; mmfc loads only "
                  "plain containers, numbers, strings and numpy arrays from a pickle"
        ) from None
    except Exception as exc:  # a broken pickle raises anything from EOFError to ValueError
        raise DataError(path, f"not a readable pickle: {type(exc).__name__}: {exc}") from None
