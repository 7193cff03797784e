"""Deterministic request and canned upstream bodies for the benchmark.

`python bench/bodies.py OUT_DIR` writes:
- hello.json / hello_stream.json: the smallest useful Anthropic Messages request;
- claude_code.json / claude_code_stream.json: a request shaped like the ones Claude Code sends
  (about 50 KB: a long cached system prompt, two dozen tools with real JSON schemas, several
  turns with thinking, tool_use and tool_result blocks, metadata.user_id, max_tokens 32000);
- claude_code_distinct.json: the same request with the turn mark in every piece the gateway
  could find again (each system block, each tool, each message, the session in the user id),
  so that every request is a conversation of its own;
- codex.json / codex_stream.json: an OpenAI Responses request shaped like Codex's (about
  40 KB: a long developer message in the style of Codex's system prompt, AGENTS.md and
  environment_context messages, ten tools among them exec_command, apply_patch as a custom
  tool with its Lark grammar, update_plan, view_image, tool_search and web_search; earlier
  turns with reasoning items whose encrypted_content is babelgate's Anthropic envelope,
  function_call / function_call_output and custom_tool_call items; store false,
  include reasoning.encrypted_content, reasoning effort medium, prompt_cache_key,
  client_metadata);
- chat_gemini.json / chat_gemini_stream.json: an OpenAI Chat Completions request of about
  20 KB (a system message, five function tools, turns with parallel tool calls and tool
  results) for a Gemini model;
- gemini_cli.json / gemini_cli_stream.json: Gemini CLI's own request (recorded from
  @google/gemini-cli, tests/fixtures/gemini/gemini_cli_request.json: about 50 KB, mostly its
  system instruction and fifteen function declarations) with two more turns, the model's
  answer and the user's next question; posted to `:generateContent` and
  `:streamGenerateContent?alt=sse` (the two files are the same body: Gemini puts the
  streaming choice in the URL), which the benchmark routes to Anthropic;
- upstream/chat.json: a canned OpenAI chat.completion (text and usage);
- upstream/chat.sse: a canned OpenAI Chat Completions SSE stream (20 content chunks, a finish
  chunk, a usage chunk, `data: [DONE]`);
- upstream/anthropic.json / anthropic.sse: the same answer as an Anthropic message, and as a
  Messages stream (message_start, one text block of 20 deltas, message_delta, message_stop);
- upstream/gemini.json / gemini.sse: the same answer as a Gemini GenerateContentResponse, and
  as 20 `:streamGenerateContent?alt=sse` chunks (the last with finishReason and usage).
Same input, same bytes: nothing here reads the clock or a random source, so two runs of the
benchmark send identical bodies. The prose is ours, written for the benchmark; only its size
and shape imitate a real agent's request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

MODEL = "claude-sonnet-4-5-20250929"
SMALL_MODEL = "claude-haiku-4-5-20251001"  # Claude Code sends its small requests to Haiku
TARGET_CLAUDE_CODE_BYTES = 50_000  # the realistic body is padded up to about this size
SESSION = "5f0e7c1a-3b2d-4c8e-9a61-0d2f4b7e9c13"
USER_HASH = hashlib.sha256(b"babelgate-bench-user").hexdigest()


# ---------------------------------------------------------------------------- hello


def hello(stream: bool) -> dict[str, Any]:
    return {
        "model": SMALL_MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": stream,
    }


# ---------------------------------------------------------------------------- system prompt

_SYSTEM_TOPICS = [
    ("Tone and style", "Answer briefly and directly. Prefer one clear sentence over three vague "
     "ones. Use Markdown only where the terminal renders it well: short lists, code fences with "
     "a language tag, no decorative headings. Do not restate the question before answering."),
    ("Doing tasks", "Read the relevant code before changing it. Follow the conventions already "
     "present in the repository: naming, formatting, test layout, error handling. When a change "
     "touches several files, plan it with the todo tool first and keep the plan current."),
    ("Tool usage policy", "Run independent tool calls in the same turn so they execute in "
     "parallel. Prefer the dedicated file tools over shell commands for reading, searching and "
     "editing files. Quote paths that contain spaces. Never run interactive commands."),
    ("Code references", "When you mention a function or a line, give it as path:line so the "
     "user can jump to it. Keep references exact; do not guess line numbers you have not read."),
    ("Safety", "Refuse to write or improve code that is clearly meant to harm others. Never "
     "commit, push or delete branches unless the user asks for it explicitly in this session."),
    ("Testing", "After a change, run the narrowest test command that covers it, then the linter "
     "and type checker the project uses. Report failures honestly with the relevant output."),
    ("Git", "Inspect status and diff before committing. Write commit messages that explain why "
     "the change was made. Never amend someone else's commit and never force-push shared work."),
    ("Proactiveness", "Do what was asked, completely, and stop. Suggest follow-up work in one "
     "line at the end instead of doing it unasked."),
]


def _system_prompt() -> list[dict[str, Any]]:
    sections = []
    for index, (title, body) in enumerate(_SYSTEM_TOPICS):
        # Each section carries a few numbered rules so the prompt reaches a realistic length
        # (a real agent prompt is 10-15 KB) without repeating one paragraph verbatim.
        rules = "\n".join(
            f"  {n}. {body.split('. ')[n % len(body.split('. '))].rstrip('.')} "
            f"(rule {index + 1}.{n})."
            for n in range(1, 15)
        )
        sections.append(f"# {title}\n{body}\n\nSpecific rules:\n{rules}\n")
    environment = (
        "<env>\nWorking directory: /home/dev/projects/orbit-api\nIs directory a git repo: Yes\n"
        "Platform: linux\nOS Version: Linux 6.8.0-45-generic\nToday's date: 2025-10-02\n</env>\n"
        "You are powered by the model named Sonnet 4.5.\n"
    )
    return [
        {
            "type": "text",
            "text": "You are an interactive command-line coding assistant.",
            "cache_control": {"type": "ephemeral"},
        },
        {
            "type": "text",
            "text": "\n".join(sections) + "\n" + environment,
            "cache_control": {"type": "ephemeral"},
        },
    ]


# ---------------------------------------------------------------------------- tools


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }


def _s(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _n(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def _b(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def _tool(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "description": description, "input_schema": schema}


def _long(summary: str, points: list[str]) -> str:
    """A tool description in the style agents use: a summary, then usage notes."""
    return summary + "\n\nUsage notes:\n" + "\n".join(f"- {p}" for p in points)


def _tools() -> list[dict[str, Any]]:
    todo_item = _obj(
        {
            "content": _s("What needs doing, imperative form", minLength=1),
            "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
            "activeForm": _s("The same item in present continuous form", minLength=1),
        },
        ["content", "status", "activeForm"],
    )
    del todo_item["$schema"]
    edit_item = _obj(
        {
            "old_string": _s("The exact text to replace"),
            "new_string": _s("The text to put in its place"),
            "replace_all": {**_b("Replace every occurrence"), "default": False},
        },
        ["old_string", "new_string"],
    )
    del edit_item["$schema"]
    tools = [
        _tool("Task", _long(
            "Start a sub-agent that works on a self-contained task with its own context and "
            "reports back once.",
            ["Give the sub-agent everything it needs: it cannot see this conversation.",
             "Say whether it should write code or only research.",
             "Launch several sub-agents in one message when their tasks are independent.",
             "The result is not shown to the user; summarise it yourself."]),
            _obj({"description": _s("A three to five word summary of the task"),
                  "prompt": _s("The full task for the sub-agent"),
                  "subagent_type": _s("Which kind of sub-agent to start")},
                 ["description", "prompt", "subagent_type"])),
        _tool("Bash", _long(
            "Run a shell command in a persistent session, with an optional timeout.",
            ["Check that the parent directory exists before creating files in it.",
             "Quote paths with spaces in double quotes.",
             "Output beyond 30000 characters is cut off.",
             "Use run_in_background for long-running servers and watch them with BashOutput.",
             "Avoid find, grep, cat, head and tail: the dedicated tools do it better.",
             "Chain dependent commands with && and keep the working directory stable.",
             "Never skip hooks or change git configuration."]),
            _obj({"command": _s("The command to run"),
                  "timeout": _n("Optional timeout in milliseconds (at most 600000)"),
                  "description": _s("Five to ten words saying what the command does"),
                  "run_in_background": _b("Run the command in the background")},
                 ["command"])),
        _tool("Glob", _long(
            "Find files by glob pattern, newest first.",
            ["Works on any codebase size.", "Patterns look like **/*.ts or src/**/*.py.",
             "Use Task for open-ended searches that need several rounds."]),
            _obj({"pattern": _s("The glob pattern to match"),
                  "path": _s("Directory to search in; the working directory when omitted")},
                 ["pattern"])),
        _tool("Grep", _long(
            "Search file contents with ripgrep syntax.",
            ["Always use this tool for content search, never grep through Bash.",
             "Filter with glob or type; pick the output mode you need.",
             "Literal braces need escaping: interface\\{\\}.",
             "Multiline matching is off unless multiline is true."]),
            _obj({"pattern": _s("The regular expression to search for"),
                  "path": _s("File or directory to search in"),
                  "glob": _s("Glob filter such as *.js or *.{ts,tsx}"),
                  "output_mode": {"type": "string",
                                  "enum": ["content", "files_with_matches", "count"],
                                  "description": "What to show for each match"},
                  "-B": _n("Lines of context before each match"),
                  "-A": _n("Lines of context after each match"),
                  "-C": _n("Lines of context around each match"),
                  "-n": _b("Show line numbers"),
                  "-i": _b("Case-insensitive search"),
                  "type": _s("File type such as py, js or rust"),
                  "head_limit": _n("Keep only the first N lines or entries"),
                  "multiline": _b("Let . match newlines and patterns span lines")},
                 ["pattern"])),
        _tool("ExitPlanMode", "Leave planning mode once the plan is ready for the user to "
              "approve. Only for tasks that need code changes.",
              _obj({"plan": _s("The plan, in concise Markdown")}, ["plan"])),
        _tool("Read", _long(
            "Read a file from the local filesystem.",
            ["The path must be absolute.", "Reads up to 2000 lines from the start by default.",
             "Long lines are cut at 2000 characters.",
             "Output is numbered like cat -n, starting at 1.",
             "Images, PDFs and notebooks are supported.",
             "Reading several likely-useful files at once is encouraged."]),
            _obj({"file_path": _s("Absolute path of the file"),
                  "offset": _n("First line to read"),
                  "limit": _n("How many lines to read")},
                 ["file_path"])),
        _tool("Edit", _long(
            "Replace an exact string in a file.",
            ["Read the file in this conversation before editing it.",
             "Keep the indentation exactly as the file has it after the line-number prefix.",
             "The edit fails when old_string is not unique; add context or use replace_all.",
             "Prefer editing existing files to creating new ones."]),
            _obj({"file_path": _s("Absolute path of the file to change"),
                  "old_string": _s("The text to replace"),
                  "new_string": _s("The replacement, different from old_string"),
                  "replace_all": {**_b("Replace every occurrence"), "default": False}},
                 ["file_path", "old_string", "new_string"])),
        _tool("MultiEdit", _long(
            "Apply several exact-string edits to one file, atomically and in order.",
            ["Each edit sees the result of the previous one.",
             "If any edit fails, none is applied.",
             "Plan the edits so that earlier ones do not break later matches."]),
            _obj({"file_path": _s("Absolute path of the file to change"),
                  "edits": {"type": "array", "items": edit_item, "minItems": 1,
                            "description": "The edits, applied in order"}},
                 ["file_path", "edits"])),
        _tool("Write", _long(
            "Write a file, replacing it if it exists.",
            ["Read an existing file before overwriting it.",
             "Do not create documentation files unless asked.", "Use absolute paths."]),
            _obj({"file_path": _s("Absolute path of the file to write"),
                  "content": _s("The full content of the file")},
                 ["file_path", "content"])),
        _tool("NotebookEdit", "Replace, insert or delete one cell of a Jupyter notebook.",
              _obj({"notebook_path": _s("Absolute path of the .ipynb file"),
                    "cell_id": _s("The cell to edit, or the cell after which to insert"),
                    "new_source": _s("The new source of the cell"),
                    "cell_type": {"type": "string", "enum": ["code", "markdown"]},
                    "edit_mode": {"type": "string", "enum": ["replace", "insert", "delete"]}},
                   ["notebook_path", "new_source"])),
        _tool("WebFetch", _long(
            "Fetch a URL, convert it to Markdown and answer a prompt about it with a small "
            "model.",
            ["HTTP is upgraded to HTTPS.", "Results are cached for fifteen minutes.",
             "On a redirect to another host, fetch the new URL yourself."]),
            _obj({"url": _s("The URL to fetch", format="uri"),
                  "prompt": _s("What to extract from the page")},
                 ["url", "prompt"])),
        _tool("TodoWrite", _long(
            "Create and update the task list for this session.",
            ["Use it for tasks with three or more steps.",
             "Exactly one item is in_progress at a time.",
             "Mark items completed as soon as they are done, not in batches.",
             "Never mark an item completed while its tests fail."]),
            _obj({"todos": {"type": "array", "items": todo_item,
                            "description": "The updated list"}}, ["todos"])),
        _tool("WebSearch", "Search the web and return result blocks with titles and links.",
              _obj({"query": _s("The search query", minLength=2),
                    "allowed_domains": {"type": "array", "items": {"type": "string"}},
                    "blocked_domains": {"type": "array", "items": {"type": "string"}}},
                   ["query"])),
        _tool("BashOutput", "Read new output from a background shell.",
              _obj({"bash_id": _s("The background shell's id"),
                    "filter": _s("Keep only lines matching this regular expression")},
                   ["bash_id"])),
        _tool("KillShell", "Stop a background shell by id.",
              _obj({"shell_id": _s("The shell to stop")}, ["shell_id"])),
        _tool("SlashCommand", "Run a custom slash command defined by the project.",
              _obj({"command": _s("The command with its arguments, e.g. /review-pr 123")},
                   ["command"])),
    ]
    for server, name, what, fields in _MCP_TOOLS:
        properties = {field: _s(text) for field, text in fields}
        tools.append(_tool(f"mcp__{server}__{name}", what,
                           _obj(properties, [fields[0][0]])))
    return tools


_MCP_TOOLS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("github", "create_issue", "Open an issue in a GitHub repository.",
     [("repo", "owner/name"), ("title", "Issue title"), ("body", "Issue body in Markdown")]),
    ("github", "get_pull_request", "Fetch a pull request with its review comments.",
     [("repo", "owner/name"), ("number", "Pull request number")]),
    ("github", "list_workflow_runs", "List recent CI runs of a workflow.",
     [("repo", "owner/name"), ("workflow", "Workflow file name"), ("branch", "Branch")]),
    ("postgres", "query", "Run a read-only SQL query against the development database.",
     [("sql", "The SQL statement"), ("params", "JSON array of bound parameters")]),
    ("postgres", "describe_table", "Show the columns, indexes and constraints of a table.",
     [("table", "Schema-qualified table name")]),
    ("sentry", "get_issue", "Fetch a Sentry issue with its latest event and stack trace.",
     [("issue_id", "The Sentry issue id"), ("project", "The Sentry project slug")]),
    ("linear", "update_ticket", "Change the state, assignee or estimate of a ticket.",
     [("ticket", "Ticket key such as ORB-142"), ("state", "New workflow state"),
      ("assignee", "User name"), ("comment", "Comment to add")]),
    ("browser", "screenshot", "Take a screenshot of the page open in the test browser.",
     [("selector", "CSS selector to capture; the whole page when omitted"),
      ("full_page", "Capture beyond the viewport: true or false")]),
]


# ---------------------------------------------------------------------------- conversation

_SOURCE_LINES = [
    "from __future__ import annotations",
    "",
    "import asyncio",
    "from dataclasses import dataclass",
    "",
    "from orbit.db import Pool",
    "from orbit.errors import NotFound, RateLimited",
    "",
    "",
    "@dataclass(slots=True)",
    "class Invoice:",
    "    id: str",
    "    customer_id: str",
    "    total_cents: int",
    "    currency: str",
    "    status: str",
    "",
    "",
    "async def fetch_invoice(pool: Pool, invoice_id: str) -> Invoice:",
    "    row = await pool.fetchrow('SELECT * FROM invoices WHERE id = $1', invoice_id)",
    "    if row is None:",
    "        raise NotFound(f'invoice {invoice_id}')",
    "    return Invoice(**row)",
    "",
    "",
    "async def list_invoices(pool: Pool, customer_id: str, limit: int = 50) -> list[Invoice]:",
    "    rows = await pool.fetch(",
    "        'SELECT * FROM invoices WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2',",
    "        customer_id, limit,",
    "    )",
    "    return [Invoice(**row) for row in rows]",
]


def _numbered(lines: list[str], copies: int) -> str:
    """File content as the Read tool returns it: `cat -n` style numbering."""
    out = []
    number = 1
    for copy in range(copies):
        for line in lines:
            text = line.replace("invoice", f"invoice{copy}" if copy else "invoice")
            out.append(f"{number:6d}\t{text}")
            number += 1
    return "\n".join(out)


def _signature(seed: str) -> str:
    # Thinking signatures are opaque base64 of a few hundred bytes; a hash chain fakes one.
    digest = b""
    block = seed.encode()
    while len(digest) < 360:
        block = hashlib.sha512(block).digest()
        digest += block
    return base64.b64encode(digest[:360]).decode()


def _messages(padding_lines: int) -> list[dict[str, Any]]:
    claude_md = "\n".join(
        f"- Convention {n}: handlers in orbit/api/ return typed models; SQL lives in "
        f"orbit/db/queries_{n % 7}.sql and is loaded once at start-up."
        for n in range(padding_lines)
    )
    reminder = (
        "<system-reminder>\nAs you answer, use this context about the project:\n"
        f"# claudeMd\nContents of /home/dev/projects/orbit-api/CLAUDE.md:\n{claude_md}\n"
        "</system-reminder>"
    )
    return [
        {"role": "user", "content": [
            {"type": "text", "text": reminder},
            {"type": "text", "text": "The invoices endpoint returns 500 when a customer has no "
             "invoices yet. Find out why and fix it, with a test."},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user reports a 500 on an empty invoice list. "
             "I should find the handler and the query helper first, then look at how the "
             "empty case is serialised.", "signature": _signature("turn-1")},
            {"type": "text", "text": "I'll look at the invoice handler and its data access."},
            {"type": "tool_use", "id": "toolu_01A7bXq3LkP9sVw2mN4cRt8Y", "name": "Grep",
             "input": {"pattern": "def list_invoices", "path": "/home/dev/projects/orbit-api",
                       "output_mode": "files_with_matches"}},
            {"type": "tool_use", "id": "toolu_01B2cYr4MlQ0tWx3nO5dSu9Z", "name": "Glob",
             "input": {"pattern": "tests/**/test_invoice*.py"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A7bXq3LkP9sVw2mN4cRt8Y",
             "content": "Found 2 files\n/home/dev/projects/orbit-api/orbit/db/invoices.py\n"
                        "/home/dev/projects/orbit-api/orbit/api/invoices.py"},
            {"type": "tool_result", "tool_use_id": "toolu_01B2cYr4MlQ0tWx3nO5dSu9Z",
             "content": "/home/dev/projects/orbit-api/tests/api/test_invoices.py"},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Two candidates. Read both; the API layer is "
             "where a 500 would be raised if it indexes into an empty list.",
             "signature": _signature("turn-2")},
            {"type": "tool_use", "id": "toolu_01C3dZs5NmR1uXy4oP6eTv0A", "name": "Read",
             "input": {"file_path": "/home/dev/projects/orbit-api/orbit/db/invoices.py"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01C3dZs5NmR1uXy4oP6eTv0A",
             "content": [{"type": "text", "text": _numbered(_SOURCE_LINES, 4)}]},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The data layer returns an empty list correctly. "
             "The handler must be computing something from rows[0].",
             "signature": _signature("turn-3")},
            {"type": "tool_use", "id": "toolu_01D4eAt6OnS2vYz5pQ7fUw1B", "name": "Bash",
             "input": {"command": "cd /home/dev/projects/orbit-api && python -m pytest "
                                  "tests/api/test_invoices.py -q -x 2>&1 | tail -20",
                       "description": "Run the invoice API tests"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01D4eAt6OnS2vYz5pQ7fUw1B",
             "is_error": True,
             "content": "F\n=================================== FAILURES ===================\n"
                        "___________ test_list_invoices_empty ___________\n"
                        "orbit/api/invoices.py:41: in list_invoices\n"
                        "    currency = invoices[0].currency\n"
                        "E   IndexError: list index out of range\n"
                        "1 failed, 6 passed in 0.84s"},
            {"type": "text", "text": "<system-reminder>\nThe todo list is empty. Use TodoWrite "
             "if this task has several steps.\n</system-reminder>"},
        ]},
    ]


TURN_MARK = "@turn@"  # bench/post.lua writes a number here, different for every request


def _new_turn(body: dict[str, Any], key: str) -> dict[str, Any]:
    """Mark the text of the conversation's last two items. Each request of a session repeats
    the previous one and adds the model's last answer and the newest user turn; with these two
    items different on every request (post.lua), a gateway that reuses work across requests
    is measured on what actually repeats, not on one body sent over and over."""
    for item in body[key][-2:]:
        if not _mark_first_text(item):
            raise ValueError(f"no text to mark in {item!r:.80}")
    return body


def _mark_first_text(value: Any) -> bool:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("text", "thinking", "content", "output") and isinstance(inner, str):
                value[key] = f"{inner} (turn {TURN_MARK})"
                return True
            if key not in ("input", "arguments") and _mark_first_text(inner):
                return True
    if isinstance(value, list):
        return any(_mark_first_text(inner) for inner in value)
    return False


def claude_code(stream: bool) -> dict[str, Any]:
    body = _claude_code_with(padding_lines=0, stream=stream)
    # Grow the project-notes reminder until the body reaches the target size; deterministic
    # because every step depends only on the line count.
    step = 8
    padding = 0
    while len(_dump(body)) < TARGET_CLAUDE_CODE_BYTES:
        padding += step
        body = _claude_code_with(padding_lines=padding, stream=stream)
    return _new_turn(body, "messages")


def claude_code_distinct(stream: bool) -> dict[str, Any]:
    """The Claude Code request as the first turn of a conversation nobody sent before: a
    gateway serving many people, or one whose reuse table is full. post.lua writes the same
    new number into every mark of a request, so no system block, tool or message (nothing
    large) repeats between requests, while the shape and size stay those of claude_code
    (the marks add about 1%)."""
    body = claude_code(stream)
    for block in body["system"]:
        block["text"] += f" (conversation {TURN_MARK})"
    for tool in body["tools"]:
        tool["description"] += f" (conversation {TURN_MARK})"
    for message in body["messages"][:-2]:  # the last two carry the turn mark already
        if not _mark_first_text(message):
            raise ValueError(f"no text to mark in {message!r:.80}")
    metadata = body["metadata"]
    metadata["user_id"] = metadata["user_id"].replace(SESSION, f"{SESSION[:24]}{TURN_MARK}")
    return body


def _claude_code_with(padding_lines: int, stream: bool) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 32000,
        "temperature": 1,
        "system": _system_prompt(),
        "tools": _tools(),
        "messages": _messages(padding_lines),
        "metadata": {"user_id": f"user_{USER_HASH}_account__session_{SESSION}"},
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "stream": stream,
    }


# ---------------------------------------------------------------------------- Codex (Responses)

CODEX_MODEL = "gpt-5.1-codex"  # what Codex asks for; the benchmark routes it to Anthropic
TARGET_CODEX_BYTES = 40_000
CODEX_CACHE_KEY = "0199d8e4-3c1a-7a62-9f0e-5b1a2d4c6e8f"

_CODEX_TOPICS = [
    ("General", "Search with rg before anything slower. Read files before editing them. Keep "
     "changes minimal and in the style of the surrounding code. Do not add licence headers. "
     "Never revert changes you did not make; the user may be editing the same tree."),
    ("Editing constraints", "Default to ASCII when creating files. Add a comment only where the "
     "code is not self-explanatory. Use apply_patch for single-file edits; generated files may "
     "be written by their generator instead. Never use destructive git commands unasked."),
    ("Planning", "Use the plan tool for non-trivial work with several steps. Keep exactly one "
     "step in progress. Update the plan when it changes, and do not plan single-step tasks. "
     "Mark steps completed as soon as they are done."),
    ("Sandbox and approvals", "The sandbox limits which files can be written and whether the "
     "network is reachable. When a command fails because of the sandbox, ask for approval with "
     "a one-sentence justification instead of working around the restriction."),
    ("Validating your work", "Run the narrowest tests that cover the change first, then "
     "broader ones. Do not fix unrelated failing tests. Format code with the project's "
     "formatter when one is configured. Say what you could not verify."),
    ("Presenting your work", "Lead with the outcome. Reference files as path:line. Keep the "
     "final message short: a few bullets or a short paragraph, no heavy headings. Offer the "
     "next logical step in one sentence when there is one."),
    ("Shell commands", "Prefer rg and rg --files over grep and find. Always set the working "
     "directory. Read large files in chunks of at most 250 lines. Avoid commands that wait "
     "for input; pass non-interactive flags instead."),
    ("Code review", "When asked for a review, list findings first, ordered by severity, each "
     "with a file reference. Summaries come after the findings. Say so explicitly when there "
     "is nothing to report, and mention residual risks or missing tests."),
]


def _codex_prompt(rules_per_topic: int) -> str:
    """A developer message shaped like Codex's system prompt: Markdown sections of rules."""
    sections = []
    for index, (title, body) in enumerate(_CODEX_TOPICS):
        sentences = body.split(". ")
        rules = "\n".join(
            f"- {sentences[n % len(sentences)].rstrip('.')} (guideline {index + 1}.{n})."
            for n in range(1, rules_per_topic + 1)
        )
        sections.append(f"## {title}\n\n{body}\n\n{rules}\n")
    return ("You are a coding agent running in a terminal on the user's computer. You and the "
            "user share one workspace.\n\n" + "\n".join(sections))


