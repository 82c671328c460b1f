"""Profiles and state files on disk (SPEC section 8)."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from strongroom.cli.commands.common import is_loopback as _is_loopback
from strongroom.cli.errors import ProfileError
from strongroom.cli.profiles import (
    DEFAULT_SERVER_URL,
    Profile,
    ProfileStore,
    TokenCache,
    strongroom_home,
    validate_base_url,
    write_private_file,
)
from tests.cli.conftest import Invoker


def test_home_is_strongroom_home_or_dot_strongroom(tmp_path: Path) -> None:
    assert strongroom_home({"STRONGROOM_HOME": str(tmp_path)}) == tmp_path
    assert strongroom_home({}) == Path.home() / ".strongroom"


def test_configure_writes_the_documented_keys(invoke: Invoker) -> None:
    result = invoke(
        "configure",
        "--profile",
        "web",
        "--access-id",
        "p-abcdefabcdef",
        "--access-type",
        "aws_iam",
        "--server-url",
        "https://vault.example.com/",
        "--aws-sts-url",
        "https://sts.eu-west-1.amazonaws.com",
        "--server-id",
        "vault-prod",
    )
    assert result.exit_code == 0
    assert result.stdout == "Profile web successfully configured\n"
    path = invoke.home / "profiles" / "web.toml"
    assert tomllib.loads(path.read_text()) == {
        "server_url": "https://vault.example.com",
        "access_id": "p-abcdefabcdef",
        "access_type": "aws_iam",
        "aws_sts_url": "https://sts.eu-west-1.amazonaws.com",
        "server_id": "vault-prod",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_configure_defaults_the_server_url_and_keeps_the_key_private(invoke: Invoker) -> None:
    result = invoke(
        "configure",
        "--access-id",
        "p-abcdefabcdef",
        "--access-type",
        "access_key",
        "--access-key",
        "k3y",
        "--json",
    )
    assert result.exit_code == 0
    assert "k3y" not in result.stdout + result.stderr
    profile = ProfileStore(invoke.home).load("default")
    assert profile.server_url == DEFAULT_SERVER_URL
    assert profile.access_key == "k3y"
    assert "k3y" not in repr(profile)


def test_an_akeyless_style_profile_is_read(tmp_path: Path) -> None:
    path = tmp_path / "profiles" / "default.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        '["default"]\n'
        "  access_id = 'p-xxxxxxxxxxxx'\n"
        "  access_type = 'aws_iam'\n"
        "  server_url = 'http://10.0.0.5:8300'\n"
    )
    profile = ProfileStore(tmp_path).load("default")
    assert profile.access_type == "aws_iam"
    assert profile.server_url == "http://10.0.0.5:8300"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("access_id = 'p-abc'\naccess_type = 'password'\n", "access_type must be one of"),
        ("access_id = 'nope'\naccess_type = 'aws_iam'\n", "access ID 'nope' is not valid"),
        ("access_id = 'p-abc'\naccess_type = 'access_key'\n", "needs access_key"),
        ("access_id = 1\naccess_type = 'aws_iam'\n", "access_id must be a string"),
        (
            "access_id = 'p-abc'\naccess_type = 'aws_iam'\nserver_url = 'ftp://x'\n",
            "server URL 'ftp://x' is not valid",
        ),
    ],
)
def test_a_broken_profile_says_what_is_wrong(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "profiles" / "p.toml"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ProfileError) as raised:
        ProfileStore(tmp_path).load("p")
    assert problem in raised.value.message
    assert raised.value.hint == "run strongroom configure --profile p again"


@pytest.mark.parametrize("name", ["../x", "..", ".hidden", "a/b", "", "x" * 65, "-flag"])
def test_profile_names_cannot_escape_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(ProfileError):
        ProfileStore(tmp_path).load(name)
    with pytest.raises(ValueError, match="profile name"):
        TokenCache(tmp_path, name, "p-abcdefabcdef")


def test_cache_file_names_need_a_real_access_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="access ID"):
        TokenCache(tmp_path, "default", "p-../../etc")


def test_private_files_replace_atomically(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "file"
    write_private_file(target, b"one")
    write_private_file(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["file"]


def test_a_loose_state_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "profiles"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    ProfileStore(tmp_path).save(Profile(name="x", access_id="p-abc", access_type="aws_iam"))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("http://127.0.0.1:8300", True),
        ("https://vault.example.com/", True),
        ("https://vault.example.com/api", False),
        ("https://user:pw@vault.example.com", False),
        ("https://vault.example.com?x=1", False),
        ("vault.example.com", False),
    ],
)
def test_server_urls_are_plain_origins(url: str, valid: bool) -> None:
    if valid:
        assert validate_base_url(url) == url.rstrip("/")
    else:
        with pytest.raises(ValueError, match="http"):
            validate_base_url(url)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8300", True),
        ("http://localhost:8300", True),
        ("http://[::1]:8300", True),
        ("http://10.0.0.5:8300", False),
        ("http://vault.internal", False),
    ],
)
def test_plain_http_is_only_quiet_on_loopback(url: str, loopback: bool) -> None:
    assert _is_loopback(url) is loopback


def test_debug_shows_the_traceback(invoke: Invoker) -> None:
    invoke.configure_key("p-abcdefabcdef", "k", "http://127.0.0.1:9")
    plain = invoke("list-roles")
    debug = invoke("list-roles", "--debug")
    assert plain.exit_code == debug.exit_code == 1
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr
    assert "cannot reach the Strongroom server" in debug.stderr
