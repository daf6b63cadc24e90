"""load_plugin_library finds, loads and keeps the plugin library, and explains what to do when it cannot."""

import shutil
import subprocess

import pytest

from jetson_detect.errors import JetsonDetectError
from jetson_detect.plugin import loader


def test_missing_explicit_path_names_the_file_and_the_build_script(tmp_path):
    missing = tmp_path / "libyolo_decode_nms.so"
    with pytest.raises(JetsonDetectError, match=r"libyolo_decode_nms\.so does not exist.*build_plugin\.sh"):
        loader.load_plugin_library(str(missing))


def test_nothing_built_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "PLUGIN_DIR", tmp_path)
    monkeypatch.setenv(loader.ENV_VAR, str(tmp_path / "elsewhere.so"))
    with pytest.raises(JetsonDetectError, match=r"not found \(looked at .*elsewhere\.so.*JETSON_DETECT_PLUGIN"):
        loader.load_plugin_library()


def test_a_file_that_is_not_a_library_is_reported(tmp_path):
    bogus = tmp_path / "libyolo_decode_nms.so"
    bogus.write_text("not an ELF file")
    with pytest.raises(JetsonDetectError, match="cannot load YoloDecodeNMS plugin library"):
        loader.load_plugin_library(str(bogus))


def test_environment_variable_comes_first(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.ENV_VAR, str(tmp_path / "custom.so"))
    assert loader.candidate_paths()[0] == tmp_path / "custom.so"


def test_a_library_is_loaded_once_and_kept(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to make a stand-in library")
    source = tmp_path / "stand_in.c"
    source.write_text("int stand_in(void) { return 7; }\n")
    library = tmp_path / "libyolo_decode_nms.so"
    subprocess.run([cc, "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    first = loader.load_plugin_library(str(library))
    assert first.stand_in() == 7
    assert loader.load_plugin_library(str(library)) is first
