"""A proxy that cuts each of its first `cuts` connections once `after_bytes` bytes of the broker's
answers went through, so answers to produces the broker stored are lost."""

from __future__ import annotations

import asyncio


class CuttingProxy:
    def __init__(self, target: str, cuts: int, after_bytes: int) -> None:
        self.target = target
        self.cuts_left = cuts
        self.after_bytes = after_bytes
        self.cut = 0
        self.server: asyncio.Server | None = None
        self.addr = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.addr = f"127.0.0.1:{port}"
        return self

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        host, _, port = self.target.rpartition(":")
        try:
            br, bw = await asyncio.open_connection(host, int(port))
        except OSError:
            cw.close()
            return
        self._writers += [cw, bw]
        cut = self.cuts_left > 0
        self.cuts_left -= 1

        async def up() -> None:
            try:
                while data := await cr.read(65536):
                    bw.write(data)
                    await bw.drain()
            except (OSError, asyncio.CancelledError):
                pass
            bw.close()

        async def down() -> None:
            sent = 0
            try:
                while data := await br.read(65536):
                    if cut and sent + len(data) >= self.after_bytes:
                        cw.write(data[: self.after_bytes - sent])
                        await cw.drain()
                        self.cut += 1
                        break
                    sent += len(data)
                    cw.write(data)
                    await cw.drain()
            except (OSError, asyncio.CancelledError):
                pass
            cw.close()
            bw.close()

        for coro in (up(), down()):
            t = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    def cut_all(self) -> None:
        """Closes every connection accepted so far."""
        for w in self._writers:
            w.close()
        self._writers.clear()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self._tasks):
            t.cancel()