def _fn(name: str, description: str, properties: dict[str, Any],
        required: list[str]) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": description, "strict": False,
            "parameters": {"type": "object", "properties": properties, "required": required,
                           "additionalProperties": False}}


_APPLY_PATCH_GRAMMAR = "\n".join([
    'start: begin_patch hunk+ end_patch',
    'begin_patch: "*** Begin Patch" LF',
    'end_patch: "*** End Patch" LF?',
    '',
    'hunk: add_hunk | delete_hunk | update_hunk',
    'add_hunk: "*** Add File: " filename LF add_line+',
    'delete_hunk: "*** Delete File: " filename LF',
    'update_hunk: "*** Update File: " filename LF change_move? change?',
    '',
    'filename: /(.+)/',
    'add_line: "+" /(.*)/ LF -> line',
    '',
    'change_move: "*** Move to: " filename LF',
    'change: (change_context | change_line)+ eof_line?',
    'change_context: ("@@" | "@@ " /(.+)/) LF',
    'change_line: ("+" | "-" | " ") /(.*)/ LF',
    'eof_line: "*** End of File" LF',
    '',
    '%import common.LF',
])


def _codex_tools() -> list[dict[str, Any]]:
    n = {"type": "number"}
    return [
        _fn("exec_command", "Runs a command in a PTY, returning output or a session ID for "
            "ongoing interaction. Output beyond max_output_tokens is truncated from the middle.",
            {"cmd": _s("Shell command to execute."),
             "workdir": _s("Optional working directory; defaults to the turn's cwd."),
             "shell": _s("Shell binary to launch. Defaults to the user's default shell."),
             "login": _b("Whether to run the shell with -l/-i semantics. Defaults to true."),
             "tty": _b("Whether to allocate a TTY for the command. Defaults to false."),
             "yield_time_ms": {**n, "description": "How long to wait (ms) for output before "
                               "yielding."},
             "max_output_tokens": {**n, "description": "Maximum number of tokens to return."},
             "sandbox_permissions": _s("Sandbox permissions for the command; "
                                       "require_escalated to run outside the sandbox."),
             "justification": _s("Only with require_escalated: a one-sentence question for "
                                 "the user approving the command.")},
            ["cmd"]),
        _fn("write_stdin", "Writes characters to an existing exec session and returns recent "
            "output.",
            {"session_id": {**n, "description": "Identifier of the running exec session."},
             "chars": _s("Bytes to write to stdin (may be empty to poll)."),
             "yield_time_ms": {**n, "description": "How long to wait (ms) for output."},
             "max_output_tokens": {**n, "description": "Maximum number of tokens to return."}},
            ["session_id"]),
        _fn("list_mcp_resources", "Lists resources provided by MCP servers. Prefer resources "
            "over web search when possible.",
            {"server": _s("Optional MCP server name; all servers when omitted."),
             "cursor": _s("Opaque cursor returned by a previous call.")}, []),
        _fn("list_mcp_resource_templates", "Lists resource templates provided by MCP servers.",
            {"server": _s("Optional MCP server name; all servers when omitted."),
             "cursor": _s("Opaque cursor returned by a previous call.")}, []),
        _fn("read_mcp_resource", "Read a specific resource from an MCP server given the "
            "server name and resource URI.",
            {"server": _s("MCP server name exactly as configured."),
             "uri": _s("Resource URI to read, as returned by list_mcp_resources.")},
            ["server", "uri"]),
        _fn("update_plan", "Updates the task plan. Provide an optional explanation and a list "
            "of plan items, each with a step and status. At most one step can be in_progress "
            "at a time.",
            {"explanation": {"type": "string"},
             "plan": {"type": "array", "description": "The list of steps",
                      "items": {"type": "object",
                                "properties": {"step": {"type": "string"},
                                               "status": _s("One of: pending, in_progress, "
                                                            "completed")},
                                "required": ["step", "status"],
                                "additionalProperties": False}}},
            ["plan"]),
        {"type": "custom", "name": "apply_patch",
         "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool, so "
                        "do not wrap the patch in JSON.",
         "format": {"type": "grammar", "syntax": "lark", "definition": _APPLY_PATCH_GRAMMAR}},
        _fn("view_image", "Attach a local image (by filesystem path) to the conversation "
            "context for this turn.",
            {"path": _s("Local filesystem path to an image file")}, ["path"]),
        {"type": "tool_search", "execution": "client",
         "description": "Search the tools of connected MCP servers by keyword; matching tools "
                        "become callable in the next turn.",
         "parameters": {"type": "object",
                        "properties": {"query": _s("Keywords describing the tool you need"),
                                       "limit": {**n, "description": "Maximum results"}},
                        "required": ["query"]}},
        {"type": "web_search", "external_web_access": False},
    ]


