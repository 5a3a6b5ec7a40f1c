"""A server whose replies are HTML: PING, INFO and QUIT are answered as the spec
says, and anything else with a script tag and an attribute that would run
script. The HTML report must show these bytes as text, never as markup.

    python tests/servers/replies_with_markup.py --port 4481
"""

from __future__ import annotations

from line_server_basics import announce, listen, options

MARKUP = b"<script>alert(1)</script><img src=x onerror=\"alert('&amp;')\">"


if __name__ == "__main__":
    server = listen(options().port, other=lambda command: MARKUP)
    announce(server)
    server.serve_forever()
