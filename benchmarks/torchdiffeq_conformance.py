"""Run a torchdiffeq checkout's own test suite against nodezoo (``import nodezoo as torchdiffeq``).

    python benchmarks/torchdiffeq_conformance.py PATH                  # all of PATH/tests
    python benchmarks/torchdiffeq_conformance.py PATH -k event_tests   # tests whose id matches
    python benchmarks/torchdiffeq_conformance.py PATH -k TestGradient --where method=dopri5
    python benchmarks/torchdiffeq_conformance.py PATH --reference      # torchdiffeq itself

PATH is a checkout of https://github.com/rtqichen/torchdiffeq (its ``tests/`` folder is used;
nothing of it is copied into nodezoo). ``torchdiffeq`` is answered by nodezoo through
``sys.modules["torchdiffeq"] = nodezoo``; ``--reference`` runs the checkout's own torchdiffeq
package instead, for the baseline. Prints one PASS/FAIL/ERROR/SKIP line per test and
subtest, then a summary.
Subtests of torchdiffeq's fixed-step implicit methods (``implicit_euler``, ``gl4`` ...) are
counted apart (``nodezoo.solvers.implicit``; run them alone with ``--where method=gl4``).

``-k`` keeps tests whose id (``module.Class.test_name``) contains any of the given strings;
``--where key=value`` keeps only subtests with that parameter (others are reported SKIP without
running the solver: the shim raises ``unittest.SkipTest`` from the solve call).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import threading
import time
import traceback
import types
import unittest
import warnings
from pathlib import Path

TEST_MODULES = ("api_tests", "event_tests", "gradient_tests", "norm_tests", "odeint_tests")
IMPLICIT_METHODS = {
    "implicit_euler",
    "implicit_midpoint",
    "trapezoid",
    "radauIIA3",
    "gl4",
    "radauIIA5",
    "gl6",
    "sdirk2",
    "trbdf2",
}
ENTRY_POINTS = ("odeint", "odeint_adjoint", "odeint_event", "odeint_dense")

_current = threading.local()


def _install_subtest_tracker() -> None:
    """Remember the parameters of the subtest being run, for ``--where`` filtering."""
    original = unittest.TestCase.subTest

    @functools.wraps(original)
    def sub_test(self, msg=None, **params):
        _current.params = params
        return original(self, msg, **params) if msg is not None else original(self, **params)

    unittest.TestCase.subTest = sub_test


def _filtered_module(target, where: dict[str, str]) -> types.ModuleType:
    """A module forwarding to ``target`` whose solve calls skip subtests outside ``where``."""
    shim = types.ModuleType("torchdiffeq")

    def guard(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            params = getattr(_current, "params", {}) or {}
            for key, value in where.items():
                if key in params and str(params[key]) != value:
                    raise unittest.SkipTest(f"filtered out by --where {key}={value}")
            return fn(*args, **kwargs)

        return call

    for name in dir(target):
        if not name.startswith("__"):
            value = getattr(target, name)
            setattr(shim, name, guard(value) if name in ENTRY_POINTS else value)
    shim.__version__ = getattr(target, "__version__", "?")
    return shim


class _Recorder(unittest.TestResult):
    """Collects one outcome per subtest, and per test for tests without subtests."""

    def __init__(self, stream, verbose: bool):
        super().__init__()
        self.stream = stream
        self.verbose = verbose
        self.rows: list[tuple[str, str, str, str]] = []  # (outcome, test id, params, message)
        self._had_subtests: set[str] = set()

    def _emit(self, outcome: str, test_id: str, params: str, message: str = "") -> None:
        self.rows.append((outcome, test_id, params, message))
        line = f"{outcome:5s} {test_id}" + (f" [{params}]" if params else "")
        if message and (self.verbose or outcome != "PASS"):
            line += f"  -- {message}"
        print(line, file=self.stream, flush=True)

    @staticmethod
    def _message(err) -> str:
        exc_type, exc, _ = err
        text = f"{exc_type.__name__}: {exc}".replace("\n", " ")
        return text[:300]

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        self._had_subtests.add(test.id())
        params = ", ".join(f"{k}={v}" for k, v in subtest.params.items())
        if err is None:
            self._emit("PASS", test.id(), params)
        elif issubclass(err[0], unittest.SkipTest):
            self._emit("SKIP", test.id(), params, str(err[1]))
        else:
            kind = "FAIL" if issubclass(err[0], subtest.failureException) else "ERROR"
            self._emit(kind, test.id(), params, self._message(err))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if not isinstance(test, unittest.case._SubTest):
            self._emit("SKIP", test.id(), "", reason)

    def addSuccess(self, test):
        super().addSuccess(test)
        if test.id() not in self._had_subtests:
            self._emit("PASS", test.id(), "")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._emit("FAIL", test.id(), "(outside subtests)", self._message(err))

    def addError(self, test, err):
        super().addError(test, err)
        self._emit("ERROR", test.id(), "(outside subtests)", self._message(err))


def _is_implicit(params: str) -> bool:
    return any(f"method={m}" == p.strip() for p in params.split(",") for m in IMPLICIT_METHODS)


def run(path: Path, keep: list[str], where: dict[str, str], reference: bool, verbose: bool):
    tests_dir = path / "tests"
    if not (tests_dir / "problems.py").exists():
        raise SystemExit(f"{tests_dir} is not a torchdiffeq tests folder (no problems.py).")
    if reference:  # the checkout's own package (its main branch may be ahead of PyPI's)
        sys.path.insert(0, str(path))
        import torchdiffeq as target
    else:
        repo = Path(__file__).resolve().parents[1]
        sys.path.insert(0, str(repo))
        import nodezoo as target
    _install_subtest_tracker()
    sys.modules["torchdiffeq"] = _filtered_module(target, where) if where else target
    sys.path.insert(0, str(tests_dir))
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for name in TEST_MODULES:
        module = __import__(name)
        for test in _flatten(loader.loadTestsFromModule(module)):
            if not keep or any(k in test.id() for k in keep):
                suite.addTest(test)
    result = _Recorder(sys.stdout, verbose)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            suite.run(result)
        except Exception:  # a crash of the runner itself, not of a test
            traceback.print_exc()
    elapsed = time.perf_counter() - start
    _summary(result.rows, target, reference, elapsed)


def _flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def _summary(rows, target, reference: bool, elapsed: float) -> None:
    counted = [r for r in rows if not (r[0] == "SKIP" and "filtered out" in r[3])]
    implicit = [r for r in counted if _is_implicit(r[2])]
    others = [r for r in counted if not _is_implicit(r[2])]

    def tally(rs):
        out = {k: sum(1 for r in rs if r[0] == k) for k in ("PASS", "FAIL", "ERROR", "SKIP")}
        return out, len(rs)

    who = f"torchdiffeq {target.__version__}" if reference else f"nodezoo {target.__version__}"
    print()
    print(f"Summary ({who}, {elapsed:.0f} s)")
    for label, rs in (
        ("all", counted),
        ("without implicit methods", others),
        ("implicit", implicit),
    ):
        t, n = tally(rs)
        print(
            f"  {label:26s} {t['PASS']:5d} / {n:5d} passed"
            f"  (fail {t['FAIL']}, error {t['ERROR']}, skip {t['SKIP']})"
        )
    per_test: dict[str, list[int]] = {}
    for outcome, test_id, _params, _ in others:
        entry = per_test.setdefault(test_id, [0, 0])
        entry[0] += outcome == "PASS"
        entry[1] += 1
    print("  per test (without implicit methods):")
    for test_id, (passed, n) in per_test.items():
        print(f"    {passed:4d} / {n:4d}  {test_id}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("path", type=Path, help="a torchdiffeq checkout (with tests/)")
    p.add_argument("-k", action="append", default=[], help="keep test ids containing this")
    p.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE", help="keep these subtests"
    )
    p.add_argument("--reference", action="store_true", help="run PATH's own torchdiffeq")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    where = {}
    for item in args.where:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--where expects KEY=VALUE, got {item!r}")
        where[key] = value
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run(args.path.resolve(), args.k, where, args.reference, args.verbose)


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, line_buffering=True)
    main()