def _envelope(origin: str, payload: dict[str, Any]) -> str:
    """A reasoning item's encrypted_content as babelgate packs it (canonical/carry.py):
    what Codex echoes back after an earlier turn answered by an Anthropic upstream."""
    raw = json.dumps({"o": origin, "p": payload}, separators=(",", ":")).encode()
    return "bg1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _text_item(role: str, text: str, kind: str = "input_text") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def _codex_input(rules_per_topic: int) -> list[dict[str, Any]]:
    environment = (
        "<environment_context>\n  <cwd>/home/dev/projects/orbit-api</cwd>\n"
        "  <approval_policy>on-request</approval_policy>\n"
        "  <sandbox_mode>workspace-write</sandbox_mode>\n"
        "  <network_access>restricted</network_access>\n  <shell>bash</shell>\n"
        "</environment_context>"
    )
    listing = "\n".join(f"orbit/api/invoices.py:{40 + i}:    {line}"
                        for i, line in enumerate(_SOURCE_LINES[18:32]))
    patch = ("*** Begin Patch\n*** Update File: orbit/api/invoices.py\n@@\n"
             "-    currency = invoices[0].currency\n"
             "+    currency = customer.currency\n*** End Patch\n")
    return [
        _text_item("developer", _codex_prompt(rules_per_topic)),
        _text_item("user", "# AGENTS.md instructions for /home/dev/projects/orbit-api\n\n"
                   "<INSTRUCTIONS>\nRun `make test` before committing. SQL lives in "
                   "orbit/db/.\n</INSTRUCTIONS>"),
        _text_item("user", environment),
        _text_item("user", "The invoices endpoint returns 500 when a customer has no invoices "
                   "yet. Find out why and fix it, with a test."),
        {"type": "reasoning",
         "summary": [{"type": "summary_text", "text": "**Locating the handler**\n\nSearch for "
                      "the endpoint, then read the code that builds the total."}],
         "encrypted_content": _envelope("anthropic", {"signature": _signature("codex-1")})},
        {"type": "function_call", "name": "exec_command", "call_id": "toolu_01Ck7Xq3LkP9sVw2",
         "arguments": json.dumps({"cmd": "rg -n 'invoices\\[0\\]' orbit",
                                  "workdir": "/home/dev/projects/orbit-api"})},
        {"type": "function_call_output", "call_id": "toolu_01Ck7Xq3LkP9sVw2",
         "output": "Chunk ID: 3f2a1c\nWall time: 0.0412 seconds\nProcess exited with code 0\n"
                   "Original token count: 310\nOutput:\n" + listing},
        {"type": "reasoning",
         "summary": [{"type": "summary_text", "text": "**Reproducing**\n\nRun the failing "
                      "test before changing anything."}],
         "encrypted_content": _envelope("anthropic", {"signature": _signature("codex-2")})},
        {"type": "function_call", "name": "exec_command", "call_id": "toolu_01Dm8Yr4MlQ0tWx3",
         "arguments": json.dumps({"cmd": "python -m pytest tests/api/test_invoices.py -q -x",
                                  "workdir": "/home/dev/projects/orbit-api",
                                  "yield_time_ms": 10000})},
        {"type": "function_call_output", "call_id": "toolu_01Dm8Yr4MlQ0tWx3",
         "output": "Process exited with code 1\nOutput:\nF\n___ test_list_invoices_empty ___\n"
                   "orbit/api/invoices.py:41: in list_invoices\n"
                   "    currency = invoices[0].currency\n"
                   "E   IndexError: list index out of range\n1 failed, 6 passed in 0.84s"},
        {"type": "custom_tool_call", "status": "completed", "call_id": "toolu_01En9Zs5NmR1uXy4",
         "name": "apply_patch", "input": patch},
        {"type": "custom_tool_call_output", "call_id": "toolu_01En9Zs5NmR1uXy4",
         "output": "Success. Updated the following files:\nM orbit/api/invoices.py\n"},
        _text_item("assistant", "The handler took the currency from the first invoice; it now "
                   "uses the customer's. Adding a test next.", kind="output_text"),
        _text_item("user", "Go ahead, and run the whole invoice suite afterwards."),
    ]


