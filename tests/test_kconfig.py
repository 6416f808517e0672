from pathlib import Path

import pytest

from lab.errors import ConfigSymbolMissing
from lab.kconfig import missing_symbols, parse_config, verify_config


def test_parse_config_values_and_unset():
    cfg = parse_config("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=0x200000\nCONFIG_D=\"x y\"\n")
    assert cfg == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "0x200000", "CONFIG_D": '"x y"'}


def test_missing_symbols_treats_absent_as_n():
    assert missing_symbols({"CONFIG_A": "y", "CONFIG_B": "n"}, {"CONFIG_A": "y"}) == {}
    assert missing_symbols({"CONFIG_KEXEC_JUMP": "y"}, {}) == {"CONFIG_KEXEC_JUMP": ("y", "n")}


def test_verify_config_names_the_dropped_symbol(tmp_path: Path):
    frag = tmp_path / "f.config"
    frag.write_text("CONFIG_CRASH_DUMP=y\nCONFIG_PM=y\n")
    cfg = tmp_path / ".config"
    cfg.write_text("CONFIG_PM=y\n# CONFIG_CRASH_DUMP is not set\n")
    with pytest.raises(ConfigSymbolMissing, match="CONFIG_CRASH_DUMP: requested 'y', got 'n'"):
        verify_config([frag], cfg)


def test_cache_builds_a_key_once_across_processes(tmp_path, monkeypatch):
    """Two processes asking for the same artifact at once: one builds, the other waits."""
    import subprocess
    import sys
    import textwrap

    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache"))
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from lab.cache import cached_dir
        def build(tmp: Path) -> None:
            time.sleep(1.0)
            (tmp / "artifact").write_text("built by " + sys.argv[1])
        out, cached = cached_dir("test", "samekey", build)
        print(cached, (out / "artifact").read_text())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent) for i in range(2)]
    outs = sorted(p.communicate(timeout=30)[0].strip() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert [o.split()[0] for o in outs] == ["False", "True"]  # one built, one found it
    assert outs[0].split()[-1] == outs[1].split()[-1]  # both see the same artifact
