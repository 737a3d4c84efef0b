import pytest

from w2slab.errors import ConfigError, UnknownNameError
from w2slab.registry import Registry, check_names


def test_register_get_and_lazy_entry():
    reg = Registry("thing")
    reg.register("local", 41)

    @reg.register("decorated")
    def f():
        return 1

    reg.register("lazy", "math:pi")
    assert reg.get("local") == 41
    assert reg.get("decorated") is f
    assert abs(reg.get("lazy") - 3.14159) < 1e-5
    assert reg.names() == ["decorated", "lazy", "local"]


def test_duplicate_rejected():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", 2)


def test_unknown_name_suggests_closest():
    reg = Registry("loss")
    reg.register("logconf", 1)
    with pytest.raises(UnknownNameError, match="did you mean 'logconf'"):
        reg.get("logcnf")


def test_check_names_empty_and_unknown():
    reg = Registry("loss")
    reg.register("xent", 1)
    with pytest.raises(ConfigError, match="losses is empty"):
        check_names(reg, [], param="losses")
    with pytest.raises(UnknownNameError, match="losses: unknown loss 'nope'"):
        check_names(reg, ["xent", "nope"], param="losses")


def test_listing_tasks_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, w2slab.tasks, w2slab.cli; w2slab.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
