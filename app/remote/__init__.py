"""A ComfyUI server as the engine: the HTTP + WebSocket client, the server's capabilities, and `RemoteSession`,
which runs jobs there and reports the same events as the local session. Qt-free and torch-free; everything the
server sends is treated as untrusted input (size and depth bounds, image limits, no server names as paths)."""
