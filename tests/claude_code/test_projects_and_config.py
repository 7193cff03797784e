"""Where a project may live (claude_code.roots), and the claude-code provider's settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from babelgate.canonical import GatewayError
from babelgate.claude_code.projects import allowed_path, check_name, resolved_roots
from babelgate.claude_code.provider import ClaudeCodeProvider
from babelgate.config import ConfigError, ProviderConfig, load_settings


def test_a_path_under_a_root_is_allowed_and_others_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    (root / "site").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "escape").symlink_to(tmp_path / "elsewhere")
    roots = resolved_roots([str(root)])
    assert allowed_path(str(root / "site"), roots) == (root / "site").resolve()
    assert allowed_path(str(root), roots) == root.resolve()
    for outside in (tmp_path / "elsewhere", root / "escape", root / "site" / ".." / ".."):
        with pytest.raises(GatewayError) as caught:
            allowed_path(str(outside), roots)
        assert caught.value.status == 403 and "claude_code.roots" in caught.value.message
    with pytest.raises(GatewayError, match="not an existing directory"):
        allowed_path(str(root / "missing"), roots)
    with pytest.raises(GatewayError, match="absolute"):
        allowed_path("site", roots)


def test_no_roots_means_no_existing_path(tmp_path: Path) -> None:
    with pytest.raises(GatewayError) as caught:
        allowed_path(str(tmp_path), ())
    assert caught.value.status == 403 and "none is configured" in caught.value.message


def test_a_project_needs_a_name() -> None:
    assert check_name(" site ") == "site"
    for bad in (None, "", "  ", 3, "x" * 201):
        with pytest.raises(GatewayError):
            check_name(bad)


def test_claude_code_provider_fields(tmp_path: Path) -> None:
    path = tmp_path / "bg.yaml"
    path.write_text(yaml.safe_dump({
        "providers": {"cc": {
            "type": "claude-code", "binary": "claude", "env": {"ANTHROPIC_API_KEY": "sk-ant-x"},
            "tools": ["Read", "Bash"], "permission_mode": "acceptEdits", "max_processes": 2,
            "idle_timeout": 60, "timeout": 30, "chunking": "sentence"}},
        "routes": {"claude-*": "cc/sonnet"},
        "claude_code": {"roots": [str(tmp_path)]},
    }))
    settings = load_settings(path)
    cc = settings.providers["cc"]
    assert (cc.max_processes, cc.idle_timeout, cc.chunking) == (2, 60, "sentence")
    assert settings.claude_code.roots == [str(tmp_path)]
    assert (settings.claude_code.max_sessions, settings.claude_code.max_projects) == (1000, 100)
    provider = ClaudeCodeProvider("cc", cc, environ={"PATH": "/nowhere"})
    argv = provider.command("sonnet", session=None, resume=False, system=None)
    assert argv[argv.index("--tools") + 1] == "Read,Bash"
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert "--no-session-persistence" in argv
    resumed = provider.command("sonnet", session="u-1", resume=True, system="Be brief.")
    assert resumed[resumed.index("--resume") + 1] == "u-1"
    assert resumed[resumed.index("--append-system-prompt") + 1] == "Be brief."
    assert provider.env["ANTHROPIC_API_KEY"] == "sk-ant-x"
    assert "sk-ant-x" not in repr(cc) and "sk-ant-x" not in str(provider.describe())
    assert provider.redact("error: key sk-ant-x refused") == "error: key *** refused"


def test_default_permission_mode_passes_no_flag() -> None:
    provider = ClaudeCodeProvider("cc", ProviderConfig(type="claude-code"), environ={})
    assert "--permission-mode" not in provider.command("m", session="s", resume=False,
                                                       system=None)


@pytest.mark.parametrize(("entry", "message"), [
    ({"type": "openai", "base_url": "http://x/v1", "tools": ["Bash"]},
     "only a type: claude-code provider reads"),
    ({"type": "openai"}, "base_url is required"),
    ({"type": "claude-code", "permission_mode": "yolo"}, "acceptEdits"),
    ({"type": "claude-code", "chunking": "line"}, "token, word, sentence or message"),
    ({"type": "claude-code", "max_processes": 0}, "max_processes"),
])
def test_bad_claude_code_settings_are_refused(tmp_path: Path, entry: dict[str, object],
                                              message: str) -> None:
    path = tmp_path / "bg.yaml"
    path.write_text(yaml.safe_dump({"providers": {"p": entry}, "routes": {"default": "p"}}))
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


@pytest.mark.parametrize("field", ["max_sessions", "max_projects"])
def test_a_cap_below_one_is_refused(tmp_path: Path, field: str) -> None:
    path = tmp_path / "bg.yaml"
    path.write_text(yaml.safe_dump({"providers": {"p": {"type": "claude-code"}},
                                    "routes": {"default": "p"}, "claude_code": {field: 0}}))
    with pytest.raises(ConfigError, match=field):
        load_settings(path)


def test_binary_is_a_name_on_the_path_of_env_or_a_path(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    cli = folder / "claude"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    config = ProviderConfig(type="claude-code", env={"PATH": f"/nowhere:{folder}"})
    provider = ClaudeCodeProvider("cc", config, environ={"PATH": "/usr/bin"})
    assert provider.binary == str(cli)  # the PATH the CLI gets: `env`'s over the gateway's
    as_path = ProviderConfig(type="claude-code", binary="~/tools/claude")
    assert ClaudeCodeProvider("cc", as_path, environ={}).binary == str(
        Path("~/tools/claude").expanduser())


@pytest.mark.skipif(os.geteuid() != 0, reason="the CLI's root rule applies to root only")
def test_as_root_the_cli_is_told_it_is_sandboxed() -> None:
    # The CLI refuses bypassPermissions as root unless IS_SANDBOX is exactly `1` (an inherited
    # `yes` does not do); babelgate sets it rather than patching the CLI.
    provider = ClaudeCodeProvider("cc", ProviderConfig(type="claude-code"),
                                  environ={"IS_SANDBOX": "yes"})
    assert provider.env["IS_SANDBOX"] == "1"
    assert provider.binary_name == "claude"