def codex(stream: bool) -> dict[str, Any]:
    body = _codex_with(rules_per_topic=1, stream=stream)
    rules = 1
    while len(_dump(body)) < TARGET_CODEX_BYTES:
        rules += 1
        body = _codex_with(rules_per_topic=rules, stream=stream)
    return _new_turn(body, "input")


def _codex_with(rules_per_topic: int, stream: bool) -> dict[str, Any]:
    return {
        "model": CODEX_MODEL,
        "instructions": "You are Codex, a coding agent based on GPT-5, running in the Codex CLI "
                        "on a user's computer.",
        "input": _codex_input(rules_per_topic),
        "tools": _codex_tools(),
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": stream,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": CODEX_CACHE_KEY,
        "text": {"verbosity": "low"},
        "client_metadata": {"x-codex-turn-metadata":
                            '{"turn_id":"3","sandbox":"workspace-write"}'},
    }


# ---------------------------------------------------------------------------- Chat client

CHAT_MODEL = "gemini-2.5-pro"  # a Chat Completions client asking for Gemini by name
TARGET_CHAT_BYTES = 20_000


def _chat_tool(name: str, description: str, properties: dict[str, Any],
               required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


def _chat_tools() -> list[dict[str, Any]]:
    return [
        _chat_tool("read_file", "Read a text file from the workspace, optionally a line range.",
                   {"path": _s("Path relative to the workspace root"),
                    "start_line": _n("First line, 1-based"),
                    "end_line": _n("Last line, inclusive")}, ["path"]),
        _chat_tool("write_file", "Create or overwrite a file with the given content.",
                   {"path": _s("Path relative to the workspace root"),
                    "content": _s("The complete new content")}, ["path", "content"]),
        _chat_tool("replace_in_file", "Replace one exact block of text in a file.",
                   {"path": _s("Path relative to the workspace root"),
                    "search": _s("The exact text to find; must occur once"),
                    "replace": _s("The text to put in its place")},
                   ["path", "search", "replace"]),
        _chat_tool("run_command", "Run a shell command in the workspace and return its output.",
                   {"command": _s("The command line"),
                    "timeout_seconds": _n("Give up after this many seconds"),
                    "requires_approval": _b("Whether the user must approve it first")},
                   ["command", "requires_approval"]),
        _chat_tool("search_files", "Search file contents with a regular expression.",
                   {"path": _s("Directory to search"), "regex": _s("The pattern"),
                    "file_pattern": _s("Glob filter such as *.py")}, ["path", "regex"]),
    ]


def _chat_system(rules_per_topic: int) -> str:
    sections = []
    for index, (title, body) in enumerate(_SYSTEM_TOPICS):
        sentences = body.split(". ")
        rules = "\n".join(f"{n}. {sentences[n % len(sentences)].rstrip('.')} "
                          f"(see {index + 1}.{n})." for n in range(1, rules_per_topic + 1))
        sections.append(f"====\n{title.upper()}\n\n{body}\n{rules}\n")
    return ("You are an expert software engineer working in the user's editor. Use the tools "
            "one step at a time and wait for each result.\n\n" + "\n".join(sections))


def _chat_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}


