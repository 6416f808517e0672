"""Input that could escape a directory, reach apt as an option, break a sources list or
stall a run is refused when the file is loaded, naming the file, the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab import debian_archive as debian
from lab.errors import ScenarioError, UserError
from lab.matrix import load_matrix
from lab.scenario import load_scenario, scenario_from_dict


def scenario(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, key, allowed", [
    ('[scenario]\nname = "../../etc"\n', "scenario.name", "A-Z a-z 0-9"),
    ('[scenario]\nname = "a/b"\n', "scenario.name", "A-Z a-z 0-9"),
    ('[scenario]\nname = ".."\n', "scenario.name", "starting with a letter or digit"),
    ('[scenario]\nname = "two words"\n', "scenario.name", "A-Z a-z 0-9"),
    ('[scenario]\nname = "a,b"\n', "scenario.name", "A-Z a-z 0-9"),
    ('[scenario]\nname = ""\n', "scenario.name", "1 to 81"),
    (f'[scenario]\nname = "{"x" * 82}"\n', "scenario.name", "1 to 81"),
    ("[flow]\ntimeouts = { boot = inf }\n", "flow.timeouts.boot", "finite number of seconds above 0"),
    ("[flow]\ntimeouts = { boot = nan }\n", "flow.timeouts.boot", "finite"),
    ("[flow]\ntimeouts = { boot = 0 }\n", "flow.timeouts.boot", "above 0"),
    ("[flow]\ntimeouts = { save = -5 }\n", "flow.timeouts.save", "above 0"),
    ("[flow]\ntimeouts = { jump = true }\n", "flow.timeouts.jump", "above 0"),
    ("[flow]\ntimeouts = { jump = '60' }\n", "flow.timeouts.jump", "above 0"),
    ("[flow]\ntimeouts = { boooot = 60 }\n", "flow.timeouts.boooot", "boot, command, load, save, jump, power-off"),
    ("[flow]\ntimeouts = 60\n", "flow.timeouts", "boot"),
    ('[flow]\na_append = "quiet\\nrm -rf /"\n', "flow.a_append", "no newline"),
    ('[guest]\nextra_packages = ["-oAPT::Get::Trivial-Only=false"]\n', "guest.extra_packages[0]", "Debian package name"),
    ('[guest]\nextra_packages = ["strace", "gdb vim"]\n', "guest.extra_packages[1]", "Debian package name"),
    ('[guest]\nextra_packages = ["Strace"]\n', "guest.extra_packages[0]", "lower-case"),
    ('[kernel]\nsource = "debian:linux-source-6.1@bookworm\\ndeb http://evil/ sid main"\n', "kernel.source",
     "newline"),
    ('[kernel]\nsource = "debian:linux-source-6.1@Bookworm"\n', "kernel.source", "Debian suite name"),
    ('[kernel]\nsource = "debian:linux-source-6.1@sid main"\n', "kernel.source", "Debian suite name"),
    ('[kernel]\nsource = "debian:-olinux"\n', "kernel.source", "Debian package name"),
    ('[kernel]\nsource = "ftp:somewhere"\n', "kernel.source", "'debian:PACKAGE[@SUITE]'"),
])
def test_bad_values_are_refused(tmp_path: Path, text: str, key: str, allowed: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(scenario(tmp_path, text))
    msg = str(exc.value)
    assert str(tmp_path / "s.toml") in msg and f": {key}: " in msg and allowed in msg, msg
    assert exc.value.key == key


def test_free_text_stays_free(tmp_path: Path) -> None:
    sc = load_scenario(scenario(tmp_path, '[flow]\na_append = "quiet foo=\'a b\' $x;y"\n'
                                          'after_resume_command = "echo 1\\necho 2; ls | wc -l"\n'
                                          'timeouts = { boot = 30, save = 1.5 }\n'
                                          '[kernel]\nsource = "debian:linux-source-6.12@trixie"\n'
                                          '[guest]\nextra_packages = ["strace", "libc6-i386", "g++-12"]\n'))
    assert sc.flow.a_append == "quiet foo='a b' $x;y" and "\n" in sc.flow.after_resume_command
    assert sc.flow.timeouts == {"boot": 30.0, "save": 1.5}
    assert sc.guest.extra_packages == ("strace", "libc6-i386", "g++-12")


MATRIX = """
[matrix]
name = "m"
machines = ["pc-virtio"]
{matrix}

[[kernel]]
name = "6.1"
source = "debian:linux-source-6.1"
{kernels}

