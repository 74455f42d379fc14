"""A small MCP server over streamable HTTP, built with the official `mcp` package, for the
tools worker's streamable-HTTP MCP client. Not a test module: `client_libraries.rs` starts it.

    python mcp_http_server.py PORT
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("auxot-test-http")


@server.tool()
def shout(text: str) -> str:
    """Returns the text in capitals with an exclamation mark."""
    return text.upper() + "!"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