def _chat_messages(rules_per_topic: int) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": _chat_system(rules_per_topic)},
        {"role": "user", "content": "The invoices endpoint returns 500 for a customer with no "
         "invoices. Find the cause and fix it."},
        {"role": "assistant", "content": "Let me find the handler.", "tool_calls": [
            _chat_call("call_7Qx2LkP9sVw2mN4c", "search_files",
                       {"path": "orbit", "regex": "def list_invoices", "file_pattern": "*.py"}),
            _chat_call("call_8Ry3MlQ0tWx3nO5d", "run_command",
                       {"command": "python -m pytest tests/api -q -x",
                        "requires_approval": False}),
        ]},
        {"role": "tool", "tool_call_id": "call_7Qx2LkP9sVw2mN4c",
         "content": "orbit/db/invoices.py:26: async def list_invoices(\n"
                    "orbit/api/invoices.py:38: async def list_invoices("},
        {"role": "tool", "tool_call_id": "call_8Ry3MlQ0tWx3nO5d",
         "content": "F\norbit/api/invoices.py:41: in list_invoices\n"
                    "    currency = invoices[0].currency\n"
                    "E   IndexError: list index out of range\n1 failed, 6 passed in 0.84s"},
        {"role": "assistant", "content": None, "tool_calls": [
            _chat_call("call_9Sz4NmR1uXy4oP6e", "read_file",
                       {"path": "orbit/db/invoices.py"}),
        ]},
        {"role": "tool", "tool_call_id": "call_9Sz4NmR1uXy4oP6e",
         "content": _numbered(_SOURCE_LINES, 2)},
        {"role": "assistant", "content": "The handler indexes the first invoice to find the "
         "currency; with no invoices that raises IndexError. I'll take the currency from the "
         "customer instead."},
        {"role": "user", "content": "Do it, and add a regression test."},
    ]


