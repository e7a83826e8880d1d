"""Protocol-level stand-ins for the chat platforms (real HTTP on 127.0.0.1, no network)."""
