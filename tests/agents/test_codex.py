"""Codex CLI agent tests: the next issue.

They will mirror test_claude_code.py: `codex exec --json` with a sandbox HOME holding a
config.toml whose model provider points at the gateway's /v1 (Responses wire API), the same
fakes behind the gateway, and the same assertions (the marker token comes back, the upstream
received the tool output). The default fake brain already answers Codex's shell tools
(`shell` with an array command, `exec_command`, `shell_command`). Installing the binary:
scripts/install-agents.sh (pinned @openai/codex 0.169.0).
"""