def chat_client(stream: bool) -> dict[str, Any]:
    body = _chat_with(rules_per_topic=1, stream=stream)
    rules = 1
    while len(_dump(body)) < TARGET_CHAT_BYTES:
        rules += 1
        body = _chat_with(rules_per_topic=rules, stream=stream)
    return _new_turn(body, "messages")


def _chat_with(rules_per_topic: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": CHAT_MODEL,
        "messages": _chat_messages(rules_per_topic),
        "tools": _chat_tools(),
        "tool_choice": "auto",
        "temperature": 0,
        "max_completion_tokens": 8192,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


# ---------------------------------------------------------------------------- upstream

_ANSWER = (
    "The handler reads invoices[0].currency to label the total, so an empty list raises "
    "IndexError. I changed it to take the currency from the customer record and added a test "
    "for a customer without invoices."
)
_ANSWER_WORDS = _ANSWER.split()


def _answer_pieces(count: int) -> list[str]:
    """The canned answer cut into `count` deltas, as a model streams them."""
    per = -(-len(_ANSWER_WORDS) // count)
    pieces = [" ".join(_ANSWER_WORDS[i:i + per]) for i in range(0, len(_ANSWER_WORDS), per)]
    pieces = [p if i == 0 else " " + p for i, p in enumerate(pieces)]
    while len(pieces) < count:
        pieces.append(".")
    return pieces[:count]


UPSTREAM_ID = "chatcmpl-BenchCanned0000000000000001"
UPSTREAM_CREATED = 1759400000
UPSTREAM_USAGE = {
    "prompt_tokens": 12850,
    "completion_tokens": 48,
    "total_tokens": 12898,
    "prompt_tokens_details": {"cached_tokens": 12288},
}


def chat_completion() -> dict[str, Any]:
    return {
        "id": UPSTREAM_ID,
        "object": "chat.completion",
        "created": UPSTREAM_CREATED,
        "model": "canned-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": _ANSWER,
                        "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": UPSTREAM_USAGE,
        "system_fingerprint": "fp_bench",
    }


def chat_stream(content_chunks: int = 20) -> bytes:
    base = {"id": UPSTREAM_ID, "object": "chat.completion.chunk", "created": UPSTREAM_CREATED,
            "model": "canned-model", "system_fingerprint": "fp_bench"}
    events: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "logprobs": None, "finish_reason": None}]},
    ]
    for piece in _answer_pieces(content_chunks):
        events.append({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                            "logprobs": None, "finish_reason": None}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": UPSTREAM_USAGE})
    lines = [f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events]
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


ANTHROPIC_ID = "msg_01BenchCanned00000000001"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
ANTHROPIC_USAGE = {"input_tokens": 562, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 9728, "output_tokens": 48,
                   "service_tier": "standard"}


def anthropic_message() -> dict[str, Any]:
    return {
        "id": ANTHROPIC_ID, "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
        "content": [{"type": "text", "text": _ANSWER}],
        "stop_reason": "end_turn", "stop_sequence": None, "usage": ANTHROPIC_USAGE,
    }


def anthropic_stream(text_deltas: int = 20) -> bytes:
    """message_start, one text block of `text_deltas` deltas, message_delta, message_stop."""
    start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": ANTHROPIC_ID, "type": "message", "role": "assistant",
            "model": ANTHROPIC_MODEL, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": start_usage}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    for piece in _answer_pieces(text_deltas):
        events.append({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": piece}})
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 48}},
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n"
                   for e in events).encode()


