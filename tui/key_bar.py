"""A one-line key bar: the active bindings of the screen, as plain styled text.

Textual's Footer re-creates a widget per key whenever the bindings change (every screen switch and
focus change), which costs tens of milliseconds at each transition on a busy machine. This bar
redraws one line of text, and only when the keys it shows changed.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    """
    COMPONENT_CLASSES = {"key-bar--key"}
    DEFAULT_CLASSES = ""

    def __init__(self) -> None:
        super().__init__()
        self._keys: tuple[tuple[str, str], ...] = ()

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        if screen is not self.screen:
            return
        keys: list[tuple[str, str]] = []
        seen: set[str] = set()
        for _, binding, enabled, _ in screen.active_bindings.values():
            if binding.show and enabled and binding.action not in seen:
                seen.add(binding.action)
                keys.append((self.app.get_key_display(binding), binding.description))
        if tuple(keys) != self._keys:
            self._keys = tuple(keys)
            self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key", partial=True)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for key, description in self._keys:
            text.append(f" {key} ", key_style)
            text.append(f"{description} ")
        if self.app.ENABLE_COMMAND_PALETTE:
            text.append(" ^p ", key_style)
            text.append("palette")
        return text
