"""Scenario files: the shipped ones load; bad ones fail naming the file, the key and the choices."""

from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.errors import ScenarioError
from lab.scenario import load_scenario


@pytest.mark.parametrize("path", sorted(p for p in SCENARIOS_DIR.rglob("*.toml") if not p.name.endswith(".matrix.toml")),
                         ids=lambda p: p.name)
def test_shipped_scenarios_load(path):
    sc = load_scenario(path)
    assert sc.name and sc.kernel.arch == "i386"


def test_default_scenario_values():
    sc = load_scenario(SCENARIOS_DIR / "i386-hibernate.toml")
    assert sc.flow.b_window == (0x100000, 0x1FFFFFF)
    assert sc.kernel.patches and sc.expect.verdict == "PASS"
    assert all(sc.quirks.values())


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, key, allowed",
    [
        ("[kernel]\nsauce = 'x'\n", "kernel.sauce", "arch, fragments"),
        ("[machine]\nname = 'pc-sparc'\n", "machine.name", "pc-virtio"),
        ("[quirks]\nwide-window = 'yes'\n", "quirks.wide-window", "true or false"),
        ("[quirks]\nno-such = true\n", "quirks.no-such", "crash-note"),
        ("[flow]\nb_window = ['0x100000']\n", "flow.b_window", "mem_min, mem_max"),
        ("[expect]\nverdict = 'MAYBE'\n", "expect.verdict", "TRIPLE_FAULT"),
        ("[bogus]\n", "bogus", "allowed: scenario"),
        ("[machine]\nmemory_mib = 99999\n", "machine.memory_mib", "128 to 3584"),
    ],
)
def test_bad_scenarios_name_file_key_and_choices(tmp_path, text, key, allowed):
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text))
    msg = str(exc.value)
    assert str(tmp_path / "s.toml") in msg and key in msg and allowed in msg


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path, "[kernel\n"))