GEMINI_RESPONSE_ID = "BenchCannedGeminiResponse01"
GEMINI_USAGE = {"promptTokenCount": 5210, "candidatesTokenCount": 48, "totalTokenCount": 5258,
                "cachedContentTokenCount": 4096,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5210}]}


def gemini_response() -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": [{"text": _ANSWER}], "role": "model"},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": GEMINI_USAGE,
        "modelVersion": CHAT_MODEL, "responseId": GEMINI_RESPONSE_ID,
    }


def gemini_stream(chunks: int = 20) -> bytes:
    """`:streamGenerateContent?alt=sse`: one whole response per event, the last with the
    finish reason; Google separates events with CRLF pairs."""
    events = []
    pieces = _answer_pieces(chunks)
    for index, piece in enumerate(pieces):
        candidate: dict[str, Any] = {"content": {"parts": [{"text": piece}], "role": "model"},
                                     "index": 0}
        last = index == len(pieces) - 1
        if last:
            candidate["finishReason"] = "STOP"
        usage = GEMINI_USAGE if last else {"promptTokenCount": GEMINI_USAGE["promptTokenCount"],
                                           "totalTokenCount": GEMINI_USAGE["promptTokenCount"]}
        events.append({"candidates": [candidate], "usageMetadata": usage,
                       "modelVersion": CHAT_MODEL, "responseId": GEMINI_RESPONSE_ID})
    return "".join(f"data: {json.dumps(e, separators=(',', ':'))}\r\n\r\n"
                   for e in events).encode()


