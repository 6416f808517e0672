"""The pytest plugin, as a kernel developer uses it: a test file of their own, run by
pytest with the kjlab fixtures, against a real resumed kernel A (pytester, real QEMU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.cache import cache_root

# The lab's cache as this pytest sees it at import, before pytester gives the test a HOME
# of its own (the inner pytest must find the kernels already built).
LAB_CACHE = cache_root()

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    """The example test file of the README, as a reader copies it."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```python\n# test_my_change.py\n") + len("```python\n")
    return text[start:text.index("```", start)]


USER_TESTS = readme_example() + '''

def test_a_check_that_fails(kjlab_resumed):
    out, status = kjlab_resumed.guest.run("test -e /no-such-file")
    assert status == 0, out
'''


def test_the_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures")
    result.stdout.fnmatch_lines(["*kjlab_scenario*", "*kjlab_resumed*"])


def test_a_developers_own_checks_on_a_resumed_kernel(pytester: pytest.Pytester, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KJLAB_CACHE", str(LAB_CACHE))
    pytester.makepyfile(test_mine=USER_TESTS)
    runs = tmp_path / "runs"
    result = pytester.runpytest_subprocess("-q", "--kjlab-scenario", str(SCENARIOS_DIR / "i386-hibernate.toml"),
                                           "--kjlab-runs-dir", str(runs), timeout=3600)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*run directory: *"])  # the failing test points at its run
    dirs = sorted(p for p in runs.iterdir() if p.is_dir())
    assert len(dirs) == 2
    for run_dir in dirs:
        res = json.loads((run_dir / "results.json").read_text())
        assert res["verdict"] == "PASS", (res["reason"], res["evidence"])
        (user,) = [s for s in res["steps"] if s["name"] == "user-checks"]
        assert user["commands"] and (run_dir / "report.html").is_file()
        assert res["memory"]["round_trip"]["proven"]
