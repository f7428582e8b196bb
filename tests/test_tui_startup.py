"""The console is on screen before its first storage read starts (a large journal takes a second)."""

from __future__ import annotations

import threading

from console_demo import demo_snapshot

from tui.app import HpoConsole
from tui.header import CampaignHeader
from tui.source import FixedSource


class SlowFirstRead(FixedSource):
    """A source whose first read takes a while; records how many frames the app had shown by then."""

    def __init__(self, snapshot, app_frames: list[int]):
        super().__init__(snapshot)
        self.app_frames = app_frames
        self.frames_at_first_read: int | None = None
        self.release = threading.Event()

    def read(self, sprint=None):
        if self.frames_at_first_read is None:
            self.frames_at_first_read = self.app_frames[0]
            self.release.wait(5)
        return super().read(sprint)


async def test_first_frame_comes_before_the_first_read():
    frames = [0]
    source = SlowFirstRead(demo_snapshot(20, pending_gate=False), frames)
    app = HpoConsole(source, fps=10)
    shown = app._display  # Textual calls it once per screen update it shows

    def counted(screen, renderable):
        frames[0] += 1
        return shown(screen, renderable)

    app._display = counted
    async with app.run_test(size=(100, 30)) as pilot:
        while source.frames_at_first_read is None:
            await pilot.pause(0.01)
        assert source.frames_at_first_read >= 1  # the read began after a frame was on screen
        header = app.screen.query_one(CampaignHeader)
        assert "reading the campaign" in str(header.render())  # and that frame says what is happening
        source.release.set()
        while app.snapshot is None:
            await pilot.pause(0.02)
        assert "reading the campaign" not in str(header.render())