# ---------------------------------------------------------------------------- Gemini CLI

GEMINI_CLI_MODEL = "gemini-2.5-flash"  # what the CLI asks for; routed to Anthropic here
GEMINI_CLI_FIXTURE = (Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gemini"
                      / "gemini_cli_request.json")


def gemini_cli() -> dict[str, Any]:
    """The recorded Gemini CLI turn (a prompt, a shell call, its result), then the model's
    answer and the user's next question, both carrying the turn mark: what the CLI sends on
    the following turn of the same session."""
    body: dict[str, Any] = json.loads(GEMINI_CLI_FIXTURE.read_text())
    body["contents"] += [
        {"role": "model", "parts": [{"text": "The marker file holds the expected value; the "
                                             "shell call succeeded and nothing else changed."}]},
        {"role": "user", "parts": [{"text": "Good. Now list the Python files under src/ and "
                                            "say which one defines the request parser."}]},
    ]
    return _new_turn(body, "contents")


# ---------------------------------------------------------------------------- output


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def write_all(out: Path) -> dict[str, int]:
    """Write every body under `out`; return the size of each file in bytes."""
    files = {
        "hello.json": _dump(hello(False)),
        "hello_stream.json": _dump(hello(True)),
        "claude_code.json": _dump(claude_code(False)),
        "claude_code_stream.json": _dump(claude_code(True)),
        "claude_code_distinct.json": _dump(claude_code_distinct(False)),
        "upstream/chat.json": _dump(chat_completion()),
        "upstream/chat.sse": chat_stream(),
        "codex.json": _dump(codex(False)),
        "codex_stream.json": _dump(codex(True)),
        "chat_gemini.json": _dump(chat_client(False)),
        "chat_gemini_stream.json": _dump(chat_client(True)),
        "gemini_cli.json": _dump(gemini_cli()),
        "gemini_cli_stream.json": _dump(gemini_cli()),
        "upstream/anthropic.json": _dump(anthropic_message()),
        "upstream/anthropic.sse": anthropic_stream(),
        "upstream/gemini.json": _dump(gemini_response()),
        "upstream/gemini.sse": gemini_stream(),
    }
    sizes = {}
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        sizes[name] = len(data)
    return sizes


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/bodies.py OUT_DIR")
    for name, size in write_all(Path(sys.argv[1])).items():
        print(f"{size:8d}  {name}")
