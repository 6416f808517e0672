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
