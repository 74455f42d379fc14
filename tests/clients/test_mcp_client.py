"""The official `mcp` package's client against the router's MCP endpoint (`/mcp`): the mesh's
tools, listed and called over streamable HTTP with the API key.

The cluster has a tools worker serving the test MCP server's tools over stdio (`echo`, `add`,
`fail`) and a Python MCP server's over streamable HTTP (`shout`)."""

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def connect(base_url, api_key):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}, timeout=60)
    return http, Client(streamable_http_client(f"{base_url}/mcp", http_client=http))


def test_lists_and_calls_the_mesh_tools(base_url, api_key):
    async def main():
        http, client = connect(base_url, api_key)
        async with http, client:
            listed = await client.list_tools()
            tools = {tool.name: tool for tool in listed.tools}
            assert {"echo", "add", "fail", "shout"} <= set(tools)
            assert tools["echo"].input_schema["required"] == ["text"]

            echoed = await client.call_tool("echo", {"text": "hello mesh"})
            assert not echoed.is_error
            assert echoed.content[0].text == "hello mesh"

            added = await client.call_tool("add", {"a": 2, "b": 40.5})
            assert added.structured_content == {"sum": 42.5}

            # A tool behind the worker's streamable-HTTP MCP client (the Python server may wrap
            # the string in structured output, which then comes through as its JSON).
            shouted = await client.call_tool("shout", {"text": "hi"})
            assert not shouted.is_error
            assert "HI!" in shouted.content[0].text

            failed = await client.call_tool("fail", {})
            assert failed.is_error
            assert "this tool always fails" in failed.content[0].text

            invalid = await client.call_tool("add", {"a": 1})
            assert invalid.is_error
            assert "b" in invalid.content[0].text

    anyio.run(main)


def test_a_wrong_key_is_refused(base_url):
    async def main():
        async with httpx2.AsyncClient(headers={"Authorization": "Bearer rtr_wrong"}) as http:
            response = await http.post(
                f"{base_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
            )
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"

    anyio.run(main)
