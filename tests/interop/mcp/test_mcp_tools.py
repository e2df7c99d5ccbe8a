"""MCP servers as envkit tools: schemas, results, errors, timeouts, crashes and lifecycles,
against a real FastMCP server over stdio and streamable HTTP."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from mcp_support import stdio_server, wait_no_server_processes

from envkit.environments.mcp import MCPServer, MCPToolset, require_mcp
from envkit.tools import ToolBox
from envkit.types import ToolCall


def _call(box: ToolBox, name: str, args: dict | str, id: str = "c") -> str:
    msgs, _ = box.call_sync([ToolCall.create(name, args, id=id)])
    return str(msgs[0].content)


def test_tools_are_offered_with_the_servers_schemas_names_and_descriptions(http_url: str) -> None:
    server = MCPServer(url=http_url, mode="legacy", prefix="t", include=["incr", "get", "picture"])
    with MCPToolset(server) as toolset:
        schemas = {t.schema["function"]["name"]: t.schema["function"] for t in toolset.tools}
    assert sorted(schemas) == ["t_get", "t_incr", "t_picture"]
    incr = schemas["t_incr"]
    assert incr["description"] == "Adds `by` to the counter and returns its new value."
    assert incr["parameters"]["type"] == "object"
    assert incr["parameters"]["properties"]["by"]["type"] == "integer"
    assert schemas["t_get"]["parameters"]["required"] == ["key"]
    # the same names from two servers clash unless a prefix tells them apart
    with pytest.raises(ValueError, match="prefix="):
        MCPToolset([MCPServer(url=http_url, mode="legacy"), MCPServer(url=http_url)])
    with pytest.raises(ValueError, match=r"has no tools \['nope'\]"):
        MCPToolset(MCPServer(url=http_url, include=["nope"]))


def test_results_and_every_failure_become_tool_messages(http_url: str) -> None:
    with MCPToolset(MCPServer(url=http_url, mode="legacy", call_timeout=1.0)) as toolset:
        box = ToolBox(toolset.tools, timeout=None)
        toolset.start_episode()
        calls = [
            ToolCall.create("put", {"key": "a", "value": "x"}, id="1"),
            ToolCall.create("incr", {"by": "two"}, id="2"),  # bad arguments (schema)
            ToolCall.create("incr", "{not json", id="3"),  # malformed JSON
            ToolCall.create("nope", {}, id="4"),  # unknown tool
            ToolCall.create("get", {"key": "missing"}, id="5"),  # the tool raises: isError
            ToolCall.create("picture", {}, id="6"),  # text, image and resource content
        ]
        msgs, stats = box.call_sync(calls)
        texts = [m.content for m in msgs]
        assert [m.tool_call_id for m in msgs] == ["1", "2", "3", "4", "5", "6"]
        assert texts[0] == "stored a"
        assert texts[1].startswith("Error: invalid arguments for incr: by: 'two' is not of type")
        assert "Expected parameters" in texts[1]
        assert texts[2].startswith("Error: arguments are not valid JSON")
        assert texts[3].startswith("Error: unknown tool 'nope'. Available tools: crash, get")
        assert texts[4].startswith("Error: get raised MCPToolError:")
        assert "no value under 'missing'" in texts[4]
        assert texts[5] == (
            "a red pixel:\n[image: image/png, 8 bytes]\n[resource file:///notes.txt]\nhello notes"
        )
        assert (stats.errors, stats.bad_arguments, stats.unknown_tool, stats.exceptions) == (
            4,
            2,
            1,
            1,
        )
        # a call that hangs: a tool message after call_timeout, and the session goes on
        start = time.monotonic()
        assert (
            _call(box, "hang", {}) == "Error: hang did not finish within 1.0 s; its result is lost."
        )
        assert time.monotonic() - start < 3.0
        assert _call(box, "get", {"key": "a"}) == "x"
        assert toolset.tools[0](by=5) == "5"  # a tool is callable from sync code too


def test_a_server_crashing_mid_call_is_a_tool_message_and_leaves_no_process() -> None:
    with MCPToolset(stdio_server(call_timeout=5.0)) as toolset:
        box = ToolBox(toolset.tools, timeout=None)
        toolset.start_episode()
        assert _call(box, "incr", {}) == "1"
        start = time.monotonic()
        text = _call(box, "crash", {})
        assert time.monotonic() - start < 4.0  # not the 5 s call timeout: the crash is seen at once
        assert text.startswith("Error: crash raised MCPServerCrashed: the MCP server")
        assert "crashed or exited" in text and "state is lost" in text
        assert "state is lost" in _call(box, "incr", {})  # later calls say so too
        assert wait_no_server_processes() == []


def test_a_server_that_does_not_start_is_a_clear_error_and_leaves_no_process(tmp_path) -> None:
    with pytest.raises(ConnectionError, match="could not list the tools of MCP server"):
        MCPToolset(MCPServer(command="envkit-no-such-mcp-server --x", connect_timeout=5))
    with pytest.raises(ConnectionError, match="ConnectError: All connection attempts failed"):
        MCPToolset(MCPServer(url="http://127.0.0.1:9/mcp", connect_timeout=5))
    garbage = tmp_path / "not_mcp.py"  # answers the handshake with something that is not JSON
    garbage.write_text("import sys; print('hello, not json'); sys.stdout.flush(); input()\n")
    with pytest.raises(ConnectionError, match=r"not_mcp\.py"):
        MCPToolset(MCPServer(command=[sys.executable, str(garbage)], connect_timeout=5))
    silent = tmp_path / "silent_mcp.py"  # never answers the handshake, ignores stdin closing
    silent.write_text("import time\ntime.sleep(60)\n")
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"did not start within 1\.0 s"):
        MCPToolset(MCPServer(command=[sys.executable, str(silent)], connect_timeout=1.0))
    assert time.monotonic() - start < 8
    for script in (garbage, silent):
        assert wait_no_server_processes(script=str(script)) == []


def test_server_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one of command="):
        MCPServer()
    with pytest.raises(ValueError, match="exactly one of command="):
        MCPServer(command="x", url="http://127.0.0.1:1/mcp")
    with pytest.raises(ValueError, match="must start with http"):
        MCPServer(url="127.0.0.1:1/mcp")
    with pytest.raises(ValueError, match="greater than 0"):
        MCPServer(command="x", call_timeout=0)


def test_a_missing_mcp_sdk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(ImportError, match=r'pip install "envkit-rl\[mcp\]"'):
        require_mcp()


OWNER = """
import sys, time
from envkit.environments.mcp import MCPServer, MCPToolset
from envkit.tools import ToolBox
from envkit.types import ToolCall

toolset = MCPToolset(MCPServer(command=[sys.executable, sys.argv[1]], stderr="devnull"))
toolset.start_episode()
msgs, _ = ToolBox(toolset.tools).call_sync([ToolCall.create("pid", {}, id="p")])
print(msgs[0].content, flush=True)
time.sleep(60)  # killed here: no close(), no atexit
"""


def test_no_orphan_server_when_the_owner_is_killed(tmp_path) -> None:
    import psutil
    from mcp_support import SERVER

    owner = tmp_path / "owner.py"
    owner.write_text(OWNER)
    proc = subprocess.Popen([sys.executable, str(owner), SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10  # its stdin closed with the owner: the server exits
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(pid)
