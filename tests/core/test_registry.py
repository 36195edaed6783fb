"""Registry: duplicates, base classes, unknown names with suggestions, user dirs."""

import textwrap
from dataclasses import dataclass

import pytest

from bigseq import registry
from bigseq.errors import BigseqError


class Base:
    pass


@dataclass
class Cfg:
    x: int = 1


def test_register_build_and_list():
    reg = registry.Registry("widget", Base)

    @reg.register("a", Cfg)
    class A(Base):
        def __init__(self, cfg):
            self.cfg = cfg

    assert reg.names() == ["a"] and "a" in reg
    assert reg.build("a", Cfg(x=3)).cfg.x == 3


def test_duplicate_and_wrong_base_rejected():
    reg = registry.Registry("widget", Base)
    reg.register("a")(type("A", (Base,), {}))
    with pytest.raises(BigseqError, match="registered twice"):
        reg.register("a")(type("B", (Base,), {}))
    with pytest.raises(BigseqError, match="must subclass Base"):
        reg.register("c")(type("C", (), {}))


def test_unknown_name_lists_and_suggests():
    reg = registry.Registry("criterion")
    reg.register("cross_entropy")(type("CE", (), {}))
    reg.register("label_smoothed_cross_entropy")(type("LS", (), {}))
    with pytest.raises(BigseqError) as e:
        reg.get("cross_entropi")
    msg = str(e.value)
    assert "did you mean 'cross_entropy'" in msg and "label_smoothed_cross_entropy" in msg


def test_user_dir_plugin_registers(tmp_path):
    plugin = tmp_path / "my_plugin_pkg"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(textwrap.dedent("""
        from bigseq.registry import register_architecture
        @register_architecture("transformer_lm", "my_test_arch_xyz")
        def my_test_arch_xyz():
            return "config"
    """))
    registry.import_user_dir(str(plugin))
    assert "my_test_arch_xyz" in registry.ARCH_REGISTRY
    registry.import_user_dir(str(plugin))  # importing twice is a no-op, not a duplicate error


def test_user_dir_must_be_a_package(tmp_path):
    with pytest.raises(BigseqError, match="not a Python package"):
        registry.import_user_dir(str(tmp_path))