[[patchset]]
name = "fixes"
patches = []
{patchsets}
"""


def matrix(tmp_path: Path, matrix: str = "", kernels: str = "", patchsets: str = "") -> Path:
    p = tmp_path / "m.matrix.toml"
    p.write_text(MATRIX.format(matrix=matrix, kernels=kernels, patchsets=patchsets))
    return p


@pytest.mark.parametrize("kw, key, allowed", [
    ({"kernels": '[[kernel]]\nname = "6.1"\nsource = "debian:linux-source-6.12@trixie"\n'}, "kernel[1].name",
     "already the name of kernel[0]"),
    ({"patchsets": '[[patchset]]\nname = "fixes"\npatches = []\n'}, "patchset[1].name",
     "already the name of patchset[0]"),
    ({"matrix": 'machines = ["pc-virtio", "pc-virtio"]'}, "matrix", "duplicate cell id '6.1/i386/pc-virtio/hibernate/fixes'"),
    ({"matrix": 'flows = ["hibernate", "hibernate"]'}, "matrix", "duplicate cell id"),
    ({"kernels": '[[kernel]]\nname = "6.1/x"\nsource = "debian:linux-source-6.1"\n'}, "kernel[1].name", "A-Z a-z"),
    ({"kernels": '[[kernel]]\nname = ".."\nsource = "debian:linux-source-6.1"\n'}, "kernel[1].name", "A-Z a-z"),
    ({"patchsets": '[[patchset]]\nname = "a b"\npatches = []\n'}, "patchset[1].name", "A-Z a-z"),
    ({"kernels": '[[kernel]]\nname = "k"\nsource = "debian:linux-source-6.1@sid\\nx"\n'}, "kernel[1].source", "newline"),
    ({"kernels": '[[kernel]]\nname = "k"\nsource = "debian:-oAPT::X=1"\n'}, "kernel[1].source", "Debian package name"),
    ({"matrix": "cell_timeout = inf"}, "matrix.cell_timeout", "finite number of seconds above 0"),
    ({"matrix": "cell_timeout = 0"}, "matrix.cell_timeout", "above 0"),
    ({"matrix": "cell_timeout = -1"}, "matrix.cell_timeout", "above 0"),
    ({"matrix": "cell_timeout = nan"}, "matrix.cell_timeout", "finite"),
    ({"matrix": 'flow_machines = { swsusp = ["pc-virtio"] }'}, "matrix.flow_machines.swsusp", "not one of matrix.flows"),
    ({"matrix": 'flows = ["hibernate", "swsusp"]\nflow_machines = { swsusp = ["pc-ide"] }'},
     "matrix.flow_machines.swsusp[0]", "'pc-ide' is not one of matrix.machines"),
    ({"matrix": 'flows = ["hibernate", "swsusp"]\nflow_machines = { swsusp = [] }'}, "matrix.flow_machines.swsusp",
     "non-empty list"),
    ({"matrix": 'flows = ["swsusp"]\nflow_machines = ["pc-virtio"]'}, "matrix.flow_machines", "must be a table"),
    ({"matrix": "parallel = -1"}, "matrix.parallel", "1 to 256, or 0 for the number of cores"),
    ({"matrix": "parallel = 2.5"}, "matrix.parallel", "whole number"),
    ({"matrix": "parallel = true"}, "matrix.parallel", "whole number"),
    ({"matrix": 'parallel = "4"'}, "matrix.parallel", "whole number"),
])
def test_bad_matrices_are_refused(tmp_path: Path, kw: dict[str, str], key: str, allowed: str) -> None:
    path = matrix(tmp_path, **kw)
    if kw.get("matrix", "").startswith("machines"):  # replace the default machines line
        path.write_text(path.read_text().replace('machines = ["pc-virtio"]\n', "", 1))
    with pytest.raises(ScenarioError) as exc:
        load_matrix(path)
    msg = str(exc.value)
    assert str(path) in msg and f": {key}: " in msg and allowed in msg, msg


def test_a_flow_runs_only_on_its_machines(tmp_path: Path) -> None:
    path = matrix(tmp_path, matrix='flows = ["hibernate", "swsusp"]\nflow_machines = { swsusp = ["pc-virtio"] }')
    path.write_text(path.read_text().replace('machines = ["pc-virtio"]', 'machines = ["pc-virtio", "pc-ide"]', 1))
    assert [c.id for c in load_matrix(path).cells] == [
        "6.1/i386/pc-virtio/hibernate/fixes", "6.1/i386/pc-virtio/swsusp/fixes", "6.1/i386/pc-ide/hibernate/fixes"]


def test_matrix_name_and_cell_override_values_are_checked(tmp_path: Path) -> None:
    bad_name = matrix(tmp_path)
    bad_name.write_text(bad_name.read_text().replace('name = "m"', 'name = "../nights"', 1))
    with pytest.raises(ScenarioError, match="matrix.name"):
        load_matrix(bad_name)
    override = matrix(tmp_path, patchsets='[[override]]\ncells = "*"\nflow = { timeouts = { boot = 0 } }\n')
    with pytest.raises(ScenarioError) as exc:
        load_matrix(override)
    assert "(cell 6.1/i386/pc-virtio/hibernate/fixes)" in str(exc.value)
    assert exc.value.key == "flow.timeouts.boot"


def test_slug_collisions_are_duplicate_cells(tmp_path: Path) -> None:
    """Two ids that make the same file names: 'k' + 'p_i386...' and 'k_i386...' + 'p'."""
    path = matrix(tmp_path, kernels='[[kernel]]\nname = "k"\nsource = "debian:linux-source-6.1"\n'
                                    '[[kernel]]\nname = "k_i386_pc-virtio_hibernate_p"\nsource = "debian:linux-source-6.1"\n',
                  patchsets='[[patchset]]\nname = "p"\npatches = []\n'
                            '[[patchset]]\nname = "p_i386_pc-virtio_hibernate_p"\npatches = []\n')
    with pytest.raises(ScenarioError, match="its files would be those of"):
        load_matrix(path)


def test_shipped_matrices_load() -> None:
    paths = sorted(SCENARIOS_DIR.rglob("*.matrix.toml"))
    assert paths
    for path in paths:
        m = load_matrix(path)
        assert m.cells and len({c.id for c in m.cells}) == len(m.cells)


@pytest.mark.parametrize("spec", ["-oAPT::Sandbox::User=root", "--", "a", "Bash", "bash extra", "bash=1.0 x",
                                  "bash=-o", "bash\n"])
def test_apt_never_sees_an_option_for_a_package(spec: str) -> None:
    with pytest.raises(UserError, match="not a Debian"):
        debian.check_spec(spec)
    with pytest.raises(UserError):  # before apt runs (or the lists are even looked at)
        debian.show([spec], "i386")


@pytest.mark.parametrize("suite", ["Bookworm", "sid main", "sid\ndeb x", "-o", "a", "../x"])
def test_bad_suites_never_reach_a_sources_list(suite: str) -> None:
    with pytest.raises(UserError, match="Debian suite"):
        debian.sources_lines(suite)
    with pytest.raises(UserError, match="Debian suite"):
        debian.apt_dir(suite, "i386")


def test_good_specs_pass() -> None:
    for spec in ("bash", "libc6-i386", "g++-12", "linux-source-6.1", "busybox-static=1:1.35.0-4+b3"):
        assert debian.check_spec(spec) == spec
    assert debian.check_suite("bookworm-security") == "bookworm-security"


def test_a_matrix_of_two_arches_pairs_each_with_its_own_machines(tmp_path: Path) -> None:
    path = matrix(tmp_path)
    path.write_text(path.read_text().replace('machines = ["pc-virtio"]',
                                             'machines = ["pc-virtio", "x86_64-pc-virtio", "x86_64-q35-smp2"]\n'
                                             'arch = ["i386", "x86_64"]', 1))
    m = load_matrix(path)
    assert sorted(c.id for c in m.cells) == ["6.1/i386/pc-virtio/hibernate/fixes",
                                             "6.1/x86_64/x86_64-pc-virtio/hibernate/fixes",
                                             "6.1/x86_64/x86_64-q35-smp2/hibernate/fixes"]
    by_id = {c.id: c.scenario["kernel"] for c in m.cells}
    assert by_id["6.1/i386/pc-virtio/hibernate/fixes"]["fragments"] == ["kexec-jump-i386"]
    # one x86_64 kernel serves both x86_64 machines: the union of their fragments
    assert by_id["6.1/x86_64/x86_64-pc-virtio/hibernate/fixes"]["fragments"] == ["kexec-jump-x86_64", "smp", "acpi"]
    assert by_id["6.1/x86_64/x86_64-q35-smp2/hibernate/fixes"]["arch"] == "x86_64"
    # kernel A of an x86_64 cell is built apart, outside B's window (the arch's default)
    cells = {c.id: scenario_from_dict(c.scenario, path) for c in m.cells}
    assert cells["6.1/x86_64/x86_64-pc-virtio/hibernate/fixes"].a_fragments == ("a-outside-window",)
    assert cells["6.1/i386/pc-virtio/hibernate/fixes"].a_fragments == ()
    only_i386 = matrix(tmp_path)
    only_i386.write_text(only_i386.read_text().replace('machines = ["pc-virtio"]',
                                                       'machines = ["pc-virtio"]\narch = ["x86_64"]', 1))
    with pytest.raises(ScenarioError, match=r"matrix.arch\[0\]: no machine of matrix.machines is x86_64"):
        load_matrix(only_i386)


def test_a_kernel_may_keep_to_some_arches(tmp_path: Path) -> None:
    kernels = '[[kernel]]\nname = "5.10"\nsource = "debian:linux-source-5.10@bullseye"\narch = ["i386"]\n'
    path = matrix(tmp_path, kernels=kernels)
    path.write_text(path.read_text().replace('machines = ["pc-virtio"]',
                                             'machines = ["pc-virtio", "x86_64-pc-virtio"]\narch = ["i386", "x86_64"]', 1))
    assert [c.id for c in load_matrix(path).cells] == ["6.1/i386/pc-virtio/hibernate/fixes",
                                                       "6.1/x86_64/x86_64-pc-virtio/hibernate/fixes",
                                                       "5.10/i386/pc-virtio/hibernate/fixes"]
    path.write_text(path.read_text().replace('arch = ["i386"]\n', 'arch = ["arm64"]\n', 1))
    with pytest.raises(ScenarioError, match=r"kernel\[1\]\.arch\[0\]: 'arm64' is not one of matrix.arch"):
        load_matrix(path)


def test_matrix_override_replaces_the_expectation_of_its_cells(tmp_path: Path) -> None:
    extra = ('[[kernel]]\nname = "7.2"\nsource = "debian:linux-source-7.2@sid"\n')
    failing = ('[[patchset]]\nname = "stock"\npatches = []\nexpect = "TRIPLE_FAULT"\nstep = "jump-back"\n'
               "signature = 'Triple fault'\n"
               '[[override]]\ncells = "7.2/*/*/*/stock"\nexpect = { verdict = "PASS" }\n')
    m = load_matrix(matrix(tmp_path, kernels=extra, patchsets=failing))
    expect = {c.id: c.scenario["expect"] for c in m.cells}
    assert expect["6.1/i386/pc-virtio/hibernate/stock"] == {"verdict": "TRIPLE_FAULT", "step": "jump-back",
                                                           "signature": "Triple fault"}
    assert expect["7.2/i386/pc-virtio/hibernate/stock"] == {"verdict": "PASS"}
    bad = matrix(tmp_path, patchsets='[[override]]\ncells = "*"\nexpect = { verdict = "MAYBE" }\n')
    with pytest.raises(ScenarioError, match="override.0..expect.verdict"):
        load_matrix(bad)
    bad = matrix(tmp_path, patchsets='[[override]]\ncells = "*"\nexpect = { when = "now" }\n')
    with pytest.raises(ScenarioError, match="override.0..expect.when"):
        load_matrix(bad)


def test_cells_are_selected_by_glob_and_a_pattern_matching_nothing_is_refused() -> None:
    from lab.matrix import select_cells

    m = load_matrix(SCENARIOS_DIR / "matrices" / "patch-0002-mwait-kick.matrix.toml")
    rows = select_cells(m, ["6.12/*", "7.2/*/*/*/0001"])
    assert [c.id for c in rows.cells] == ["6.12/i386/q35-ahci-smp2/hibernate/0001",
                                          "6.12/i386/q35-ahci-smp2/hibernate/0001-0002",
                                          "7.2/i386/q35-ahci-smp2/hibernate/0001"]
    assert rows.cells[2].scenario["expect"] == {"verdict": "PASS"}  # the override still holds
    with pytest.raises(ScenarioError, match="'4.19/\\*' matches no cell; the cells are 5.10/i386"):
        select_cells(m, ["4.19/*"])


def test_a_matrix_override_gives_cells_kernels_b_and_c_of_their_own(tmp_path: Path) -> None:
    """[[override]] kernel_bc: the cells it matches run B and C on another build than A."""
    path = matrix(tmp_path)
    path.write_text(path.read_text() + '\n[[override]]\ncells = "6.1/*/*/*/*"\n'
                    'kernel_bc = { source = "debian:linux-source-7.2@sid" }\n')
    (cell,) = load_matrix(path).cells
    sc = scenario_from_dict(cell.scenario, path)
    assert sc.kernel.source == "debian:linux-source-6.1"
    assert sc.kernel_bc is not None and sc.kernel_bc.source == "debian:linux-source-7.2@sid"
    path.write_text(path.read_text().replace('kernel_bc = { source', 'kernel_bc = { sauce'))
    with pytest.raises(ScenarioError, match="kernel_bc.sauce"):
        scenario_from_dict(load_matrix(path).cells[0].scenario, path)
